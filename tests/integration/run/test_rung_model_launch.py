"""The rung model through ``stepsize launch`` on real Ray, SQLite and MLflow: once it proposes,
the progress line says so, and the trials it proposed carry their rung in Optuna and MLflow and
are counted by ``stepsize status``."""

from __future__ import annotations

from mlflow import MlflowClient

from orchestrator.keys import Tag, TrialAttr
from tests.integration.run.test_user_mistakes import _cli, _study_file, _trials

SPACE = {
    "learning_rate": {"type": "float", "low": 0.001, "high": 1.0, "log": True},
    "momentum": {"type": "float", "low": 0.5, "high": 0.99},
}


def test_the_trials_the_rung_model_proposed_are_shown_marked_and_counted(tmp_path):
    study = _study_file(tmp_path, "rungs", "tests.workloads:quadratic", search_space=SPACE,
                        objective={"metric": "val_loss", "mode": "min"}, budget={"trials": 24, "max_epochs": 9},
                        scheduler={"name": "asha", "grace_period": 1},
                        sampler={"name": "tpe", "n_startup_trials": 4, "rung_model_after": 0.0,
                                 "rung_model_min_trials": 6})
    done = _cli(["launch", str(study)], tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = _trials(tmp_path, "rungs")
    marked = {t.number: t.user_attrs[TrialAttr.RUNG_MODEL_EPOCH] for t in trials
              if TrialAttr.RUNG_MODEL_EPOCH in t.user_attrs}
    assert marked and len(marked) < len(trials) == 24, marked
    assert min(marked) >= 6  # the first proposals come from the study's TPE: no rung has 6 trials yet
    assert "rung model at epoch " in done.stdout + done.stderr

    status = _cli(["status", "rungs", "--storage", f"sqlite:///{tmp_path}/optuna.db"], tmp_path)
    assert f"{len(marked)} proposed by the rung model" in status.stdout, status.stdout + status.stderr

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.search_experiments()[0].experiment_id
    runs = client.search_runs([experiment], filter_string=f"tags.`{Tag.ROLE}` = 'trial'", max_results=100)
    tagged = {int(r.data.tags[Tag.TRIAL_NUMBER]): int(r.data.tags[Tag.RUNG_MODEL_EPOCH])
              for r in runs if Tag.RUNG_MODEL_EPOCH in r.data.tags}
    assert len(runs) == 24 and tagged == marked
