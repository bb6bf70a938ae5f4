"""A YAML alias bomb ("billion laughs") in a study file is refused as a SpecError naming the file,
in well under a second and without building the expanded value, wherever it sits (top level or
inside ``workload_options``); a self-referencing alias too; ordinary anchors and merge keys load."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from orchestrator.errors import SpecError
from orchestrator.spec import load_spec
from orchestrator.spec.yaml_source import MAX_VALUES, load_yaml


def bomb(levels: int = 9, fan: int = 9, indent: str = "") -> str:
    """``levels`` anchors, each a list of ``fan`` aliases of the one before: fan**levels values."""
    lines = [f'{indent}a0: &a0 ["lol"]']
    lines += [f"{indent}a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fan)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def _refused_quickly(path) -> SpecError:
    tracemalloc.start()
    began = time.perf_counter()
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    elapsed = time.perf_counter() - began
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 0.5, f"took {elapsed:.2f} s"
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    return caught.value


def test_a_top_level_alias_bomb_is_refused_quickly_naming_the_file(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text("name: bomb\n" + bomb())
    error = _refused_quickly(path)
    assert error.field == "study file" and str(path) in str(error)
    assert "alias" in str(error) and f"{MAX_VALUES:,}" in str(error)


def test_an_alias_bomb_inside_workload_options_is_refused_before_validation(tmp_path):
    path = tmp_path / "opts.yaml"
    path.write_text("name: opts\nworkload: digits_mlp\nworkload_options:\n" + bomb(indent="  "))
    error = _refused_quickly(path)
    assert error.field == "study file"


def test_a_value_that_contains_itself_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("name: loop\nworkload_options: &me {again: *me}\n")
    with pytest.raises(SpecError, match="contain"):
        load_spec(path)


def test_ordinary_anchors_and_merge_keys_still_load():
    data = load_yaml("base: &b {lr: 0.1, momentum: 0.9}\nother:\n  <<: *b\n  lr: 0.2\nlist: [*b, *b]\n", "x.yaml")
    assert data["other"] == {"lr": 0.2, "momentum": 0.9} and data["list"][1]["lr"] == 0.1


def test_spec_error_shows_a_huge_shared_value_without_walking_it():
    value: list = ["lol"]
    for _ in range(30):  # 9**30 leaves if walked
        value = [value] * 9
    began = time.perf_counter()
    text = str(SpecError("workload_options", value, "something smaller"))
    assert time.perf_counter() - began < 0.1 and len(text) < 400
