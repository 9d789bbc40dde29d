"""The run configuration: read once at the edge (params.yaml + preset + ``--set`` overrides), typed, saved.

Precedence, lowest first: dataclass defaults < the model's ``stabilised`` recipe < ``params.yaml``
sections < ``params.yaml`` ``kinds.<image|points>`` < ``presets.<name>`` < ``--set key=value``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import ganmodels
from ganmodels.data import DataConfig, DataError, get_dataset, resolve_data_config
from ganmodels.train import TrainConfig
from ganmodels.train.monitor import MonitorConfig


class ConfigError(ValueError):
    """Bad run configuration; the message names the file or field and the fix (exit code 2)."""


DEFAULT_MODEL_BY_KIND = {"image": "dcgan", "points": "mlp2d"}
POINT_DATASETS = ("ring8", "grid25")


@dataclass(frozen=True)
class EvalConfig:
    n_samples: int = 2000
    # "auto": FID when Inception weights are on this machine, else the domain FD (images);
    # reverse_kl for 2D data. Lower is better for all three.
    primary_metric: str = "auto"
    inception_weights: str | None = None
    classifier_epochs: int = 8
    # The domain metrics are only as trustworthy as the classifier behind them: below this held-out
    # accuracy the evaluation fails instead of reporting numbers nobody should believe.
    min_classifier_accuracy: float = 0.9
    seed: int = 1234


@dataclass(frozen=True)
class GateConfig:
    """Thresholds a model must meet to be registered. ``None`` switches a gate off."""

    max_primary: float | None = None  # on the primary metric (domain_fd / fid / reverse_kl)
    min_class_coverage: float | None = 1.0  # share of classes generated (labelled images)
    max_class_kl: float | None = 0.05  # KL between generated and real class histograms
    min_precision: float | None = 0.5
    min_recall: float | None = 0.3
    min_modes_fraction: float | None = 1.0  # 2D data: modes captured / modes
    min_high_quality: float | None = 0.9  # 2D data: share of samples within 3 std of a mode
    max_reverse_kl: float | None = 0.05  # 2D data


@dataclass(frozen=True)
class ExportConfig:
    opset: int = 18
    atol: float = 1e-4


@dataclass(frozen=True)
class TrackingConfig:
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<project>/mlflow.db
    experiment: str = "ganpipe"
    artifact_root: str | None = None  # None: <project>/mlartifacts
    sample_every: int = 0  # log a sample grid every N steps; 0: four times per run


@dataclass(frozen=True)
class RunConfig:
    model: str
    dataset: str
    preset: str
    seed: int
    recipe: str
    data: DataConfig
    model_overrides: dict
    train: TrainConfig
    eval: EvalConfig = field(default_factory=EvalConfig)
    gates: GateConfig = field(default_factory=GateConfig)
    validation: dict = field(default_factory=dict)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)  # every: 0 switches it off
    export: ExportConfig = field(default_factory=ExportConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    @property
    def data_kind(self) -> str:
        return "points" if self.data.name in POINT_DATASETS else "image"

    @property
    def registered_name(self) -> str:
        """Registry name ``<model>-<dataset>``; image folders and arrays use their file stem."""
        source = self.data.name
        if source in ("folder", "npy") and self.data.root:
            source = Path(self.data.root).stem or source
        return f"{self.model}-{source}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)


# -- reading -------------------------------------------------------------------------------


def read_params(path: str | os.PathLike | None) -> dict:
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file not found: {path}. Pass --params PATH or run from the project root.")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (run, data, train, ...)")
    return values


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict:
    """``["train.steps=100", "gates.min_recall=null"]`` -> nested dict; values parsed as YAML scalars."""
    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip() or "." not in key:
            raise ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. --set train.steps=500")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: cannot parse the value ({e})") from e
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def deep_merge(base: dict, top: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


SECTIONS = ("run", "data", "model", "train", "eval", "gates", "validation", "monitor", "export", "tracking")
RUN_KEYS = ("model", "dataset", "preset", "recipe", "seed")


def load_run_config(params_path: str | os.PathLike | None = "params.yaml", *, model: str | None = None,
                    dataset: str | None = None, preset: str | None = None,
                    overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Resolve the run configuration; every error is a ``ConfigError`` naming the field and the fix."""
    params = read_params(params_path)
    unknown = sorted(set(params) - set(SECTIONS) - {"presets", "kinds"})
    if unknown:
        raise ConfigError(f"{params_path}: unknown section(s) {unknown}; known: {list(SECTIONS) + ['presets', 'kinds']}")
    cli = parse_overrides(overrides)
    unknown = sorted(set(cli) - set(SECTIONS))
    if unknown:  # a typo (--set trian.steps=5) must not be ignored silently
        raise ConfigError(f"--set: unknown section(s) {unknown}; known: {list(SECTIONS)}")
    for source, section in ((str(params_path), params.get("run")), ("--set", cli.get("run"))):
        bad = sorted(set(section or {}) - set(RUN_KEYS))
        if bad:
            raise ConfigError(f"{source}: unknown run field(s) {['run.' + k for k in bad]}; known: {list(RUN_KEYS)}")
    run = {**params.get("run", {}), **cli.get("run", {})}
    run.update({k: v for k, v in {"model": model, "dataset": dataset, "preset": preset}.items() if v is not None})
    dataset_spec = str(run.get("dataset", "digits"))
    preset_name = str(run.get("preset", "default"))

    kind = _data_kind(dataset_spec)
    merged = {s: params.get(s, {}) or {} for s in SECTIONS}
    merged = deep_merge(merged, (params.get("kinds") or {}).get(kind, {}) or {})
    presets = params.get("presets") or {}
    if preset_name not in presets and preset_name != "default":
        raise ConfigError(f"unknown preset {preset_name!r}; presets in {params_path}: {sorted(presets) or ['default']}")
    merged = deep_merge(merged, presets.get(preset_name) or {})
    merged = deep_merge(merged, cli)
    run = {**merged.get("run", {}), **run}

    model_name = str(run.get("model", "auto"))
    if model_name == "auto":
        model_name = DEFAULT_MODEL_BY_KIND[kind]
    try:
        spec = ganmodels.get_spec(model_name)
    except KeyError as e:
        raise ConfigError(f"--model / run.model: {e.args[0]}") from None
    if spec.data_kind != kind:
        raise ConfigError(f"model {model_name!r} trains on {spec.data_kind} data but data set {dataset_spec!r} is "
                          f"{kind} data; use --model {DEFAULT_MODEL_BY_KIND[kind]}")
    recipe_name = str(run.get("recipe", "stabilised"))
    try:
        recipe = ganmodels.get_recipe(model_name, recipe_name) if spec.recipes else {"model": {}, "train": {}}
    except KeyError as e:
        raise ConfigError(f"run.recipe: {e.args[0]}") from None
    seed = _typed(int, run.get("seed", 0), "run.seed")

    data_cfg = _build("data", lambda d: resolve_data_config(dataset_spec, **d), merged["data"])
    model_overrides = _typed_fields(spec.config_cls, {**recipe.get("model", {}), **_section(merged, "model")}, "model")
    _build("model", lambda m: ganmodels.registry.make_config(model_name, _with_shape_defaults(model_name, m, data_cfg)),
           model_overrides)
    train_values = _typed_fields(TrainConfig, {**recipe.get("train", {}), **_section(merged, "train"), "seed": seed},
                                 "train")
    train_cfg = _build("train", TrainConfig.from_dict, train_values)
    from pipelines.validation import ValidationConfig

    validation = _typed_fields(ValidationConfig, _section(merged, "validation"), "validation")
    _build("validation", ValidationConfig.from_dict, validation)
    return RunConfig(
        model=model_name, dataset=dataset_spec, preset=preset_name, seed=seed, recipe=recipe_name,
        data=data_cfg, model_overrides=model_overrides, train=train_cfg,
        eval=_build_typed("eval", EvalConfig, merged),
        gates=_build_typed("gates", GateConfig, merged),
        validation=validation,
        monitor=_build_typed("monitor", MonitorConfig, merged),
        export=_build_typed("export", ExportConfig, merged),
        tracking=_build_typed("tracking", TrackingConfig, merged),
    )


