"""Tune a Hugging Face ``Trainer`` with stepsize (``pip install 'stepsize[hf]'``).

A workload builds its model and data as usual, then::

    from orchestrator.integrations import huggingface as hf

    def train(config, trial):
        args = hf.training_arguments(config, trial)       # the searched values, one eval per epoch
        trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val,
                          compute_metrics=accuracy)
        hf.fit(trainer, trial)                             # reports each evaluation, resumes, prunes

:class:`StepsizeCallback` reports every evaluation as one stepsize epoch (``eval_loss`` as
``val_loss``, the epoch's mean training loss as ``train_loss``, the current LR as ``lr``), saves a
checkpoint with it, and lets the scheduler stop the trial there. :func:`training_arguments` maps
stepsize's configuration keys (``learning_rate``, ``batch_size``, ``weight_decay``, ``optimizer``,
``schedule``, ``warmup_epochs``...) to ``TrainingArguments``; see ``docs/huggingface.md``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from orchestrator.errors import HuggingFaceMissing, TrialConfigError
from orchestrator.training.optimizers import DEFAULT_MOMENTUM, OPTIMIZERS, config_number
from orchestrator.training.schedules import SCHEDULES
from orchestrator.trial.context import TrialContext

try:
    import accelerate  # noqa: F401  (Trainer needs it; fail here, with the install line)
    from transformers import (
        PrinterCallback,
        Trainer,
        TrainerCallback,
        TrainerControl,
        TrainerState,
        TrainingArguments,
    )
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, TrainOutput
    from transformers.utils import logging as hf_logging
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise HuggingFaceMissing(
        f"orchestrator.integrations.huggingface needs transformers and accelerate ({exc}); "
        "install them with: pip install 'stepsize[hf]'"
    ) from exc

__all__ = ["StepsizeCallback", "training_arguments", "fit", "OPTIMIZER_NAMES", "SCHEDULE_NAMES"]

#: stepsize optimizer name -> ``TrainingArguments.optim`` (``adam`` only without weight decay).
OPTIMIZER_NAMES: Mapping[str, str] = {
    "sgd": "sgd", "adam": "adamw_torch", "adamw": "adamw_torch", "rmsprop": "rmsprop", "adagrad": "adagrad",
}
#: stepsize schedule name -> ``TrainingArguments.lr_scheduler_type`` (plus Trainer's ``linear``).
SCHEDULE_NAMES: Mapping[str, str] = {
    "constant": "constant", "linear": "linear", "cosine": "cosine", "warmup_cosine": "cosine",
    "plateau": "reduce_lr_on_plateau",
}
LOGGING_STEPS = 10  # training-loss logs (and divergence checks) every this many optimizer steps
GUARD_FILE = "stepsize_guard.json"  # the divergence guard's state, inside each checkpoint folder
DROPPED_METRICS = frozenset({"epoch", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second"})
_UNIT_OPEN = (lambda v: 0 <= v < 1, "a number in [0, 1)")
_POSITIVE = (lambda v: v > 0, "a positive number")
_NON_NEGATIVE = (lambda v: v >= 0, "a number >= 0")
_SCRATCH: set[str] = set()  # output folders training_arguments made; fit() removes them


# -- TrainingArguments from a trial's configuration ------------------------------------------------


def training_arguments(
    config: Mapping[str, Any], trial: TrialContext, output_dir: str | None = None, **overrides: Any
) -> TrainingArguments:
    """``TrainingArguments`` for this trial: ``config``'s searched values plus a trial's defaults.

    Mapped keys: ``learning_rate``, ``batch_size`` (per-device train and eval batch size),
    ``weight_decay``, ``optimizer`` (and its ``momentum``, ``nesterov``, ``beta1``, ``beta2``,
    ``eps``, ``alpha``, ``centered``, ``lr_decay``), ``schedule`` (and ``warmup_epochs``,
    ``min_lr_ratio``, ``plateau_factor``, ``plateau_patience``); keys left out keep Trainer's
    defaults, other keys are the workload's own. Defaults: ``trial.max_epochs`` epochs, one
    evaluation per epoch, ``trial.seed``, the CPU unless the trial has a GPU, no reporting
    integrations, no progress bars, no dataloader workers, a scratch ``output_dir``.

    ``overrides`` are ``TrainingArguments`` fields and win; giving ``optim`` or
    ``lr_scheduler_type`` skips mapping the optimizer or the schedule. A value Trainer cannot
    express raises :class:`~orchestrator.errors.TrialConfigError` naming the key.
    """
    if output_dir is None:
        output_dir = os.path.abspath(tempfile.mkdtemp(prefix=f"stepsize-hf-trial{trial.number}-"))
        _SCRATCH.add(output_dir)
    kwargs: dict[str, Any] = {
        "output_dir": output_dir,
        "num_train_epochs": trial.max_epochs,
        "eval_strategy": "epoch",
        "save_strategy": "no",  # StepsizeCallback saves a checkpoint with each report
        "save_total_limit": 1,  # Ray Tune has its own copy of each reported checkpoint
        "logging_strategy": "steps",
        "logging_steps": LOGGING_STEPS,
        "logging_first_step": True,  # the first batch's loss is the divergence guard's reference
        "logging_nan_inf_filter": False,  # a NaN loss must reach the divergence guard
        "seed": trial.seed,
        "use_cpu": trial.device == "cpu",
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }
    kwargs.update(hyperparameters(config, trial.max_epochs, skip_optimizer="optim" in overrides,
                                  skip_schedule="lr_scheduler_type" in overrides))
    kwargs.update(overrides)
    return TrainingArguments(**_for_this_version(kwargs))


def hyperparameters(config: Mapping[str, Any], epochs: int, skip_optimizer: bool = False,
                    skip_schedule: bool = False) -> dict[str, Any]:
    """The ``TrainingArguments`` fields ``config``'s stepsize keys map to (see
    :func:`training_arguments`); ``epochs`` is the trial's total, for the warm-up fraction."""
    out: dict[str, Any] = {}
    if config.get("learning_rate") is not None:
        out["learning_rate"] = config_number(config, "learning_rate", 0.0, *_POSITIVE)
    if config.get("batch_size") is not None:
        size = config_number(config, "batch_size", 0, lambda v: float(v).is_integer() and v >= 1, "a positive integer")
        out["per_device_train_batch_size"] = out["per_device_eval_batch_size"] = int(size)
    if config.get("weight_decay") is not None:
        out["weight_decay"] = config_number(config, "weight_decay", 0.0, *_NON_NEGATIVE)
    if not skip_optimizer:
        out.update(_optimizer(config))
    if not skip_schedule:
        out.update(_schedule(config, epochs))
    return out


