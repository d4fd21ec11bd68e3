"""The orders as an operator sees them in the Temporal Web UI, in a real (headless) Chromium:
found by a search attribute in the workflow list, then the order's summary and details on its
page as the UI itself renders them (not as a markdown previewer would). Screenshots are kept as
test artifacts: $BACKORDER_TEST_ARTIFACTS, else `<pytest basetemp>/artifacts`.

A dev server of the module's own serves the UI on free ports (the session's `dev_env` runs
without it), so these tests pass while `backorder dev` holds the default ports.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.async_api import Browser, FrameLocator, Page, ViewportSize, async_playwright, expect
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client

import starter
from cli.orders import start_order
from config import Settings
from domain.order import Order
from embedded.temporal import TemporalDevServer
from tests.browser import ChromiumUnavailable, ensure_chromium, launch_chromium, screenshot_html
from tests.order_life import make_order
from tests.polling import eventually
from worker import build_worker
from workflows.converter import data_converter
from workflows.order_views import static_summary

pytestmark = pytest.mark.e2e

WAIT_MS = 20_000
"""How long a check waits for the UI (it loads, lists, then queries the workflow)."""
LAPTOP = ViewportSize(width=1440, height=900)
SMALL_LAPTOP = ViewportSize(width=1280, height=800)
LINES_HEADER = ["line", "sku", "ordered", "released", "waiting", "cancelled"]

# Where each piece of text lies on the page, as a person sees it: the box of its visible
# characters (the cell padding of non-breaking spaces left out), for every element given.
TEXT_BOXES_JS = """
(elements) => elements.map((element) => {
  const visible = /[^\\s\\u00a0]/;
  const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
  const nodes = [];
  while (walker.nextNode()) {
    if (visible.test(walker.currentNode.data)) nodes.push(walker.currentNode);
  }
  if (nodes.length === 0) return {text: "", left: 0, right: 0, top: 0, lines: 0};
  const first = nodes[0], last = nodes[nodes.length - 1];
  const range = document.createRange();
  range.setStart(first, first.data.search(visible));
  let end = last.data.length;
  while (end > 0 && !visible.test(last.data[end - 1])) end--;
  range.setEnd(last, end);
  const box = range.getBoundingClientRect();
  const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
  return {text: range.toString(), left: box.left, right: box.right, top: box.top, lines};
})
"""


@dataclass(frozen=True)
class Shop:
    server: TemporalDevServer
    client: Client
    settings: Settings
    orders: dict[str, Order]


@dataclass(frozen=True)
class TextBox:
    text: str
    left: float
    right: float
    top: float
    lines: int


@pytest.fixture(scope="module")
def artifacts(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[Path]:
    """The screenshots' folder; what was saved there is listed when the module ends."""
    named = os.environ.get("BACKORDER_TEST_ARTIFACTS")
    folder = Path(named) if named else tmp_path_factory.getbasetemp() / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    saved = sorted(folder.glob("*.png"))
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None and saved:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nscreenshots in {folder}: {', '.join(p.name for p in saved)}")


@pytest.fixture(scope="module")
async def ui_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TemporalDevServer]:
    """`temporal server start-dev` with its Web UI and our search attributes, on free ports."""
    server = TemporalDevServer.on_free_ports(tmp_path_factory.mktemp("ui-temporal"), log=False)
    await server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def chromium() -> Path:
    try:
        return ensure_chromium()
    except ChromiumUnavailable as err:
        pytest.skip(f"no browser for the Web UI tests: {err}")


@pytest.fixture(scope="module")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await launch_chromium(playwright, chromium)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(scope="module")
async def page(browser: Browser) -> AsyncIterator[Page]:
    """One laptop-sized tab for the module, in a fresh browser context: a test that finds the
    page where it needs it saves loading the UI again."""
    context = await browser.new_context(viewport=LAPTOP)
    try:
        yield await context.new_page()
    finally:
        await context.close()


