"""Payment gateways: the interface the payment activities use, and its implementations."""
