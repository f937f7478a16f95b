"""The HTML report in a real browser (Debian's headless Chromium via Playwright): every figure loads,
every contents link lands on its section, long tables fold and open. A screenshot is kept."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mentalchat.schemas import write_table
from mentalchat.stats.config import StatsConfig
from mentalchat.stats.report import COLLAPSE_ROWS
from mentalchat.stats.run import run_stats
from mentalchat.testing.browser import artifact_dir, launch_chromium
from mentalchat.testing.judgments import synthetic_judgments

pytestmark = pytest.mark.slow


def test_report_renders_with_every_figure_and_working_contents(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    judg = write_table(synthetic_judgments(30, bases=("b1", "b2", "b3", "b4", "b5", "b6", "b7"), seed=3), tmp_path / "j.parquet", "judgments")
    cfg = StatsConfig(bootstrap=100, model_map={"bases": [], "baselines": [], "rules": []})
    res = run_stats(cfg, tmp_path / "stats", judgments=[judg])
    md = res.report_md.read_text()
    toc = re.search(r"^\*\*Contents:\*\* (.+)$", md, re.M)
    assert toc, "the Markdown report has no contents line"
    headings = re.findall(r"^## (.+)$", md, re.M)
    assert len(re.findall(r"\]\(#", toc.group(1))) == len(headings)
    shots = artifact_dir()
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1200, "height": 1600})
        page.goto(res.report_html.resolve().as_uri())
        images = page.evaluate("() => [...document.images].map(i => [i.alt, i.complete && i.naturalWidth > 0])")
        assert images and all(ok for _, ok in images), [alt for alt, ok in images if not ok]
        links = page.evaluate("() => [...document.querySelectorAll('nav.toc a')].map(a => a.getAttribute('href'))")
        assert len(links) == len(headings)
        missing = page.evaluate("(ids) => ids.filter(h => !document.getElementById(h.slice(1)))", links)
        assert missing == []
        folded = page.locator("details")
        assert folded.count() >= 1  # the synthetic run has tables longer than COLLAPSE_ROWS
        first = folded.first
        rows_hidden = first.locator("tbody tr").first.is_visible()
        first.locator("summary").click()
        assert not rows_hidden and first.locator("tbody tr").first.is_visible()
        assert first.locator("tbody tr").count() > COLLAPSE_ROWS
        page.screenshot(path=str(shots / "stats_report.png"), full_page=False)
        browser.close()