def _optimizer(config: Mapping[str, Any]) -> dict[str, Any]:
    for key in ("head_lr_multiplier", "layer_lr_decay"):
        if config.get(key) is not None:
            raise TrialConfigError(
                f"config[{key!r}] (per-layer learning rates) has no TrainingArguments equivalent; build the "
                "optimizer with orchestrator.build_optimizer(config, model), pass it as Trainer(optimizers="
                "(optimizer, None)) and give training_arguments(..., optim='adamw_torch') to skip this mapping")
    name = config.get("optimizer")
    if name is None:
        return {}
    key = name.lower() if isinstance(name, str) else name
    if key not in OPTIMIZERS:
        raise TrialConfigError(f"config['optimizer'] is {name!r}; expected one of {', '.join(OPTIMIZERS)}")
    number = lambda k, default, check: config_number(config, k, default, *check)  # noqa: E731
    out: dict[str, Any] = {"optim": OPTIMIZER_NAMES[key]}
    args: dict[str, Any] = {}
    if key == "sgd":
        args["momentum"] = number("momentum", DEFAULT_MOMENTUM, _UNIT_OPEN)
        if config.get("nesterov") and args["momentum"] > 0:
            args["nesterov"] = "true"
    elif key == "rmsprop":
        args = {"alpha": number("alpha", 0.99, _UNIT_OPEN), "eps": number("eps", 1e-8, _POSITIVE),
                "momentum": number("momentum", 0.0, _UNIT_OPEN)}
        if config.get("centered"):
            args["centered"] = "true"
    elif key == "adagrad":
        args = {"lr_decay": number("lr_decay", 0.0, _NON_NEGATIVE), "eps": number("eps", 1e-10, _POSITIVE)}
        if number("initial_accumulator_value", 0.0, _NON_NEGATIVE) != 0:
            raise TrialConfigError("config['initial_accumulator_value'] has no Trainer equivalent (adagrad); leave it 0")
    else:
        if key == "adam" and number("weight_decay", 0.0, _NON_NEGATIVE) > 0:
            raise TrialConfigError(
                "config['optimizer'] is 'adam' with weight_decay > 0: Adam's L2 penalty has no Trainer equivalent "
                "(Trainer's Adam is AdamW, with decoupled decay); use optimizer 'adamw', or weight_decay 0")
        if config.get("amsgrad"):
            raise TrialConfigError("config['amsgrad'] has no Trainer equivalent; leave it false")
        out.update(adam_beta1=number("beta1", 0.9, _UNIT_OPEN), adam_beta2=number("beta2", 0.999, _UNIT_OPEN),
                   adam_epsilon=number("eps", 1e-8, _POSITIVE))
    if args:
        out["optim_args"] = ",".join(f"{k}={v}" for k, v in args.items())
    return out


