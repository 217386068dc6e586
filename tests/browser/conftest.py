"""A real Chromium (Debian's `chromium`, driven by Playwright) on pages of a real `ae-serve`.

Skipped, saying why, when the `playwright` package or a Chromium binary is missing: the browser
is never downloaded (`playwright install` is not used); `AE_CHROMIUM` names the binary, else the
first of `chromium`, `chromium-browser`, `google-chrome` on the PATH.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page


def chromium_path() -> str | None:
    """The Chromium binary to launch, or None."""
    named = os.environ.get("AE_CHROMIUM")
    if named:
        return named if os.path.exists(named) else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium per test module.

    Not per session: Playwright's sync API keeps its event loop running in the main thread until it
    exits, and every later test calling `asyncio.run` would fail with "cannot be called from a running
    event loop".
    """
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium binary (apt-get install chromium, or set AE_CHROMIUM)")
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: CI and dev containers run as root, where Chromium's sandbox cannot start.
        instance = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield instance
        instance.close()


class PageLog:
    """What a page said: console messages and uncaught errors, CSP violations among them."""

    def __init__(self) -> None:
        self.console: list[str] = []
        self.page_errors: list[str] = []
        self.violations: list[Any] = []

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.console.append(f"{message.type}: {message.text} ({message.location.get('url', '')})")

    def unexpected(self, allow: tuple[str, ...] = ()) -> list[str]:
        """Errors other than the allowed ones (e.g. Chromium's line for each failing request)."""
        console = [line for line in self.console if not any(text in line for text in allow)]
        return console + self.page_errors + [f"CSP violation: {v}" for v in self.violations]


# Collected in the page itself, so a violation is seen even when the console is not.
_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


@pytest.fixture
def page(browser: Browser) -> Iterator[tuple[Page, PageLog]]:
    """A fresh page (own context: own sessionStorage) and its log."""
    context = browser.new_context(viewport={"width": 1200, "height": 700})
    page = context.new_page()
    log = PageLog()
    page.on("console", log.on_console)
    page.on("pageerror", lambda error: log.page_errors.append(str(error)))
    page.add_init_script(_VIOLATIONS)
    yield page, log
    context.close()
