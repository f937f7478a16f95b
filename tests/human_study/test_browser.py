"""A rater in a real browser: headless Chromium (Debian's) on Label Studio's rating page, via Playwright.

The rater signs up through the invite link with her own account, opens their project's label stream, clicks stars on every control, ticks the
crisis box, writes a comment and submits; ``pull`` + ``import`` must then hold exactly those
ratings for the answer behind that task. The page is kept as a screenshot in
``runs/test-artifacts/`` (or ``$MENTALCHAT_TEST_ARTIFACTS``) for a person to look at.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mentalchat.cli import job_main
from mentalchat.core.rubric import METRIC_KEYS, METRICS
from mentalchat.schemas import read_table
from mentalchat.testing.browser import artifact_dir, launch_chromium

pytestmark = pytest.mark.slow

CLICKS = {key: 3 + i for i, key in enumerate(METRIC_KEYS)} | {"overall": 2}  # 3..9 and overall 2


def test_rate_one_answer_in_the_browser(label_studio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from playwright.sync_api import expect, sync_playwright

    from mentalchat.schemas import ANSWERS, write_table

    from .conftest import make_answers

    answers = write_table(ANSWERS.from_rows(make_answers(3)), tmp_path / "answers.parquet", "answers")
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps({"question_id": str(q), "turns": [
        f"Client message {q}: I have not slept properly for weeks and I snap at everyone at work."]}) + "\n"
        for q in range(1, 4)))
    study = tmp_path / "study"
    job_main("human-study", ["export", "--answers", str(answers), "--questions", str(questions), "--raters", "ana",
                             "--per-rater", "2", "--output", str(study)])
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    job_main("human-study", ["push", "--study", str(study), "--url", label_studio.url])
    pid = json.loads((study / "labelstudio.json").read_text())["projects"]["ana"]
    # The rater joins through the organisation's invite link with her own account (not the admin's,
    # whose token pushed the study), as a clinician would.
    email, password = "ana@clinic.example", "rater-Pass-4821"
    shot = artifact_dir() / "human_study_rating_page.png"

    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_context(viewport={"width": 1280, "height": 1400}).new_page()
        page.goto(label_studio.invite_url())
        page.fill('input[name="email"]', email)
        page.fill('input[name="password"]', password)
        page.locator('form button[type="submit"], form input[type="submit"]').first.click()
        page.wait_for_url(lambda u: "/user/signup" not in u, timeout=30_000)
        page.goto(f"{label_studio.url}/projects/{pid}/data?labeling=1")
        page.wait_for_selector("#ctl_overall ul.ant-rate", timeout=60_000)
        expect(page.get_by_text(METRICS[1] + ":", exact=False)).to_be_visible()  # the definitions are on the page
        for control, n in CLICKS.items():
            star = page.locator(f'#ctl_{control} ul.ant-rate [role="radio"][aria-posinset="{n}"]')
            star.click()
            expect(star).to_have_attribute("aria-checked", "true")
        box = page.locator('#ctl_crisis input[type="checkbox"]')
        box.check()
        page.locator('#ctl_comment textarea').fill("warm but skips the sleep problem")
        page.screenshot(path=str(shot), full_page=True)
        with page.expect_response(lambda r: r.request.method == "POST" and "/annotations" in r.url) as sent:
            page.get_by_role("button", name="Submit current annotation").click()
        assert sent.value.status == 201, sent.value.text()
        task_id = sent.value.json()["task"]
        browser.close()

    assert shot.stat().st_size > 20_000
    job_main("human-study", ["pull", "--study", str(study)])
    ratings = tmp_path / "ratings"
    job_main("human-study", ["import", "--study", str(study), "--output", str(ratings)])
    exported = json.loads((study / "export" / "ana.json").read_text())
    item = next(t["data"]["item"] for t in exported if t["id"] == task_id)
    assert item == json.loads((study / "tasks" / "ana.json").read_text())[0]["data"]["item"]  # first in her order
    entry = json.loads((study / "key" / "unblinding_key.json").read_text())["items"][item]
    rows = read_table(ratings / "human_judgments.parquet", "judgments").to_pylist()
    assert len(rows) == 7 and {(r["question_id"], r["model"]) for r in rows} == {(entry["question_id"], entry["model"])}
    assert {r["metric"]: r["score"] for r in rows} == {m: float(CLICKS[k]) for m, k in zip(METRICS, METRIC_KEYS, strict=True)}
    assert {r["overall"] for r in rows} == {2.0} and {r["judge"] for r in rows} == {"human:ana"}
    flags = read_table(ratings / "human_flags.parquet", "human_flags").to_pylist()
    assert flags == [{**flags[0], "crisis_concern": True, "comment": "warm but skips the sleep problem"}]
    assert flags[0]["lead_time_s"] > 0
    from label_studio_sdk import LabelStudio

    users = {u.id: u.email for u in LabelStudio(base_url=label_studio.url, api_key=label_studio.token).users.list()}
    assert users[int(flags[0]["annotator"])] == email  # submitted by the rater's own account
