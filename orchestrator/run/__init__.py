"""The Ray Tune side of a study (driver): launch and resume (:mod:`~orchestrator.run.launch`),
the Optuna-backed searcher, the early-stopping schedulers, concurrency, the progress view, and the
same search played in-process (:mod:`~orchestrator.run.simulate`). Import the modules themselves;
the package exports nothing, so importing it costs nothing."""

__all__: list[str] = []