@pytest.fixture(scope="module")
async def shop(ui_server: TemporalDevServer, pg_pool: AsyncConnectionPool) -> AsyncIterator[Shop]:
    """The worker (the real activities, on the module's PostgreSQL database) and three orders
    started as `backorder order start` starts them, all waiting for stock: A on KTP, B on MUG
    and BOLT-1/2, C on KTP and MUG."""
    client = await Client.connect(ui_server.address, data_converter=data_converter)
    settings = Settings(site="test", temporal={"task_queue": f"tq-{uuid.uuid4().hex[:10]}"})
    now = datetime.now(UTC)
    run = uuid.uuid4().hex[:4].upper()

    def order(key: str, lines: list[tuple[str, int, str]], **extra: Any) -> Order:
        return make_order(now, lines, order_id=f"UI-{key}-{run}", order_number=f"M{run}{key}",
                          **extra)  # fmt: skip

    orders = {
        "A": order("A", [("KTP", 5, "10.00")],
                   customer={"id": "cust-a", "email": "a@example.com", "tier": "vip"}),
        "B": order("B", [("MUG", 2, "7.50"), ("BOLT-1/2", 4, "0.25")],
                   customer={"id": "o'neil--1", "email": "b@example.com"}),
        "C": order("C", [("KTP", 1, "10.00"), ("MUG", 3, "7.50")]),
    }  # fmt: skip
    async with build_worker(client, pg_pool, settings):
        for placed in orders.values():
            await start_order(client, settings, placed)
        await eventually(
            lambda: client.count_workflows('BackorderStatus = "backordered"'),
            lambda found: found.count == len(orders),
            seconds=30,
        )
        yield Shop(ui_server, client, settings, orders)


