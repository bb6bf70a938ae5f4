"""A Hugging Face ``Trainer`` workload: a tiny BERT, built from a config (nothing downloaded),
classifies generated integer-token sequences: does the "needle" token occur more than once?

stepsize calls ``train(config, trial)`` once per trial; :func:`training_arguments` turns the
searched values (learning_rate, batch_size, weight_decay, warmup_epochs...) into
``TrainingArguments`` and :func:`fit` runs the Trainer as the trial: one report per epoch
(``val_loss``, ``val_accuracy``, ``train_loss``, ``lr``), a checkpoint with each, pruning, resume.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import torch

from orchestrator import TrialContext
from orchestrator.integrations import huggingface as hf

VOCAB, LENGTH, NEEDLE = 24, 16, 3  # token 0 is padding, never generated


class Sequences(torch.utils.data.Dataset):
    """``n`` sequences of random tokens; label 1 when NEEDLE occurs at least twice (about half)."""

    def __init__(self, n: int, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.tokens = torch.randint(1, VOCAB, (n, LENGTH), generator=generator)
        self.labels = ((self.tokens == NEEDLE).sum(dim=1) >= 2).long()

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.tokens[i], "labels": self.labels[i]}


@functools.lru_cache(maxsize=1)
def _data(n_train: int, n_val: int) -> tuple[Sequences, Sequences]:
    return Sequences(n_train, seed=0), Sequences(n_val, seed=1)


def accuracy(prediction) -> dict[str, float]:
    """``compute_metrics`` for the Trainer: reported as ``val_accuracy``."""
    return {"accuracy": float(np.mean(prediction.predictions.argmax(-1) == prediction.label_ids))}


def build_trainer(config: dict, trial: TrialContext):
    """The model, the data and a ``Trainer`` whose arguments come from the trial."""
    from transformers import BertConfig, BertForSequenceClassification, Trainer

    options = trial.options
    hidden = int(options.get("hidden", 32))
    torch.manual_seed(trial.seed)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=VOCAB, max_position_embeddings=LENGTH, num_labels=2, hidden_size=hidden,
        num_hidden_layers=2, num_attention_heads=2, intermediate_size=2 * hidden,
    ))
    train_set, val_set = _data(int(options.get("train_size", 1024)), int(options.get("val_size", 256)))
    # Epochs, one evaluation per epoch, seed, CPU... from the trial; Trainer's files in a scratch
    # folder unless workload_options.output_dir names one (a folder per trial inside it).
    folder = options.get("output_dir")
    output_dir = os.path.join(folder, f"trial-{trial.number}") if folder else None
    args = hf.training_arguments(config, trial, output_dir=output_dir)
    return Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=val_set, compute_metrics=accuracy)


def train(config: dict, trial: TrialContext) -> None:
    hf.fit(build_trainer(config, trial), trial)