def _schedule(config: Mapping[str, Any], epochs: int) -> dict[str, Any]:
    name = config.get("schedule")
    warmup_given = config.get("warmup_epochs") is not None
    if name is None and not warmup_given:
        return {}
    if name is not None and name not in SCHEDULE_NAMES:
        if name in SCHEDULES:
            raise TrialConfigError(
                f"config['schedule'] is {name!r}, which Trainer has no equivalent of; use one of "
                f"{', '.join(SCHEDULE_NAMES)}, or pass lr_scheduler_type=... to training_arguments")
        raise TrialConfigError(f"config['schedule'] is {name!r}; expected one of {', '.join(SCHEDULE_NAMES)}")
    warmup = config_number(config, "warmup_epochs", 1.0 if name == "warmup_cosine" else 0.0,
                           lambda v: 0 <= v < epochs, f"a number of epochs in [0, {epochs}) (the trial's epochs)")
    out: dict[str, Any] = {}
    if name is not None:
        out["lr_scheduler_type"] = SCHEDULE_NAMES[name]
    if name == "constant" and warmup > 0:
        out["lr_scheduler_type"] = "constant_with_warmup"
    if name in ("cosine", "warmup_cosine"):
        floor = config_number(config, "min_lr_ratio", 0.0, lambda v: 0 <= v <= 1, "a number in [0, 1]")
        if floor > 0:
            out.update(lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": floor})
    if name == "plateau":
        if warmup > 0:
            raise TrialConfigError("config['warmup_epochs'] cannot go with the plateau schedule in Trainer; leave it 0")
        out["lr_scheduler_kwargs"] = {
            "factor": config_number(config, "plateau_factor", 0.5, lambda v: 0 < v < 1, "a number in (0, 1)"),
            "patience": int(config_number(config, "plateau_patience", 2,
                                          lambda v: float(v).is_integer() and v >= 0, "an integer >= 0")),
        }
    if warmup > 0:
        out["warmup_ratio"] = warmup / epochs
    return out


def _for_this_version(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Rename fields for the installed transformers (4.x spellings where 5.x ones are missing)."""
    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    if "eval_strategy" not in fields and "eval_strategy" in kwargs:
        kwargs["evaluation_strategy"] = kwargs.pop("eval_strategy")
    if "use_cpu" not in fields and "use_cpu" in kwargs:
        kwargs["no_cuda"] = kwargs.pop("use_cpu")
    if "warmup_ratio" not in fields and "warmup_ratio" in kwargs:
        kwargs["warmup_steps"] = kwargs.pop("warmup_ratio")  # 5.x: a float below 1 is a fraction
    return kwargs


# -- the callback --------------------------------------------------------------------------------


class StepsizeCallback(TrainerCallback):
    """Reports each evaluation during ``Trainer.train`` to the stepsize trial as one epoch.

    Reported: the evaluation's metrics with ``eval_`` turned into ``prefix`` (``val_loss``,
    ``val_accuracy``...; ``rename`` maps any metric to a name of its own; runtime and throughput
    metrics are dropped), ``train_loss`` (the mean training loss since the previous report) and
    ``lr``. With ``checkpoint`` (and inside a study) each report comes with a Trainer checkpoint,
    which :func:`fit` resumes from. Every training-loss log goes through the divergence guard;
    when the scheduler stops the trial, ``trial.report`` raises ``SystemExit`` and
    ``Trainer.train`` ends with it (the trial is recorded as pruned).
    """

    def __init__(self, trial: TrialContext, prefix: str = "val_", rename: Mapping[str, str] | None = None,
                 checkpoint: bool = True):
        self.trial = trial
        self.prefix = prefix
        self.rename = dict(rename or {})
        self.checkpoint = checkpoint
        self._training = False
        self._last_step = 0
        self._loss_sum = 0.0
        self._loss_steps = 0
        self._lr: float | None = None
        self._pending: dict[str, float] | None = None

    def metrics(self, metrics: Mapping[str, Any]) -> dict[str, float]:
        """``metrics`` of an evaluation under stepsize's names (numbers only)."""
        out: dict[str, float] = {}
        for key, value in metrics.items():
            if key in DROPPED_METRICS or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            name = self.rename.get(key) or (self.prefix + key[len("eval_"):] if key.startswith("eval_") else key)
            out[name] = float(value)
        return out

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self._training = True
        self._last_step = state.global_step
        self._loss_sum, self._loss_steps, self._pending = 0.0, 0, None
        saved = Path(self.trial.restore_from or "", GUARD_FILE)
        if self.trial.restore_from and saved.is_file():
            self.trial.guard.load_state_dict(json.loads(saved.read_text()))

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self._flush()
        self._training = False

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self._flush()

    def _flush(self) -> None:
        """Report an evaluation whose checkpoint Trainer did not save (``save_strategy="best"``
        decided against it), without a checkpoint, before training goes on."""
        if self._pending is not None:
            values, self._pending = self._pending, None
            self.trial.report(**values)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: Mapping[str, Any] | None = None, **kwargs: Any):
        if not self._training or not logs or "loss" not in logs:
            return
        loss = float(logs["loss"])
        steps = max(1, state.global_step - self._last_step)
        self._last_step = state.global_step
        self._loss_sum += loss * steps
        self._loss_steps += steps
        if "learning_rate" in logs:
            self._lr = float(logs["learning_rate"])
        self.trial.check_loss(loss)  # TrialDiverged stops Trainer.train here, inside the epoch

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if state.global_step > self._last_step:
            control.should_log = True  # the epoch's last steps reach train_loss and the guard

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    metrics: Mapping[str, Any] | None = None, **kwargs: Any):
        if not self._training:
            return  # trainer.evaluate() before or after training is not an epoch
        values = self.metrics(metrics or {})
        if self._loss_steps:
            values["train_loss"] = self._loss_sum / self._loss_steps
        optimizer = kwargs.get("optimizer")
        lr = optimizer.param_groups[0]["lr"] if optimizer is not None and optimizer.param_groups else self._lr
        if lr is not None:
            values["lr"] = float(lr)
        self._loss_sum, self._loss_steps = 0.0, 0
        diverged = not math.isfinite(values.get("train_loss", 0.0))
        if self.checkpoint and self.trial.checkpointing and not diverged:
            self._pending = values
            control.should_save = True  # on_save reports, once the checkpoint is written
        else:
            self.trial.report(**values)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if self._pending is None:
            return
        values, self._pending = self._pending, None
        folder = Path(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if not folder.is_dir():  # not written by this process (another rank's save)
            self.trial.report(**values)
            return
        (folder / GUARD_FILE).write_text(json.dumps(self.trial.guard.state_dict()))
        self.trial.report(checkpoint_dir=str(folder), **values)


def fit(trainer: Trainer, trial: TrialContext, **callback_options: Any) -> TrainOutput:
    """``trainer.train()`` as a stepsize trial: adds a :class:`StepsizeCallback` (with
    ``callback_options``) unless the trainer has one, drops Trainer's per-log printing, continues
    from the trial's checkpoint when it is resumed, and removes the scratch ``output_dir`` that
    :func:`training_arguments` made once training ends (Ray Tune keeps the reported checkpoints)."""
    if not any(isinstance(cb, StepsizeCallback) for cb in trainer.callback_handler.callbacks):
        trainer.add_callback(StepsizeCallback(trial, **callback_options))
    trainer.remove_callback(PrinterCallback)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Writing model shards" at every checkpoint
    try:
        return trainer.train(resume_from_checkpoint=trial.resume_dir())
    finally:
        if bars:
            hf_logging.enable_progress_bar()
        output_dir = os.path.abspath(str(trainer.args.output_dir))
        if output_dir in _SCRATCH:
            _SCRATCH.discard(output_dir)
            shutil.rmtree(output_dir, ignore_errors=True)
