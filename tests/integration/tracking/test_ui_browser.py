"""``stepsize ui`` in a real browser: Debian's chromium, driven by Playwright, opens the MLflow UI
served on 127.0.0.1 for a finished study and finds the parent run with its nested trial runs, a
trial's val_loss chart, and best_config.yaml among the parent's artifacts; a pruned trial shows
the same status icon as a completed one, not the failure mark."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from orchestrator.api import launch
from orchestrator.keys import StudyAttr
from orchestrator.study.storage import load_study
from tests.conftest import ROOT, study_spec
from tests.tracking_support import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
URL_RE = re.compile(r"(http://127\.0\.0\.1:\d+/#/experiments/(\w+)/runs/(\w+))")

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.fixture
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is absent (pip install playwright)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def ui_process():
    started: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "ui", *args], cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def _read_url(process: subprocess.Popen, timeout_s: float = 150.0) -> re.Match:
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        match = URL_RE.search(line)
        if match:
            return match
    raise AssertionError("stepsize ui printed no URL:\n" + "".join(seen))


def test_mlflow_ui_shows_the_study_its_trials_a_chart_and_best_config(tmp_path, browser, ui_process):
    spec = study_spec(tmp_path, name="browse", workload="tests.workloads:quadratic", search_space="lr_only",
                      sampler="random", scheduler="none", budget={"trials": 3, "max_epochs": 3},
                      tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    launch(spec, quiet=True)
    study, _ = load_study(spec.name, spec.storage)
    parent = study.user_attrs[StudyAttr.MLFLOW_PARENT_RUN]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=spec.tracking_uri)
    children = {r.info.run_name: r.info.run_id for r in client.search_runs(
        [client.get_run(parent).info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'")}
    assert set(children) == {"trial-000", "trial-001", "trial-002"}

    process = ui_process("browse", "--storage", spec.storage, "--port", str(free_port()))
    match = _read_url(process)
    url, experiment, run = match.groups()
    assert run == parent
    base = url.split("/#/")[0]

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    # The experiment's runs page lists the parent; expanding it shows the nested trial runs.
    page.goto(f"{base}/#/experiments/{experiment}/runs", wait_until="load")
    page.wait_for_selector(f'a[href="#/experiments/{experiment}/runs/{parent}"]', timeout=60_000)
    page.click(f'div[row-id="{parent}"] button[data-component-id*="runnamecellrenderer"]')
    for name, run_id in children.items():
        link = page.wait_for_selector(f'a[href="#/experiments/{experiment}/runs/{run_id}"]', timeout=30_000)
        assert link.inner_text().strip() == name
    page.screenshot(path=str(tmp_path / "runs.png"))

    # A trial's val_loss chart renders (plotly draws it as SVG, one point per epoch).
    page.goto(f"{base}/#/experiments/{experiment}/runs/{children['trial-001']}/model-metrics", wait_until="load")
    card = page.locator('[data-testid="experiment-view-compare-runs-card"]', has=page.locator('h4[title="val_loss"]'))
    card.locator("svg.main-svg").first.wait_for(state="visible", timeout=60_000)
    card.locator(".scatterlayer .trace").first.wait_for(state="attached", timeout=30_000)
    assert card.locator(".scatterlayer .point").count() == 3
    page.screenshot(path=str(tmp_path / "trial_val_loss.png"))

    # The parent's artifacts include best_config.yaml, and it opens.
    page.goto(f"{base}/#/experiments/{experiment}/runs/{parent}/artifacts", wait_until="load")
    node = page.wait_for_selector('[data-testid="artifact-tree-node"][artifact-name="best_config.yaml"]', timeout=60_000)
    node.click()
    page.wait_for_selector("text=learning_rate", timeout=30_000)
    page.screenshot(path=str(tmp_path / "parent_artifacts.png"))


def _status_icon(page, run_id: str) -> str:
    """The status icon in a run's row of the runs table (the drawing of its first path)."""
    icon = page.locator(f'div[row-id="{run_id}"] [col-id="runDateAndNestInfo"] svg path').first
    icon.wait_for(state="attached", timeout=30_000)
    return icon.get_attribute("d")


