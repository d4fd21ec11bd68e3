"""The baseline: the least a Temporal workflow can do in the shape of a backorder, and its worker.

`TrivialWorkflow` waits for one signal, runs one activity that returns its input, and completes:
start, wait, one step, end, with nothing of ours in it. It runs on a stock `Worker` (default
cache, sandbox and concurrency, like `backorder-worker`) with the project's data converter, in
an OS process of its own: `python -m bench.baseline --target HOST:PORT --task-queue NAME`.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

SIGNAL = "go"


@activity.defn(name="bench_echo")
async def echo(value: str) -> str:
    """The trivial step: its input back."""
    return value


@workflow.defn(name="TrivialWorkflow")
class TrivialWorkflow:
    def __init__(self) -> None:
        self._value: str | None = None

    @workflow.run
    async def run(self, name: str) -> str:
        await workflow.wait_condition(lambda: self._value is not None)
        assert self._value is not None
        return await workflow.execute_activity(
            echo, f"{name}:{self._value}", start_to_close_timeout=timedelta(seconds=30)
        )

    @workflow.signal(name=SIGNAL)
    def go(self, value: str) -> None:
        self._value = value


def main() -> None:
    """The baseline's worker process; SIGTERM or SIGINT drains it and exits."""
    import argparse
    import asyncio
    import signal

    from temporalio.client import Client
    from temporalio.worker import Worker

    from workflows.converter import data_converter

    parser = argparse.ArgumentParser(description="the bench's baseline worker")
    parser.add_argument("--target", required=True)
    parser.add_argument("--task-queue", required=True)
    args = parser.parse_args()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        client = await Client.connect(args.target, data_converter=data_converter)
        worker = Worker(
            client,
            task_queue=args.task_queue,
            workflows=[TrivialWorkflow],
            activities=[echo],
            graceful_shutdown_timeout=timedelta(seconds=10),
        )
        async with worker:
            await stop.wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
