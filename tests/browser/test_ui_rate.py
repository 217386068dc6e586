"""The playground's codec view on a variable-rate codec (tiny-hyperprior, from the tests' tiny repository):
a slider over qualities instead of a ladder, and a size target; the fixed-rate tiny-codec keeps its ladder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.conftest import PageLog
from tests.browser.test_ui import (
    FAILED_REQUEST,
    TIMEOUT_MS,
    assert_clean,
    canvas_is_drawn,
    open_ui,
    photo_png,
    screenshot,
    set_range,
    stats_number,
    wait_done,
)
from tests.service.server import running_server

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

QUALITY_STEPS = 9  # codec.js RATE_QUALITIES: 0, 0.125, ..., 1


@pytest.fixture(scope="module")
def tiny_base(tiny_models: Path) -> Iterator[str]:
    with running_server(tiny_models) as (_, url):
        yield url


def wait_coded(page: Page, label: str) -> None:
    """Until the level named `label` has its answer (the label then says the quality the service coded at)."""
    page.wait_for_selector(f"#codec-level-name:has-text('{label} (coded at quality')", timeout=TIMEOUT_MS)
    wait_done(page, "images")


def fit_to_size(page: Page, bpp: float) -> None:
    page.fill("#codec-target-bpp", f"{bpp:g}")
    page.click("#codec-target-run")


def test_quality_slider_and_size_target(page: tuple[Page, PageLog], tiny_base: str, tmp_path: Path) -> None:
    p, log = page
    open_ui(p, tiny_base)
    p.select_option("#image-model", "tiny-hyperprior")
    p.set_input_files("#image-file", str(photo_png(tmp_path)))
    wait_coded(p, "quality 0.5")  # the slider starts in the middle
    assert p.is_visible("#codec-target")
    assert p.get_attribute("#codec-level", "max") == str(QUALITY_STEPS - 1)
    assert p.locator("#codec-table tbody tr").count() == QUALITY_STEPS
    assert canvas_is_drawn(p, "#rd-chart")
    assert stats_number(p, "quality") == 0.5
    # Moving the slider: the quality the service reports, and the size, follow.
    set_range(p, "#codec-level", 0)
    wait_coded(p, "quality 0")
    low = stats_number(p, "bpp")
    assert stats_number(p, "quality") == 0
    set_range(p, "#codec-level", QUALITY_STEPS - 1)
    wait_coded(p, "quality 1")
    high = stats_number(p, "bpp")
    assert stats_number(p, "quality") == 1 and high > low, (low, high)
    # A size target between the two: the service's answer fits it, at a quality it reports.
    target = round((low + high) / 2, 2)
    fit_to_size(p, target)
    wait_coded(p, f"target {target:g} bpp")
    assert low <= stats_number(p, "bpp") <= target, (low, target)
    assert 0 <= stats_number(p, "quality") < 1
    assert p.locator("#codec-table tbody tr").count() == QUALITY_STEPS + 1  # its own row, highlighted
    assert "target" in p.inner_text("#codec-table tr.current")
    screenshot(p, tmp_path, "ui-images-codec-rate")
    # Below the smallest stream this image can take: the service's 422 message, in the page.
    fit_to_size(p, 0.001)
    p.wait_for_selector("#view-images[data-state='error']", timeout=TIMEOUT_MS)
    error = p.inner_text("#image-error")
    assert "smallest stream of this image" in error and "invalid_input" in error, error
    assert_clean(p, log, allow=(FAILED_REQUEST,))


def test_a_fixed_rate_codec_keeps_its_ladder(page: tuple[Page, PageLog], tiny_base: str, tmp_path: Path) -> None:
    p, log = page
    open_ui(p, tiny_base)
    p.select_option("#image-model", "tiny-codec")
    p.set_input_files("#image-file", str(photo_png(tmp_path)))
    wait_done(p, "images")
    assert p.is_hidden("#codec-target")
    assert p.inner_text("#codec-level-name") == "tiny-codec"  # a ladder of one level, named by its model
    assert p.locator("#codec-table tbody tr").count() == 1
    assert "quality" not in p.inner_text("#image-stats")
    assert_clean(p, log)
