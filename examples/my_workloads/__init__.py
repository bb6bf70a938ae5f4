"""Example user workloads for stepsize (see the README's "Your own training function")."""
