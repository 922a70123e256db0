"""`sweep/review.py --dashboard` in a real browser: headless Chromium (the system's, driven by Playwright) opens
the study page of a committed study and sees its trials and history plot render, with no error on the page."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, free_port, sigint_as_at_a_terminal

BROWSER = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
STUDY = "tiny4k"  # results/search.db: 80 trials, 45 of them COMPLETE


def study_id(port: int, proc: subprocess.Popen) -> int:
    """The dashboard's id of STUDY, once it answers (up to 60 s)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as response:
                studies = json.loads(response.read())["study_summaries"]
            return next(s["study_id"] for s in studies if s["study_name"] == STUDY)
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None, reason="no chromium installed (apt-get install chromium; make test-all does)")
def test_the_study_page_renders_its_trials_and_history(tmp_path: Path) -> None:
    sync_playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                                          "(make test-all installs it)").sync_playwright
    import optuna

    shutil.copy(ROOT / "results" / "search.db", tmp_path)  # the review never writes; a copy keeps that so
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{tmp_path}/search.db")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "sweep" / "review.py"), "--dashboard", "--port", str(port),
                             "--storage", f"sqlite:///{tmp_path}/search.db", "--study", STUDY], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=sigint_as_at_a_terminal)
    errors: list[str] = []
    try:
        sid = study_id(port, proc)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=BROWSER, args=["--no-sandbox"])  # root in CI: no sandbox
            page = browser.new_page()
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
            page.goto(f"http://127.0.0.1:{port}/dashboard/studies/{sid}")
            page.wait_for_selector("#plot-history .scatterlayer .point", timeout=60_000)
            points = len(page.query_selector_all("#plot-history .scatterlayer .point"))
            body = page.inner_text("body")
            browser.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert errors == []
    assert f"{STUDY} (id={sid})" in body and "History" in body
    assert f"Best Trial (number={study.best_trial.number})" in body
    assert points >= len(complete)  # a marker per complete trial (and per pruned one, which it may include)
