"""The playground at /ui in a real browser, on the committed default models (the codec ladder, the
denoiser and the calibrated ECG anomaly model are the real ones), under its Content-Security-Policy.

Each test ends by checking the page logged no CSP violation and no uncaught error; screenshots go to
the test's tmp folder (`AE_UI_SCREENSHOTS=docs/screenshots` writes the ones the docs show).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image

from tests.browser.conftest import PageLog
from tests.conftest import BSDS, ROOT
from tests.service.server import running_server

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

MODELS = ROOT / "models"
# Page-side waits are selectors: `wait_for_function` evaluates a string, which the page's CSP forbids.
# Chromium's console line for every answer that is not 2xx: expected where a test provokes one.
FAILED_REQUEST = "Failed to load resource"
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with running_server(MODELS) as (_, url):
        yield url


def photo_png(tmp_path: Path, mode: str = "RGB", side: int = 96) -> Path:
    """A crop of a committed photo as PNG (`mode` "L": a grey one)."""
    image = Image.open(BSDS / "100007.jpg").convert(mode).crop((0, 0, side, side))
    path = tmp_path / f"photo-{mode}.png"
    image.save(path)
    return path


def open_ui(page: Page, base: str) -> None:
    response = page.goto(f"{base}/ui/")
    assert response is not None and response.ok
    page.wait_for_selector("body[data-models='loaded']", timeout=TIMEOUT_MS)


def wait_done(page: Page, view: str) -> None:
    page.wait_for_selector(f"#view-{view}[data-state='done']", timeout=TIMEOUT_MS)


def set_range(page: Page, selector: str, value: float) -> None:
    page.eval_on_selector(
        selector, "(el, v) => { el.value = String(v); el.dispatchEvent(new Event('input', {bubbles: true})); }", value
    )


def canvas_is_drawn(page: Page, selector: str) -> bool:
    """The canvas is shown and holds more than one colour."""
    return bool(
        page.eval_on_selector(
            selector,
            """(c) => {
                if (c.hidden || !c.width) return false;
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                for (let i = 4; i < d.length; i += 4) if (d[i] !== d[0] || d[i + 1] !== d[1]) return true;
                return false;
            }""",
        )
    )


def stats_number(page: Page, label: str) -> float:
    text = page.inner_text("#image-stats")
    match = re.search(rf"{label}: ([0-9.]+)", text)
    assert match, text
    return float(match.group(1))


def assert_clean(page: Page, log: PageLog, allow: tuple[str, ...] = ()) -> None:
    log.violations = page.evaluate("window.__cspViolations")
    assert log.unexpected(allow) == []


def screenshot(page: Page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if target := os.environ.get("AE_UI_SCREENSHOTS"):
        shutil.copy(path, Path(target) / f"{name}.png")


def test_codec_ladder_sizes_and_chart(page: tuple[Page, PageLog], base: str, tmp_path: Path) -> None:
    p, log = page
    open_ui(p, base)
    p.select_option("#image-model", "image-codec-q1")
    p.set_input_files("#image-file", str(photo_png(tmp_path, side=176)))
    wait_done(p, "images")
    assert canvas_is_drawn(p, "#right-canvas")
    assert canvas_is_drawn(p, "#rd-chart")
    assert p.locator("#codec-table tbody tr").count() == 5
    # JPEG and WebP columns are filled in by the browser's encoders.
    assert "dB" in p.inner_text("#codec-table tbody tr >> nth=0")
    q1 = stats_number(p, "size")
    set_range(p, "#codec-level", 4)
    p.wait_for_selector("#codec-level-name:text-is('image-codec-q5')")
    wait_done(p, "images")
    q5 = stats_number(p, "size")
    assert q5 > q1, (q1, q5)
    assert stats_number(p, "PSNR") > 20
    set_range(p, "#zoom", 2)
    screenshot(p, tmp_path, "ui-images-codec")
    assert_clean(p, log)


def test_grey_png_is_reconstructed(page: tuple[Page, PageLog], base: str, tmp_path: Path) -> None:
    p, log = page
    open_ui(p, base)
    p.select_option("#image-model", "image-conv")
    p.set_input_files("#image-file", str(photo_png(tmp_path, mode="L")))
    wait_done(p, "images")
    assert canvas_is_drawn(p, "#right-canvas")
    assert stats_number(p, "PSNR") > 15  # compared with the grey pixels repeated over R, G and B
    assert_clean(p, log)


def test_noise_then_denoise(page: tuple[Page, PageLog], base: str, tmp_path: Path) -> None:
    p, log = page
    open_ui(p, base)
    p.set_input_files("#image-file", str(photo_png(tmp_path, side=176)))
    p.select_option("#image-model", "image-denoise")
    set_range(p, "#noise-sigma", 30)
    p.click("#denoise-run")
    p.wait_for_selector("#image-stats:has-text('sigma: 30')")
    wait_done(p, "images")
    noisy, denoised = stats_number(p, "noisy PSNR"), stats_number(p, "denoised PSNR")
    assert 15 < noisy < 25 and denoised > noisy + 3, (noisy, denoised)
    screenshot(p, tmp_path, "ui-images-denoise")
    assert_clean(p, log)


def test_sequences_scores_and_projection(page: tuple[Page, PageLog], base: str, tmp_path: Path) -> None:
    p, log = page
    open_ui(p, base)
    p.click("#tab-sequences")
    p.select_option("#sequence-model", "ecg-anomaly")
    p.select_option("#sequence-example", "all")
    p.click("#sequence-run")
    wait_done(p, "sequences")
    for chart in ("#sequence-chart", "#error-chart", "#score-chart", "#pca-chart"):
        assert canvas_is_drawn(p, chart), chart
    assert re.search(r"score .* [0-9.]+ · .*percentile [0-9.]+", p.inner_text("#anomaly"))
    # The model's calibrated threshold, from GET /v1/models, is shown beside the score.
    models = json.loads(urllib.request.urlopen(f"{base}/v1/models/ecg-anomaly", timeout=10).read())
    stored = next(v for v in models["versions"] if v["version"] == models["default_version"])["anomaly"]
    assert f"threshold {stored['threshold']:.4g}" in p.inner_text("#anomaly")
    assert "normal" in p.inner_text("#anomaly .flag")  # the first example is a normal beat
    p.select_option("#sequence-pick", "2")  # an R-on-T premature ventricular contraction
    assert p.inner_text("#anomaly .flag") == "anomaly"
    screenshot(p, tmp_path, "ui-sequences")
    assert_clean(p, log)


def test_api_and_network_errors_are_shown(page: tuple[Page, PageLog], base: str, tmp_path: Path) -> None:
    p, log = page
    open_ui(p, base)
    # A fixed-size model given another size: the server's 422 message, not a blank panel.
    p.select_option("#image-model", "seed-conv")
    p.set_input_files("#image-file", str(photo_png(tmp_path)))
    p.wait_for_selector("#view-images[data-state='error']", timeout=TIMEOUT_MS)
    assert "invalid_input" in p.inner_text("#image-error")
    # A series longer than the model takes.
    p.click("#tab-sequences")
    p.fill("#sequence-input", ", ".join(["0.5"] * 2001))
    p.click("#sequence-run")
    p.wait_for_selector("#view-sequences[data-state='error']", timeout=TIMEOUT_MS)
    assert "accepts 1 to 2000" in p.inner_text("#sequence-error")
    # The service unreachable.
    p.route("**/v1/models/*/reconstruct", lambda route: route.abort())
    p.fill("#sequence-input", "1 2 3 4 5")
    p.click("#sequence-run")
    p.wait_for_selector("#sequence-error:has-text('network error')")
    assert_clean(p, log, allow=(FAILED_REQUEST,))


def test_api_key_typed_into_the_page(page: tuple[Page, PageLog], tmp_path: Path) -> None:
    p, log = page
    repository = tmp_path / "models"
    repository.mkdir()
    shutil.copytree(MODELS / "seed-lstm", repository / "seed-lstm")
    with running_server(repository, AE_API_KEYS="ui-test-key") as (_, base):
        response = p.goto(f"{base}/ui/")  # the page itself is public
        assert response is not None and response.ok
        p.wait_for_selector("body[data-models='error']", timeout=TIMEOUT_MS)
        assert "unauthorized" in p.inner_text("#global-error")
        p.fill("#api-key", "ui-test-key")
        p.dispatch_event("#api-key", "change")
        p.wait_for_selector("body[data-models='loaded']", timeout=TIMEOUT_MS)
        assert p.evaluate("sessionStorage.getItem('ae-playground-api-key')") == "ui-test-key"
        p.click("#tab-sequences")
        p.fill("#sequence-input", "0 1 2 3 2 1 0 -1 -2 -1")
        p.click("#sequence-run")
        wait_done(p, "sequences")
        assert canvas_is_drawn(p, "#sequence-chart")
        assert_clean(p, log, allow=(FAILED_REQUEST,))


def test_page_headers_in_the_browser(page: tuple[Page, PageLog], base: str) -> None:
    p, log = page
    response = p.goto(f"{base}/ui")  # redirected to /ui/
    assert response is not None and response.url.endswith("/ui/")
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    # An inline script injected into the page is refused: the policy is in force, not just sent.
    p.wait_for_selector("body[data-models='loaded']", timeout=TIMEOUT_MS)
    p.evaluate("""() => { const s = document.createElement('script'); s.textContent = 'window.__ran = 1';
                          document.head.append(s); }""")
    assert p.evaluate("window.__ran") is None
    assert p.evaluate("window.__cspViolations.length") == 1
    log.console.clear()
