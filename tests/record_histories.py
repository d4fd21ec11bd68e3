"""Record workflow histories for the replay test: `python -m tests.record_histories`.

Run it when a workflow change is released, and commit the new files next to the old ones.
Never delete or regenerate a history of a version that may still have running workflows:
the replay test proves today's code can still continue those runs (`workflow.patched`).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from config import Settings
from db.migrate import migrate
from domain.order import Order
from embedded.postgres import EmbeddedPostgres
from embedded.process import find_binary, free_port
from runtime.connections import open_pool
from runtime.temporal_setup import register_search_attributes
from worker import build_worker
from workflows.backorder import BackorderWorkflow
from workflows.converter import data_converter
from workflows.messages import CancelRequest

HISTORIES = Path(__file__).parent / "histories"
EXAMPLE = Path(__file__).parent.parent / "examples" / "order-A-1.json"

Handle = WorkflowHandle[BackorderWorkflow, object]
Scenario = Callable[[WorkflowEnvironment, Handle], Awaitable[None]]


async def cancelled_after_three_days(env: WorkflowEnvironment, handle: Handle) -> None:
    await env.sleep(timedelta(days=3))
    await handle.signal(BackorderWorkflow.cancel, CancelRequest(reason="changed my mind"))
    await handle.result()


SCENARIOS: dict[str, Scenario] = {"cancelled_after_three_days": cancelled_after_three_days}


async def record(version: str) -> list[Path]:
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", port=free_port(), durable=False)
        await pg.start()
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=str(find_binary("temporal-test-server")),
            data_converter=data_converter,
        )
        try:
            await register_search_attributes(env.client, "default")
            await migrate(pg.dsn())
            settings = Settings(site="replay", temporal={"task_queue": "replay"})
            pool = await open_pool(pg.dsn(), settings)
            order = Order.model_validate_json(EXAMPLE.read_text())
            async with build_worker(env.client, pool, settings):
                for name, scenario in SCENARIOS.items():
                    handle = await env.client.start_workflow(
                        BackorderWorkflow.run,
                        order.model_copy(update={"order_id": f"{name}"}),
                        id=f"backorder-{name}",
                        task_queue="replay",
                    )
                    await scenario(env, handle)
                    history = await handle.fetch_history()
                    path = HISTORIES / f"{version}-{name}.json"
                    path.write_text(history.to_json())
                    written.append(path)
            await pool.close()
        finally:
            await env.shutdown()
            pg.stop()
    return written


if __name__ == "__main__":
    import sys

    for p in asyncio.run(record(sys.argv[1] if len(sys.argv) > 1 else "v1")):
        print(f"wrote {p}")
