"""Explicit model registry: ``@register`` a builder, ``list_models()``, ``build(name, cfg)``.

No discovery by file or class name: a model exists when its module registers it, and
``ganmodels.models`` imports every built-in model module by name. A builder returns an instance
of its family (``ganmodels.families``); the registration says which family that is and which
data kinds the model trains on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from ganmodels.data.kinds import DataKind
from ganmodels.families.base import GANFamily


@dataclass(frozen=True)
class ModelSpec:
    name: str
    config_cls: type
    builder: Callable[[Any], GANFamily]
    family: type[GANFamily]
    accepts: tuple[DataKind, ...]  # data kinds the model trains on
    description: str = ""
    # Named training recipes: {"stabilised": {"model": {...}, "train": {...}}, "baseline": {...}}.
    # "stabilised" is the documented default; "baseline" the unstabilised reference for benchmarks.
    recipes: dict = dataclasses.field(default_factory=dict)


_MODELS: dict[str, ModelSpec] = {}


def register(name: str, *, config: type, family: type[GANFamily], accepts: tuple[DataKind, ...],
             description: str = "", recipes: dict | None = None):
    """Decorator registering ``builder(cfg) -> family instance`` under ``name``; duplicates are refused."""

    def decorator(builder: Callable[[Any], GANFamily]):
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered (by {_MODELS[name].builder.__module__})")
        if not dataclasses.is_dataclass(config):
            raise TypeError(f"config for model {name!r} must be a dataclass, got {config!r}")
        if not (isinstance(family, type) and issubclass(family, GANFamily)):
            raise TypeError(f"family for model {name!r} must be a GANFamily subclass, got {family!r}")
        kinds = tuple(DataKind.parse(k) for k in accepts)
        if not kinds:
            raise ValueError(f"model {name!r} must accept at least one data kind")
        _MODELS[name] = ModelSpec(name, config, builder, family, kinds, description, dict(recipes or {}))
        return builder

    return decorator


def _ensure_builtin_models() -> None:
    import ganmodels.models  # noqa: F401  (registers the built-in models)


def list_models() -> list[str]:
    _ensure_builtin_models()
    return sorted(_MODELS)


def get_spec(name: str) -> ModelSpec:
    _ensure_builtin_models()
    try:
        return _MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(sorted(_MODELS))}") from None


def make_config(name: str, cfg: Any = None, **overrides: Any):
    """A model config from None (defaults), a dict, or a config instance, with ``overrides`` applied.

    Unknown fields raise ``ValueError`` naming the field and the valid ones.
    """
    spec = get_spec(name)
    if cfg is None:
        values: dict[str, Any] = {}
    elif isinstance(cfg, spec.config_cls):
        values = dataclasses.asdict(cfg)
    elif isinstance(cfg, dict):
        values = dict(cfg)
    else:
        raise TypeError(f"config for {name!r} must be {spec.config_cls.__name__}, a dict or None; got {type(cfg).__name__}")
    values.update(overrides)
    valid = {f.name for f in dataclasses.fields(spec.config_cls)}
    unknown = sorted(set(values) - valid)
    if unknown:
        raise ValueError(f"unknown field(s) {unknown} for model {name!r}; valid fields: {sorted(valid)}")
    return spec.config_cls(**values)


def build(name: str, cfg: Any = None, **overrides: Any) -> GANFamily:
    """Build the registered model ``name`` from ``cfg``: an instance of its family holding its named networks."""
    spec = get_spec(name)
    model = spec.builder(make_config(name, cfg, **overrides))
    if not isinstance(model, spec.family):
        raise TypeError(f"builder of model {name!r} returned {type(model).__name__}, not its family "
                        f"{spec.family.__name__}")
    model.accepts = spec.accepts
    return model


def models_for(kind: DataKind) -> list[str]:
    """The registered models that train on data of ``kind``."""
    return [name for name in list_models() if kind.satisfies(get_spec(name).accepts)]


def get_recipe(name: str, recipe: str = "stabilised") -> dict:
    """A copy of model ``name``'s named recipe: ``{"model": {...}, "train": {...}}`` overrides."""
    import copy

    spec = get_spec(name)
    if recipe not in spec.recipes:
        raise KeyError(f"model {name!r} has no recipe {recipe!r}; available: {sorted(spec.recipes)}")
    return copy.deepcopy(spec.recipes[recipe])
