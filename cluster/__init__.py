"""How to run stepsize on a Ray cluster: the cluster-launcher and KubeRay configurations beside
this file, and :mod:`cluster.local`, a real multi-node Ray cluster on one machine for development
and tests (``stepsize cluster up|status|add-node|kill-node|down``)."""
