"""A workload that cannot be called as fn(config, trial) is refused before anything starts."""

from __future__ import annotations

import pytest

from orchestrator.cli import main
from orchestrator.errors import SpecError
from orchestrator.workloads.registry import check_signature, resolve_workload


def two(config, trial):
    pass


def with_default(config, trial, extra=1):
    pass


def star(*args):
    pass


def one(config):
    pass


def three(config, trial, data):
    pass


async def coroutine(config, trial):
    pass


def generator(config, trial):
    yield 1


@pytest.mark.parametrize("fn", [two, with_default, star])
def test_callables_taking_config_and_trial_pass(fn):
    check_signature(fn, "m:f")


@pytest.mark.parametrize("fn, words", [
    (one, "one(config) cannot be called that way"),
    (three, "three(config, trial, data) cannot be called that way"),
    (coroutine, "is a coroutine function"),
    (generator, "is a generator function"),
])
def test_a_wrong_signature_is_a_spec_error_naming_the_workload_field(fn, words):
    with pytest.raises(SpecError) as caught:
        check_signature(fn, "m:f")
    message = str(caught.value)
    assert message.startswith("`workload` is 'm:f'; expected ")
    assert words in message
    assert "def train(config, trial):" in message or "Make it a plain `def`" in message


def test_resolve_checks_the_signature():
    with pytest.raises(SpecError, match="takes_one_argument"):
        resolve_workload("tests.workloads:takes_one_argument")


def test_launch_with_a_one_argument_workload_exits_2_before_anything_is_created(workdir, capsys):
    (workdir / "study.yaml").write_text(
        "name: sig\nworkload: tests.workloads:takes_one_argument\nbudget: {trials: 2, max_epochs: 2}\n"
        f"storage: sqlite:///{workdir}/optuna.db\ntracking_uri: sqlite:///{workdir}/mlflow.db\n"
        f"results_dir: {workdir}/ray\n")
    code = main(["launch", str(workdir / "study.yaml")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("stepsize: invalid study spec: `workload` is 'tests.workloads:takes_one_argument'")
    assert "takes_one_argument(config" in err and "cannot be called that way" in err and "Traceback" not in err
    assert not (workdir / "optuna.db").exists() and not (workdir / "mlflow.db").exists()
    assert not (workdir / "ray").exists()
