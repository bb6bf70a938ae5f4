"""Search spaces for stepsize: YAML presets and their translation into Optuna distributions.

Names load on first use: listing or showing the presets (``stepsize presets``) imports no Optuna."""

from orchestrator._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "orchestrator.errors": ("SpaceError",),
    "search_spaces.presets": ("DEFAULT_PRESET", "available_presets", "load_preset", "preset_mapping"),
    "search_spaces.space": ("Param", "SearchSpace"),
})