def run_config_from_dict(values: dict) -> RunConfig:
    """Rebuild a ``RunConfig`` saved with ``to_dict`` (stages read the resolved config back)."""
    v = copy.deepcopy(values)
    return RunConfig(
        model=v["model"], dataset=v["dataset"], preset=v["preset"], seed=v["seed"], recipe=v["recipe"],
        data=DataConfig(**v["data"]), model_overrides=v["model_overrides"], train=TrainConfig.from_dict(v["train"]),
        eval=EvalConfig(**v["eval"]), gates=GateConfig(**v["gates"]), validation=v["validation"],
        monitor=MonitorConfig(**v["monitor"]), export=ExportConfig(**v["export"]),
        tracking=TrackingConfig(**v["tracking"]),
    )


def model_config_for(cfg: RunConfig, sample_shape: tuple[int, ...]) -> Any:
    """The model config with resolution/channels taken from the prepared data unless set explicitly."""
    values = dict(cfg.model_overrides)
    fields = {f.name for f in dataclasses.fields(ganmodels.get_spec(cfg.model).config_cls)}
    if len(sample_shape) == 3:
        if "channels" in fields:
            values.setdefault("channels", sample_shape[0])
        if "resolution" in fields:
            values.setdefault("resolution", sample_shape[-1])
    return ganmodels.registry.make_config(cfg.model, values)