def _recorded_study(tmp_path, ends):
    """A study recorded in MLflow with one trial run per ``(stop reason, state)`` in ``ends``;
    returns its spec, parent run and trial runs by name."""
    from orchestrator.tracking.setup import recorder_for
    from tests.unit.tracking.test_user_mistakes import _runs, _spec, _study, _trial

    spec = _spec(tmp_path)
    study = _study(spec)
    recorder = recorder_for(study, spec, interval_s=3600).begin(study, spec, cluster={"nodes": 1, "cpus": 2, "gpus": 0})
    for reason, state in ends:
        trial, tune_trial = _trial(study, recorder.callback, 0.1, 2)
        trial.set_user_attr("stop_reason", reason)
        study.tell(trial, 0.5 if state == TrialState.COMPLETE else None, state=state)
        recorder.callback.on_trial_complete(iteration=0, trials=[], trial=tune_trial)
    assert recorder.finish(study, spec)
    _, parent, children = _runs(spec, study)
    return spec, parent, children


def test_a_pruned_trial_is_not_shown_as_failed_in_the_runs_table(tmp_path, browser, ui_process):
    spec, parent, children = _recorded_study(tmp_path, [
        ("completed", TrialState.COMPLETE), ("pruned at epoch 1", TrialState.PRUNED),
        ("failed: ValueError: boom", TrialState.FAIL)])
    experiment = parent.info.experiment_id
    completed, pruned, failed = (children[f"trial-00{n}"].info.run_id for n in range(3))

    process = ui_process(spec.name, "--storage", spec.storage, "--port", str(free_port()))
    base = _read_url(process).group(1).split("/#/")[0]
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{base}/#/experiments/{experiment}/runs", wait_until="load")
    page.wait_for_selector(f'a[href="#/experiments/{experiment}/runs/{parent.info.run_id}"]', timeout=60_000)
    page.click(f'div[row-id="{parent.info.run_id}"] button[data-component-id*="runnamecellrenderer"]')
    for run_id in (completed, pruned, failed):
        page.wait_for_selector(f'a[href="#/experiments/{experiment}/runs/{run_id}"]', timeout=30_000)
    page.screenshot(path=str(tmp_path / "runs_states.png"))
    ok, cut, bad = (_status_icon(page, run_id) for run_id in (completed, pruned, failed))
    assert cut == ok, "the pruned trial shows another icon than the completed one"
    assert bad != ok, "the failed trial should show MLflow's failure icon"


def test_the_printed_runs_table_shows_the_objective_and_the_state_without_configuring(tmp_path, browser, ui_process):
    spec, parent, children = _recorded_study(tmp_path, [
        ("completed", TrialState.COMPLETE), ("pruned at epoch 1", TrialState.PRUNED)])

    process = ui_process(spec.name, "--storage", spec.storage, "--port", str(free_port()))
    _read_url(process)
    line = process.stdout.readline()
    assert line.startswith(f"its trials, with {spec.objective.metric} and their state: "), line
    table = line.split(": ", 1)[1].strip()
    assert table.endswith(f"/#/experiments/{parent.info.experiment_id}/runs?viewStateShareKey=stepsize-trials")
    page = browser.new_page(viewport={"width": 1600, "height": 900})
    page.goto(table, wait_until="load")
    pruned = children["trial-001"].info.run_id
    page.wait_for_selector(f'div[row-id="{parent.info.run_id}"] button[data-component-id*="runnamecellrenderer"]',
                           timeout=60_000)
    page.click(f'div[row-id="{parent.info.run_id}"] button[data-component-id*="runnamecellrenderer"]')
    row = page.locator(f'div[row-id="{pruned}"]')  # the grid draws a row in its pinned and scrolled parts
    row.first.wait_for(timeout=30_000)
    page.screenshot(path=str(tmp_path / "runs_table_view.png"))
    headers = page.locator('[role="columnheader"]').all_inner_texts()
    assert any(spec.objective.metric in text for text in headers), headers
    assert any("stepsize.state" in text for text in headers), headers
    text = " ".join(row.all_inner_texts())
    assert "PRUNED" in text and "pruned at epoch 1" in text, text
