"""A real browser for the tests: Debian's `chromium`, driven by Playwright for Python.

Playwright's own browser builds are never used (nothing downloads one): the tests launch the
system's Chromium by path, installing the Debian package first when the process can (root,
with apt-get); where it cannot, the tests that need a browser are skipped, saying how to get one.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

from playwright.async_api import Browser, Playwright

CHROMIUM_ENV = "BACKORDER_CHROMIUM"
"""A Chromium (or Chrome) executable to use instead of Debian's, e.g. on a developer's Mac."""
CHROMIUM_NAMES = ("chromium", "chromium-browser")
DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # the machine may have no network: without these, Chromium keeps dialling out (and logging
    # refused connections) for updates, sync and field trials
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
HOW_TO_INSTALL = (
    "install Debian's chromium (`sudo apt-get install --no-install-recommends chromium`) "
    f"or set {CHROMIUM_ENV} to a Chromium or Chrome executable"
)


class ChromiumUnavailable(RuntimeError):
    """No Chromium here and none can be installed; the message says how to get one."""


def find_chromium() -> Path | None:
    """The Chromium to drive: $BACKORDER_CHROMIUM, else one on PATH, else Debian's path."""
    named = os.environ.get(CHROMIUM_ENV)
    if named:
        path = Path(named)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ChromiumUnavailable(f"{CHROMIUM_ENV}={named} is not an executable file")
        return path
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    if DEBIAN_CHROMIUM.is_file() and os.access(DEBIAN_CHROMIUM, os.X_OK):
        return DEBIAN_CHROMIUM
    return None


def ensure_chromium(timeout_s: float = 900) -> Path:
    """Chromium's executable, installed with apt-get first when it is missing and this process
    can (root, apt-get present): Debian's package, never a browser build from Playwright."""
    found = find_chromium()
    if found is not None:
        return found
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        raise ChromiumUnavailable(
            f"no chromium here and no apt-get to install it: {HOW_TO_INSTALL}"
        )
    if getattr(os, "geteuid", lambda: -1)() != 0:
        raise ChromiumUnavailable(f"no chromium here and not root to install it: {HOW_TO_INSTALL}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt_get, "install", "-y", "--no-install-recommends", "chromium"]
    failure = ""
    for step in ([install], [[apt_get, "update"], install]):  # a fresh image has no lists yet
        try:
            for command in step:
                subprocess.run(
                    command, env=env, capture_output=True, text=True, timeout=timeout_s, check=True
                )
        except subprocess.CalledProcessError as err:
            failure = f"`{' '.join(err.cmd)}` failed: {(err.stderr or err.stdout).strip()[-500:]}"
            continue
        except subprocess.TimeoutExpired as err:
            failure = f"`{' '.join(map(str, err.cmd))}` took over {timeout_s:.0f}s"
            break
        found = find_chromium()
        if found is not None:
            return found
        failure = "apt-get installed chromium but no chromium executable is on PATH"
    raise ChromiumUnavailable(f"could not install chromium ({failure}); {HOW_TO_INSTALL}")


async def launch_chromium(playwright: Playwright, executable: Path) -> Browser:
    """Headless Chromium from `executable`, on a fresh temporary profile of its own."""
    return await playwright.chromium.launch(
        executable_path=executable, headless=True, args=list(CHROMIUM_ARGS)
    )


async def screenshot_html(browser: Browser, html: Path, png: Path) -> list[str]:
    """Open a local HTML file as a person would (file://) and screenshot the whole page into
    `png`; the script errors the page raised on the way, if any."""
    errors: list[str] = []
    url = await asyncio.to_thread(lambda: html.resolve().as_uri())
    await asyncio.to_thread(png.parent.mkdir, parents=True, exist_ok=True)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.on("pageerror", lambda err: errors.append(str(err)))
        await page.goto(url, wait_until="load")
        await page.wait_for_load_state("networkidle")
        await page.screenshot(path=png, full_page=True)
    finally:
        await page.close()
    return errors