def _with_shape_defaults(model_name: str, values: dict, data_cfg: DataConfig) -> dict:
    """For checking the model config early: take the resolution (and channels, when fixed) from the data."""
    fields = {f.name for f in dataclasses.fields(ganmodels.get_spec(model_name).config_cls)}
    out = dict(values)
    if "resolution" in fields:
        out.setdefault("resolution", data_cfg.resolution)
    if "channels" in fields and data_cfg.channels is not None:
        out.setdefault("channels", data_cfg.channels)
    return out


def _data_kind(dataset_spec: str) -> str:
    if dataset_spec in POINT_DATASETS:
        return "points"
    try:
        get_dataset(dataset_spec)
    except DataError:
        pass  # a path; resolve_data_config will judge it
    return "image"


def _typed(kind: type, value: Any, name: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{name}={value!r} must be {kind.__name__}")
    return value


def _section(merged: dict, section: str) -> dict:
    values = merged.get(section)
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"section {section!r} must be a mapping, got {type(values).__name__}")
    return values


def _build_typed(section: str, cls: type, merged: dict):
    return _build(section, lambda d: cls(**d), _typed_fields(cls, _section(merged, section), section))


# YAML 1.1 (PyYAML) reads ``1e-4`` and ``1e6`` as strings: it needs a dot (``1.0e-4``). Such a string
# given for a float field is read as the float the user meant.
_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _typed_fields(cls: type, values: dict, section: str) -> dict:
    """Check ``values`` against the field types of dataclass ``cls``; a mismatch is a ``ConfigError``
    naming ``section.field``. Unknown fields are left for the factory, which lists the valid ones."""
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):  # annotations this check cannot resolve: the factory judges them
        return values
    return {key: _typed_value(hints[key], value, f"{section}.{key}") if key in hints else value
            for key, value in values.items()}


def _typed_value(hint: Any, value: Any, name: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _typed_value(option, value, name)
            except ConfigError:
                pass
        raise ConfigError(f"{name}={value!r} must be {' or '.join(_type_name(a) for a in args)}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{name}={value!r} must be one of {list(args)}")
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if isinstance(value, dict):
            return _typed_fields(hint, value, name)
        raise ConfigError(f"{name}={value!r} must be a mapping of {hint.__name__} fields")
    if hint is float and isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
        return float(value)
    checks = {bool: lambda v: isinstance(v, bool), str: lambda v: isinstance(v, str),
              int: lambda v: isinstance(v, int) and not isinstance(v, bool),
              float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)}
    if hint in checks and not checks[hint](value):
        raise ConfigError(f"{name}={value!r} must be {_type_name(hint)}")
    return value


def _type_name(hint: Any) -> str:
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def _build(section: str, factory, values: dict):
    if not isinstance(values, dict):
        raise ConfigError(f"section {section!r} must be a mapping, got {type(values).__name__}")
    try:
        return factory(values)
    except TypeError as e:
        raise ConfigError(f"section {section!r}: {e}") from None
    except (ValueError, KeyError) as e:
        msg = e.args[0] if e.args else str(e)
        raise ConfigError(f"section {section!r}: {msg}") from None
