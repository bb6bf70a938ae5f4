"""Workloads used by the tests (imported by name in Ray workers)."""

from __future__ import annotations

from orchestrator import TrialContext


def fail_odd_trials(config: dict, trial: TrialContext) -> None:
    """Reports two epochs; odd-numbered trials raise after the first."""
    for epoch in range(1, trial.max_epochs + 1):
        if trial.number % 2 == 1 and epoch == 2:
            raise ValueError(f"boom in trial {trial.number}")
        trial.report(val_loss=config["learning_rate"] / epoch, train_loss=1.0 / epoch)


def quadratic(config: dict, trial: TrialContext) -> None:
    """A deterministic curve: the loss falls with epochs, lowest at learning_rate 0.1."""
    import math

    for epoch in range(1, trial.max_epochs + 1):
        gap = (math.log10(config["learning_rate"]) + 1) ** 2
        trial.report(val_loss=gap + 1.0 / epoch, val_accuracy=1 / (1 + gap))


def stops_early(config: dict, trial: TrialContext) -> None:
    """Returns after two epochs on its own (its own early stopping)."""
    for _ in range(2):
        trial.report(val_loss=config["learning_rate"])


def explodes_above_half(config: dict, trial: TrialContext) -> None:
    """Batch losses grow geometrically when learning_rate > 0.5; the guard must stop it in epoch 2."""
    lr = config["learning_rate"]
    loss = 2.0
    for epoch in range(1, trial.max_epochs + 1):
        for _ in range(10):
            if lr > 0.5 and epoch >= 2:
                loss *= 3.0
            trial.check_loss(loss)
        trial.report(train_loss=loss, val_loss=loss / 2 + abs(lr - 0.1))


def dies_once(config: dict, trial: TrialContext) -> None:
    """A tiny model, checkpointed every epoch. The first run of each trial kills its own worker
    process in epoch 3; every start writes the epoch it continued from to ``<marker_dir>``."""
    import os
    import signal
    from pathlib import Path

    import torch

    folder = Path(trial.options["marker_dir"])
    torch.manual_seed(trial.seed)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=config["learning_rate"])
    start = trial.restore(model=model, optimizer=optimizer)
    with open(folder / f"trial-{trial.number}.starts", "a") as starts:
        starts.write(f"{start}\n")
    x = torch.linspace(-1, 1, 32).reshape(8, 4)
    y = x.sum(dim=1, keepdim=True)
    for epoch in range(start + 1, trial.max_epochs + 1):
        if epoch == 3 and not (folder / f"trial-{trial.number}.died").exists():
            (folder / f"trial-{trial.number}.died").touch()
            os.kill(os.getpid(), signal.SIGKILL)
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        trial.report(train_loss=loss.item(), val_loss=loss.item())


def raises_in_epoch_two(config: dict, trial: TrialContext) -> None:
    """Counts its attempts in ``<marker_dir>/trial-N.attempts`` and raises in epoch 2."""
    from pathlib import Path

    with open(Path(trial.options["marker_dir"]) / f"trial-{trial.number}.attempts", "a") as attempts:
        attempts.write("1\n")
    trial.report(val_loss=1.0, train_loss=1.0)
    raise RuntimeError(f"bad batch in trial {trial.number}")


def takes_one_argument(config: dict) -> None:
    """The common first mistake: a workload without the trial argument."""


def reports_val_accuracy(config: dict, trial: TrialContext) -> None:
    """Reports ``val_accuracy`` (a study asking for ``val_acc`` never gets it)."""
    for _ in range(trial.max_epochs):
        trial.report(train_loss=1.0, val_loss=1.0, val_accuracy=0.5)


def raises_above_lr(config: dict, trial: TrialContext) -> None:
    """Raises a ValueError naming the learning rate when it is above ``options["max_lr"]``."""
    import math

    for epoch in range(1, trial.max_epochs + 1):
        if config["learning_rate"] > trial.options["max_lr"]:
            raise ValueError(f"learning rate {config['learning_rate']:.3g} is too high for this model")
        trial.report(val_loss=abs(math.log10(config["learning_rate"]) + 2) + 1.0 / epoch, train_loss=1.0 / epoch)


def sleeps_each_epoch(config: dict, trial: TrialContext) -> None:
    """Each epoch sleeps ``options["epoch_s"]`` seconds, registers a checkpoint and reports."""
    import math
    import time

    import torch

    model = torch.nn.Linear(1, 1)
    start = trial.restore(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=config["learning_rate"]))
    for epoch in range(start + 1, trial.max_epochs + 1):
        time.sleep(trial.options.get("epoch_s", 1.0))
        trial.report(val_loss=abs(math.log10(config["learning_rate"]) + 2) + 1.0 / epoch, train_loss=1.0 / epoch)


def hangs_above_lr(config: dict, trial: TrialContext) -> None:
    """Blocks for ever in C (``time.sleep(10**6)``) in epoch 2 when learning_rate > options["hang_lr"]."""
    import math
    import time

    for epoch in range(1, trial.max_epochs + 1):
        if epoch == 2 and config["learning_rate"] > trial.options.get("hang_lr", 0.1):
            time.sleep(10**6)
        time.sleep(0.05)
        trial.report(val_loss=abs(math.log10(config["learning_rate"]) + 2) + 1.0 / epoch)


def hogs_memory_above_lr(config: dict, trial: TrialContext) -> None:
    """Allocates 50 MiB every 0.1 s without bound when learning_rate > options["hog_lr"]."""
    import math
    import time

    hoard = []
    for epoch in range(1, trial.max_epochs + 1):
        if config["learning_rate"] > trial.options.get("hog_lr", 0.1):
            for _ in range(10**6):
                hoard.append(bytearray(50 * 2**20))  # bytearray() zero-fills: resident at once
                time.sleep(0.1)
        time.sleep(0.05)
        trial.report(val_loss=abs(math.log10(config["learning_rate"]) + 2) + 1.0 / epoch)


def exits_above_lr(config: dict, trial: TrialContext) -> None:
    """Reports epoch 1, then calls ``sys.exit(options["exit_code"])`` (default 3) when
    learning_rate > options["exit_lr"] (default 0: every trial); else trains its epochs."""
    import math
    import sys

    for epoch in range(1, trial.max_epochs + 1):
        trial.report(val_loss=abs(math.log10(config["learning_rate"]) + 2) + 1.0 / epoch)
        if config["learning_rate"] > trial.options.get("exit_lr", 0.0):
            sys.exit(trial.options.get("exit_code", 3))


def kills_its_worker_once(config: dict, trial: TrialContext) -> None:
    """The first attempt of each trial kills its own worker process (``os._exit``) after epoch 1;
    the retry (a marker file in options["marker_dir"] says it is one) trains its epochs."""
    import math
    import os

    marker = os.path.join(trial.options["marker_dir"], f"trial-{trial.number}")
    for epoch in range(1, trial.max_epochs + 1):
        trial.report(val_loss=abs(math.log10(config["learning_rate"]) + 2) + 1.0 / epoch)
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
