"""The `backorder` command's subcommands, one module per subsystem (`starter.py` wires them)."""
