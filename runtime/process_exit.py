"""Leaving a process that used the Temporal client or worker."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


def run_and_exit(main: Callable[[], int]) -> None:
    """Run a console entry point, then exit without interpreter teardown.

    Everything is closed by then (worker drained, pools closed, children stopped); what is
    skipped is CPython's finalisation, which races the Temporal bridge's Rust threads and can
    abort or segfault a process at exit (temporalio/sdk-python#300; seen here on SIGTERM).
    """
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `backorder order status A-1 | head`: the reader has what it wanted
        code = 0
    sys.stderr.flush()
    os._exit(code)
