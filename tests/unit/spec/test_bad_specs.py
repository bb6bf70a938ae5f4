"""Property-based input hardening: generated bad study files (malformed YAML, wrong types,
out-of-range and contradictory values, unknown fields, samplers, schedulers and workload modules)
always give the one-paragraph error with exit code 2, never a traceback, and write nothing."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.cli import main
from orchestrator.spec.model import TOP_LEVEL_FIELDS

SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
BASE = {"name": "ok", "workload": "digits_mlp", "budget": {"trials": 2, "max_epochs": 3}}

texts = st.text(min_size=1, max_size=12)
not_ints = st.one_of(texts, st.floats(allow_nan=True).filter(lambda x: x != int(x) if x == x and abs(x) != float("inf") else True),
                     st.booleans(), st.lists(st.integers(), max_size=2))
non_positive = st.integers(max_value=0)


def _set(data: dict, path: str, value) -> dict:
    data = yaml.safe_load(yaml.safe_dump(data))
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return data


# (field, bad values): every value here is wrong for its field.
FIELD_MUTATIONS = st.one_of(
    st.tuples(st.just("name"), st.one_of(st.integers(), st.lists(st.integers(), max_size=2), st.just(""),
                                          st.text(alphabet=" /\\!@#$%^&*()", min_size=1, max_size=8), st.none())),
    st.tuples(st.just("workload"), st.one_of(st.integers(), st.lists(texts, max_size=2),
                                              st.from_regex(r"\Azz_missing_[a-z]{1,6}(\.[a-z]{1,5})?:[a-z]{1,5}\Z"),
                                              st.from_regex(r"\Adigits_[a-z]{3,8}x\Z"))),
    st.tuples(st.just("budget.trials"), st.one_of(non_positive, st.integers(min_value=1_000_001), not_ints)),
    st.tuples(st.just("budget.max_epochs"), st.one_of(non_positive, not_ints)),
    st.tuples(st.just("budget.epochs"), st.one_of(st.integers(max_value=2), not_ints)),  # below max_epochs (3)
    st.tuples(st.just("budget.time_limit"), st.one_of(st.integers(max_value=0), st.from_regex(r"\A[a-z]{2,6}\Z"), st.lists(st.integers(), min_size=1, max_size=2))),
    st.tuples(st.just("concurrency"), st.one_of(non_positive, texts.filter(lambda t: t != "auto"), st.floats(min_value=0.1, max_value=0.9))),
    st.tuples(st.just("seed"), st.one_of(st.integers(max_value=-1), texts, st.floats(min_value=0.1, max_value=0.9), st.booleans())),
    st.tuples(st.just("sampler"), st.one_of(texts.filter(lambda t: t not in {"tpe", "gp", "random", "grid", "qmc"}), st.integers())),
    st.tuples(st.just("scheduler"), st.one_of(texts.filter(lambda t: t not in {"asha", "hyperband", "median", "none"}), st.integers())),
    st.tuples(st.just("scheduler.grace_period"), st.one_of(st.integers(min_value=4, max_value=10**6), non_positive, texts)),
    st.tuples(st.just("objective.mode"), texts.filter(lambda t: t not in {"min", "max"})),
    st.tuples(st.just("resources.cpus"), st.one_of(st.floats(max_value=0), texts)),
    st.tuples(st.just("resources.gpu"), st.one_of(st.floats(max_value=-0.01), texts)),
    st.tuples(st.just("storage"), st.one_of(st.from_regex(r"\A[a-z]{1,8}\Z"), st.from_regex(r"\A(ftp|redis|mongo)://[a-z]{1,5}\Z"),
                                             st.just("sqlite:///no/such/folder/x.db"), st.integers())),
    st.tuples(st.just("tracking_uri"), st.one_of(st.from_regex(r"\A[a-z]{1,8}\Z"), st.from_regex(r"\A(ftp|redis)://[a-z]{1,5}\Z"))),
    st.tuples(st.just("divergence.loss_factor"), st.one_of(st.floats(max_value=1.0), texts)),
    st.tuples(st.just("failures.max_retries"), st.one_of(st.integers(max_value=-1), st.integers(min_value=101), texts)),
    st.tuples(st.just("lr_scaling.rule"), texts.filter(lambda t: t not in {"none", "linear", "sqrt"})),
    st.tuples(st.from_regex(r"\A[a-z_]{1,12}\Z").filter(lambda k: k not in TOP_LEVEL_FIELDS), st.integers()),
)


@st.composite
def bad_search_spaces(draw):
    kind = draw(st.sampled_from(["low_above_high", "log_nonpositive", "batch_size", "learning_rate", "momentum",
                                 "unknown_type", "empty_choices", "not_a_mapping"]))
    if kind == "low_above_high":
        low = draw(st.floats(min_value=1e-3, max_value=1e3))
        return {"learning_rate": {"type": "float", "low": low * 2, "high": low}}
    if kind == "log_nonpositive":
        return {"weight": {"type": "float", "low": draw(st.floats(min_value=-10, max_value=0)), "high": 1.0, "log": True}}
    if kind == "batch_size":
        bad = draw(st.integers(max_value=0))
        return {"batch_size": draw(st.sampled_from([bad, {"type": "int", "low": bad, "high": 64},
                                                    {"type": "categorical", "choices": [bad, 32]}]))}
    if kind == "learning_rate":
        return {"learning_rate": draw(st.floats(max_value=0, allow_nan=False))}
    if kind == "momentum":
        return {"momentum": {"type": "float", "low": 0.5, "high": draw(st.floats(min_value=1.01, max_value=100))}}
    if kind == "unknown_type":
        return {"learning_rate": {"type": draw(texts.filter(lambda t: t not in {"float", "int", "categorical", "fixed"})),
                                  "low": 0.1, "high": 1}}
    if kind == "empty_choices":
        return {"optimizer": {"type": "categorical", "choices": []}}
    return draw(st.one_of(st.integers(), st.lists(st.integers(), min_size=1, max_size=3), st.just({})))


MALFORMED_YAML = st.one_of(
    st.sampled_from(["name: [unclosed", "a: b: c", "{", "name: 'unterminated", "- a\n- b", "42", "\tname: x",
                     "budget: {trials: 3", "name: ok\nname: [", "&anchor\n*other", "? [a\n: b"]),
    st.tuples(st.sampled_from(["name: ok\nbudget: {", "search_space: [", "sampler: {name: "]), texts).map("".join),
)


def _launch_in(folder: Path, text: str) -> tuple[int, str]:
    path = folder / "study.yaml"
    path.write_text(text)
    err = io.StringIO()
    here = os.getcwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["launch", str(path), "--quiet"])
    finally:
        os.chdir(here)
    return code, err.getvalue()


def _assert_clear_refusal(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        code, err = _launch_in(Path(folder), text)
        assert code == 2, (text, err)
        assert "Traceback" not in err and err.startswith("stepsize: "), err
        assert "\n\n" not in err.strip() and len(err.strip().splitlines()) == 1, err
        assert sorted(os.listdir(folder)) == ["study.yaml"], "something was written for a bad spec"


@settings(max_examples=400, **SETTINGS)
@given(FIELD_MUTATIONS)
def test_bad_field_values_are_refused_clearly(mutation):
    field, value = mutation
    _assert_clear_refusal(yaml.safe_dump(_set(BASE, field, value)))


@settings(max_examples=120, **SETTINGS)
@given(bad_search_spaces())
def test_bad_search_spaces_are_refused_clearly(space):
    _assert_clear_refusal(yaml.safe_dump({**BASE, "search_space": space}))


@settings(max_examples=80, **SETTINGS)
@given(MALFORMED_YAML)
def test_malformed_yaml_is_refused_clearly(text):
    _assert_clear_refusal(text)


def test_the_base_spec_itself_is_valid():
    from orchestrator.spec import spec_from_mapping

    assert spec_from_mapping(BASE).budget.trials == 2
