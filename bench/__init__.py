"""stepsize's benchmarks, one folder each, every one run from the repository root as a module
(``.venv/bin/python -m bench.<folder>.<script> ...``) and writing to its folder's ``results/``:

- ``overhead/digits_overhead.py``: a 40-trial digits CNN study through stepsize, plain Optuna and
  stock Ray Tune; wall time after start-up, compute floor, overhead (docs/benchmarks.md).
- ``parallel_scaling/parallel_scaling.py``: digits CNN epoch times with 1 or 2 trainings at once,
  no orchestrator (docs/benchmarks.md).
- ``search_quality/search_quality.py``: anytime regret on the lcbench surrogate against plain
  Optuna, stock Ray Tune and random search; ``search_quality/tuning.py``: the in-process replay
  used to tune the defaults (docs/search_quality.md).
- ``scale/lcbench_scale.py``: a 2,000-trial lcbench study: suggest latency, throughput, memory;
  ``--driver-only`` and ``--tpe-cost`` (docs/search_quality.md).
- ``lr_range/lr_range_test.py``: the LR range test against a grid of trainings (docs/lr_range_test.md).
- ``lr_bounds/lr_bounds_auto.py``: ``lr_bounds: auto`` against the wide declared range (docs/benchmarks.md).
- ``mlflow_logging/mlflow_logging.py``: stepsize's MLflow recorder against Ray's MLflowLoggerCallback
  (docs/mlflow.md).
- ``commands/measure.py``: ``status``, ``best``, ``--help``, ``presets``, ``ui --help`` and a spec
  error against ``import torch``, in one run (docs/benchmarks.md).

``common.py`` holds what they share.
"""
