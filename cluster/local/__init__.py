"""A real multi-node Ray cluster on one machine (``ray start`` per node), for development and
tests: :mod:`~cluster.local.cluster` runs it, :mod:`~cluster.local.cli` is ``stepsize cluster``."""
