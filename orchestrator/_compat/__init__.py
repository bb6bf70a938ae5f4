"""The only place in stepsize allowed to touch a private name of Optuna or Ray.

Each module adapts one library, names the versions it was checked against, falls back to the
library's stock behaviour when those do not match, and has a contract test under
``tests/unit/compat/`` that fails loudly when the library changes under it.
"""