async def test_an_operator_finds_orders_by_sku_and_reads_one_in_the_web_ui(
    shop: Shop, page: Page, artifacts: Path
) -> None:
    ui, a, c = shop.server.ui_url, shop.orders["A"], shop.orders["C"]
    query = quote('BackorderSkus = "KTP"')
    await page.goto(f"{ui}/namespaces/default/workflows?query={query}")

    listed = page.get_by_role("link").filter(has_text="backorder-UI-")  # workflow ids
    await expect(listed).to_have_count(2, timeout=WAIT_MS)
    assert sorted(await listed.all_inner_texts()) == [a.workflow_id, c.workflow_id]
    await expect(page.get_by_text("BackorderSkus = KTP").first).to_be_visible()
    await page.screenshot(path=artifacts / "ui-1-workflows-by-sku-KTP.png")

    await listed.filter(has_text=a.workflow_id).click()
    await expect(page.get_by_role("heading", name=a.workflow_id)).to_be_visible(timeout=WAIT_MS)
    await page.get_by_role("tab", name="User Metadata").click()

    summary = page.frame_locator("#user-metadata-summary")
    await expect(summary.locator("body")).to_have_text(static_summary(a), timeout=WAIT_MS)
    assert static_summary(a) == f"Order {a.order_number} · tier vip · 50.00 USD · 5 KTP"

    placed = page.frame_locator("#user-metadata-details")
    for heading in ("Placed", "Lines"):
        await expect(placed.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    await expect(placed.get_by_text(f"Order: {a.order_number} (id {a.order_id})")).to_be_visible()
    await expect(placed.get_by_text("Customer: cust-a, tier vip")).to_be_visible()
    placed_header = await text_boxes(placed, "table >> nth=0 >> th")
    assert [b.text for b in placed_header] == ["line", "sku", "quantity", "unit price (USD)"]
    assert_columns(placed_header, await frame_width(placed))

    now = page.frame_locator("#user-metadata-current-details")
    lines = now.locator("table").first
    await expect(lines).to_be_visible(timeout=WAIT_MS)
    for heading in (f"Order {a.order_number}", "Lines (1)", "Shipments (0)", "Payment",
                    "Next timers", "Lately"):  # fmt: skip
        await expect(now.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    for item in ("Status: backordered since ", f"Order id: {a.order_id}",
                 "Customer: cust-a, tier vip", "Value: 50.00 USD",
                 "Units: 5 ordered · 5 not shipped yet · 5 of them backordered"):  # fmt: skip
        await expect(now.get_by_role("listitem").filter(has_text=item)).to_have_count(1)

    # The lines are a real table: header cells, then one row of cells, side by side and
    # apart, all within the frame (not squashed text like `orderedreleasedbackordered`).
    header = await text_boxes(now, "table >> nth=0 >> th")
    row = await text_boxes(now, "table >> nth=0 >> tbody tr >> nth=0 >> td")
    assert [b.text for b in header] == LINES_HEADER
    assert [b.text for b in row] == ["L1", "KTP", "5", "0", "5", "0"]
    width = await frame_width(now)
    assert_columns(header, width)
    assert_columns(row, width)

    await screenshot_tall(page, artifacts / "ui-2-order-A-user-metadata.png")


async def test_the_lines_table_fits_a_small_laptop_screen(
    shop: Shop, page: Page, artifacts: Path
) -> None:
    now = await user_metadata(page, shop, shop.orders["A"])
    await page.set_viewport_size(SMALL_LAPTOP)
    try:
        await screenshot_tall(page, artifacts / "ui-4-order-A-at-1280px.png")
        assert_columns(await text_boxes(now, "table >> nth=0 >> th"), await frame_width(now))
    finally:
        await page.set_viewport_size(LAPTOP)


async def test_ids_read_verbatim_in_the_web_ui(shop: Shop, page: Page, artifacts: Path) -> None:
    b = shop.orders["B"]
    now = await user_metadata(page, shop, b)
    await screenshot_tall(page, artifacts / "ui-5-order-B-user-metadata.png")
    summary = page.frame_locator("#user-metadata-summary").locator("body")
    await expect(summary).to_contain_text(f"Order {b.order_number} · ", timeout=WAIT_MS)
    shown = {
        "summary": await summary.inner_text(),
        "customer": await now.get_by_role("listitem").filter(has_text="Customer:").inner_text(),
        "lines": await now.locator("table >> nth=0 >> tbody").inner_text(),
    }
    assert "4 BOLT-1/2" in shown["summary"], shown
    assert "o'neil--1" in shown["customer"], shown
    assert "BOLT-1/2" in shown["lines"], shown


async def test_the_html_report_renders_in_the_browser(
    shop: Shop,
    pg_dsn: str,
    browser: Browser,
    artifacts: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BACKORDER_DATABASE__DSN", pg_dsn)  # the read model the worker writes
    monkeypatch.setenv("BACKORDER_TEMPORAL__TARGET", shop.server.address)
    monkeypatch.setenv("BACKORDER_TEMPORAL__TASK_QUEUE", shop.settings.temporal.task_queue)
    html = tmp_path / "report.html"
    code = await asyncio.to_thread(
        starter.main, ["report", "--site", shop.settings.site, "--html", str(html)]
    )
    assert code == 0 and html.is_file() and html.stat().st_size > 0
    errors = await screenshot_html(browser, html, artifacts / "report.png")
    assert errors == [], errors


async def user_metadata(page: Page, shop: Shop, order: Order) -> FrameLocator:
    """The order's page at its User Metadata tab (opened unless the page is there already):
    the frame of its current details, once they show."""
    if not (f"/workflows/{order.workflow_id}/" in page.url and page.url.endswith("/user-metadata")):
        await page.goto(f"{shop.server.ui_url}/namespaces/default/workflows/{order.workflow_id}")
        await page.get_by_role("tab", name="User Metadata").click(timeout=WAIT_MS)
    now = page.frame_locator("#user-metadata-current-details")
    await expect(now.locator("table").first).to_be_visible(timeout=WAIT_MS)
    return now


async def text_boxes(frame: FrameLocator, selector: str) -> list[TextBox]:
    boxes = await frame.locator(selector).evaluate_all(TEXT_BOXES_JS)
    return [TextBox(**box) for box in boxes]


async def frame_width(frame: FrameLocator) -> float:
    width: float = await frame.locator("html").evaluate("html => html.clientWidth")
    return width


async def screenshot_tall(page: Page, png: Path) -> None:
    """The page at its width with room for all of the User Metadata tab (the UI scrolls an
    inner pane, so a full-page screenshot would stop at the window's bottom)."""
    window = page.viewport_size or LAPTOP
    await page.set_viewport_size(ViewportSize(width=window["width"], height=1500))
    try:
        await page.screenshot(path=png)
    finally:
        await page.set_viewport_size(window)


def assert_columns(cells: list[TextBox], width: float, gap: float = 4.0) -> None:
    """Cells of one row read as columns: each on one line, side by side left to right at least
    `gap` pixels apart, every one within the frame's `width` (none cut off)."""
    assert cells, "no cells"
    assert all(c.lines == 1 and abs(c.top - cells[0].top) < 2 for c in cells), cells
    for left, right in itertools.pairwise(cells):
        assert left.right + gap <= right.left, f"{left} runs into {right}"
    assert cells[-1].right <= width, f"{cells[-1]} is cut off at {width} px"
