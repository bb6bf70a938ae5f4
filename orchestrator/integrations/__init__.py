"""Bring your own training: stepsize's reporting for code not written to ``fn(config, trial)``.

- :mod:`~orchestrator.integrations.script`: the one-line reporting API a training script run as
  the workload (``workload: {script: train.py}``) calls; it imports nothing but the standard library.
- :mod:`~orchestrator.integrations.lightning`: a PyTorch Lightning callback (``stepsize[lightning]``).
- :mod:`~orchestrator.integrations.huggingface`: a Hugging Face ``TrainerCallback`` (``stepsize[hf]``).

Importing this package imports none of them.
"""
