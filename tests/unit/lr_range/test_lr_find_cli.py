"""``stepsize lr-find`` as a user runs it, on the real digits CNN: a small data set (6 batches an
epoch) ramps over 3 epochs and says it is not confident, a larger one gets the default 100 steps,
the suggestion stays inside the ramp, and bad options exit 2 naming the option."""

from __future__ import annotations

import json

import pytest

from orchestrator.cli import main
from tests.conftest import ROOT

STUDY = str(ROOT / "examples" / "digits.yaml")  # search_space: default, learning_rate 1e-4..1


def _lines(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_a_small_data_set_ramps_over_three_epochs_and_says_why_it_is_not_confident(workdir, capsys):
    code = main(["lr-find", STUDY, "--batch-size", "256"])  # 1437 training digits: 6 batches an epoch
    captured = capsys.readouterr()
    assert code == 0
    assert captured.err == (
        "stepsize: lr-find: ramping the learning rate 0.0001 -> 10 (exponential) over 18 steps, "
        "3 epochs of 6 batches ...\n"
    )
    out = captured.out
    assert _lines(out, "ramp ") == ["ramp 0.0001 -> 10 (exponential), 18 steps (3 epochs of 6 batches); completed the ramp"]
    assert _lines(out, "confident: ") == ["confident: no (only 18 steps, under 30)"]
    suggested = float(_lines(out, "suggested learning_rate: ")[0].split(": ")[1])
    low, high = (float(v) for v in _lines(out, "suggested search range: ")[0].split("[")[1].split("]")[0].split(", "))
    assert 1e-4 <= low <= suggested <= high <= 10.0  # inside the ramp (it was 1e-5 on a 6-step ramp)
    assert any("the ramp had only 18 steps (3 epochs of 6 batches)" in line for line in _lines(out, "note: "))


def test_a_larger_data_set_gets_the_default_100_steps_within_three_epochs(workdir, capsys):
    code = main(["lr-find", STUDY, "--batch-size", "32", "--json"])  # 45 batches an epoch
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert result["steps_per_epoch"] == 45 and result["planned_steps"] == result["num_steps"] == 100
    assert result["fraction_of_epoch"] == pytest.approx(100 / 45)
    assert result["confident"] and result["confidence_reason"] == "a clear descent, then the loss rose for good"
    low, high = result["bounds"]
    assert result["min_lr"] <= low < result["suggested_lr"] < high <= result["max_lr"]


def test_the_suggestion_is_clipped_to_the_ramp(workdir, capsys):
    # the loss is lowest near the ramp's start: the rule's minimum / 10 would fall below 0.5
    code = main(["lr-find", STUDY, "--batch-size", "256", "--min-lr", "0.5", "--max-lr", "50", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert result["suggested_lr"] == pytest.approx(0.5) and result["bounds"][0] == pytest.approx(0.5)
    assert result["bounds"][1] <= 50.0 and not result["confident"]
    assert any(n.startswith("suggestion: clipped to the ramp's first LR 0.5") for n in result["notes"])


def test_a_suggestion_outside_the_search_space_names_the_fix(workdir, capsys):
    code = main(["lr-find", STUDY, "--min-lr", "1e-7", "--max-lr", "1e-5"])
    out = capsys.readouterr().out
    assert code == 0
    suggested = float(_lines(out, "suggested learning_rate: ")[0].split(": ")[1])
    assert 1e-7 <= suggested <= 1e-5
    [note] = [line for line in _lines(out, "note: ") if "search_space.learning_rate" in line]
    assert f"the suggested learning_rate {suggested:.3g} is outside the study's search range" in note
    assert "search_space.learning_rate [0.0001, 1]: set its low to" in note and "leave out --min-lr / --max-lr" in note


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--min-lr", "1", "--max-lr", "0.1"],
         "--min-lr 1 is not below --max-lr 0.1; the ramp climbs from --min-lr up to --max-lr"),
        (["--min-lr", "-1"], "--min-lr is -1; expected a learning rate above 0, such as 1e-4"),
        (["--max-lr", "0"], "--max-lr is 0; expected a learning rate above 0, such as 1e-4"),
        (["--num-steps", "1"], "--num-steps is 1; expected at least 3 batches (2 updates and a last measurement), "
                               "or leave it out for the default: 100 steps, over up to 3 epochs of the training data"),
        (["--batch-size", "0"], "--batch-size is 0; expected at least 1"),
        (["--min-lr", "20"], "--min-lr 20 is not below the ramp's end 10 (the default --max-lr: 10x the study's "
                             "highest learning_rate, at most 10); the ramp climbs from --min-lr up to --max-lr: "
                             "pass a --max-lr above it"),
    ],
)
def test_bad_options_exit_2_with_one_paragraph_naming_the_option(workdir, capsys, options, message):
    code = main(["lr-find", STUDY, *options])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err == f"stepsize: lr-find: {message}\n"
    assert not (workdir / "lr_range.png").exists()


def test_no_suggestion_exits_1_and_says_why(workdir, capsys):
    code = main(["lr-find", STUDY, "--batch-size", "256", "--num-steps", "3"])
    out = capsys.readouterr().out
    assert code == 1
    assert _lines(out, "ramp ") == ["ramp 0.0001 -> 10 (exponential), 3 steps (0.5 epochs of 6 batches); completed the ramp"]
    assert _lines(out, "no suggestion: ") == ["no suggestion: suggestion: none, only 2 point(s) on the curve, or use more batches"]
