"""``inspect view`` (Inspect AI's own viewer) browses our logs: its server lists them and Chromium renders the scores."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mentalchat.core.inspect_logs import write_inspect_logs
from mentalchat.engine.vllm_server import free_port
from mentalchat.testing.browser import launch_chromium

from .test_inspect_logs import _tables

pytest.importorskip("inspect_ai")
pytestmark = pytest.mark.slow


def test_inspect_view_shows_every_judge_score(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    answers, judgments = _tables()
    write_inspect_logs(answers, judgments, {"1": "message 1", "2": "message 2", "3": "message 3"}, tmp_path / "logs")
    port = free_port()
    inspect = Path(sys.executable).with_name("inspect")
    proc = subprocess.Popen([str(inspect), "view", "--log-dir", str(tmp_path / "logs"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                listing = urllib.request.urlopen(f"{url}/api/logs", timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("inspect view did not answer within 60 s")
        assert listing.count("mentalchat16k_") == 2
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.get_by_text("mentalchat/b1-syn").first.click()
            expect(page.get_by_text("human:ana").first).to_be_visible(timeout=30_000)
            expect(page.get_by_text("b1-syn says 2").first).to_be_visible()
            body = page.inner_text("body")
            browser.close()
        assert "active_listening_mean" in body and "gpt-judge" in body
    finally:
        proc.terminate()
        proc.wait(timeout=20)
