"""A real multi-node Ray cluster on one machine (``ray start`` per node), for development and
tests: :mod:`~cluster.local.cluster` runs it, :mod:`~cluster.local.cli` is ``stepsize cluster``."""

#: The head's GCS port, which names a local cluster, unless --port gives another; here rather than in
#: :mod:`~cluster.local.cluster` so that building the ``stepsize`` parser imports nothing more.
DEFAULT_PORT = 6380
