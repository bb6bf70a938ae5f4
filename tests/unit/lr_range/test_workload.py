"""The LR range test on a study's workload: the built-in digits setup at the configured batch size,
and the contract of a user workload's ``<function>_lr_range_setup``."""

from __future__ import annotations

import sys
import textwrap

import pytest

from orchestrator.errors import LRRangeSetupMissing, SpecError
from orchestrator.lr_range.workload import run_lr_range_for_workload
from orchestrator.workloads.digits import digits_lr_range_setup


def test_builtin_workload_uses_the_configured_batch_size():
    _, _, batches = digits_lr_range_setup({"batch_size": 100}, {}, 0, kind="mlp")
    assert [len(x) for x, _ in batches[:-1]] == [100] * (len(batches) - 1)
    _, _, default = digits_lr_range_setup({}, {}, 0, kind="mlp")
    assert len(default[0][0]) == 64
    result = run_lr_range_for_workload("digits_mlp", {"batch_size": 32, "momentum": 0.9}, {}, 1, min_lr=1e-4)
    assert result.steps_per_epoch == len(digits_lr_range_setup({"batch_size": 32}, {}, 1, kind="mlp")[2])
    assert result.context["workload"] == "digits_mlp" and result.context["config"]["batch_size"] == 32
    assert result.suggested_lr is not None


def test_user_workload_setup_contract(tmp_path, monkeypatch):
    (tmp_path / "lrmod_user.py").write_text(textwrap.dedent('''
        import torch
        from torch import nn

        def train(config, trial):
            raise AssertionError("the range test does not call the training function")

        def train_lr_range_setup(config, options, seed):
            g = torch.Generator().manual_seed(seed)
            x = torch.randn(240, 4, generator=g)
            y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
            bs = int(config.get("batch_size", 16))
            return nn.Linear(4, 1), nn.MSELoss(), [(x[i:i + bs], y[i:i + bs]) for i in range(0, 240, bs)]

        def other(config, trial):
            pass
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run_lr_range_for_workload("lrmod_user:train", {"batch_size": 16}, {}, 0, min_lr=1e-4, max_lr=10.0)
    assert result.steps_per_epoch == 15 and result.suggested_lr is not None
    with pytest.raises(LRRangeSetupMissing, match=r"other_lr_range_setup\(config, options, seed\)"):
        run_lr_range_for_workload("lrmod_user:other", {}, {}, 0)
    with pytest.raises(SpecError, match=r"a built-in \(.*\) or package\.module:function") as neither:
        run_lr_range_for_workload("digits_resnet", {}, {}, 0)  # neither a built-in nor module:function
    assert neither.value.field == "workload"
    sys.modules.pop("lrmod_user", None)
