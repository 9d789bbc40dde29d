"""The run configuration: read once at the edge (params.yaml + preset + ``--set`` overrides), typed, saved.

Precedence, lowest first: dataclass defaults < the model's recipe (``run.recipe``) < ``params.yaml``
sections < ``kinds.<data kind>`` (labelled images take ``kinds.images`` first) < ``models.<model>``
< ``datasets.<data set>`` < ``datasets.<data set>.models.<model>`` < ``presets.<name>`` <
``--set SECTION.KEY=VALUE``.

``datasets.<name>`` holds what one registered data set needs beyond its kind (Fashion-MNIST's
classifier and gates are not the digits'); it applies to runs on that data set as it is, not to
pairs derived from it with ``data.task`` (those are paired images, ruled by ``kinds.paired-images``).
Its ``models.<model>`` sub-table holds what only one model needs on that data set (a gate on a
metric only that model produces, e.g. cgan's ``cond_accuracy``).

Everything that can be judged before work starts is judged here, so bad input fails in a second
with a ``ConfigError`` naming the field and the fix: the data set's kind against the kinds the
model accepts, every section's field types, and every gate against the metric registry (a gate
on a metric this run will not produce is an error, never a silent pass).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

import ganmodels
from ganmodels.data import DataConfig, DataError, DataKind, dataset_kind, mixture_spec, resolve_data_config
from ganmodels.data.config import PATH_FORMS
from ganmodels.metrics.registry import get_metric, primary_metric, produced_metrics
from ganmodels.train import TrainConfig
from ganmodels.train.monitor import MonitorConfig
from pipelines.errors import ConfigError

__all__ = ["ConfigError", "EvalConfig", "ExportConfig", "GateSpec", "RunConfig", "TrackingConfig", "ValidationConfig",
           "load_run_config", "load_tracking_config", "model_config_for", "parse_overrides", "run_config_from_dict"]

# The model trained when run.model is "auto".
DEFAULT_MODEL_BY_KIND = {DataKind.IMAGES: "dcgan", DataKind.LABELLED_IMAGES: "dcgan", DataKind.POINTS: "mlp2d",
                         DataKind.PAIRED_IMAGES: "pix2pix", DataKind.UNPAIRED_IMAGES: "cyclegan"}


@dataclass(frozen=True)
class EvalConfig:
    n_samples: int = 2000
    # "auto" resolves, when the config is read, to the produced metric of lowest primary rank in the
    # metric registry: FID when Inception weights are on this machine, else the domain FD (labelled
    # images); reverse_kl for 2D mixtures. The resolved name is what the saved config holds.
    primary_metric: str = "auto"
    inception_weights: str | None = None
    classifier_epochs: int = 8
    # The domain metrics are only as trustworthy as the classifier behind them: below this held-out
    # accuracy the evaluation fails instead of reporting numbers nobody should believe.
    min_classifier_accuracy: float = 0.9
    seed: int = 1234
    cas_epochs: int = 8  # epochs of the classifier trained on generated samples (conditional models' CAS)


@dataclass(frozen=True)
class GateSpec:
    """One gate: the metric must be >= ``min`` and/or <= ``max`` (``params.yaml``: ``metric: {min: x}``)."""

    min: float | None = None
    max: float | None = None

    def __post_init__(self):
        if self.min is None and self.max is None:
            raise ValueError("a gate needs min or max (or null for no gate)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")


@dataclass(frozen=True)
class ValidationConfig:
    """Thresholds for the expectation suites; the pipeline reads them from ``params.yaml``.

    Checks without a threshold here are strict (every row must pass): NaN and inf counts, the
    declared value range, the channel set, the minimum image size and label validity. A single bad
    sample of those kinds points at a broken reader or a corrupt file, not at noise.

    min_samples: the table must have at least this many rows (images or points).
    min_domain_samples: two-domain sources: each domain must have at least this many images (and be
      neither one image repeated nor mostly blank).
    min_image_size: smallest height and width accepted, in pixels.
    allowed_channels: channel counts accepted, alpha included; (H, W) arrays count as 1 channel.
    max_blank_share: share of constant images (std == 0) tolerated, as GX ``mostly = 1 - share``.
      A few empty scans are harmless; many mean a reader that fills with zeros.
    max_duplicate_share: share of byte-identical repeats tolerated (the first copy is not counted).
    min_class_ratio: smallest class count / largest class count, over classes that are present.
      Every class must also be present (count >= 1); that is a separate expectation.
    points_abs_bound: 2D points must satisfy |x|, |y| <= this bound.
    example_ids: how many offending sample ids each failure names.
    """

    min_samples: int = 100
    min_domain_samples: int = 50
    min_image_size: int = 8
    # grey, grey+alpha, RGB, RGBA: preparing drops alpha (ganmodels.data.imaging.drop_alpha), so all four train.
    allowed_channels: tuple[int, ...] = (1, 2, 3, 4)
    max_blank_share: float = 0.01
    max_duplicate_share: float = 0.01
    min_class_ratio: float = 0.2
    points_abs_bound: float = 1e3
    example_ids: int = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_channels", tuple(int(c) for c in self.allowed_channels))
        for name in ("max_blank_share", "max_duplicate_share", "min_class_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"ValidationConfig.{name} must lie in [0, 1], got {value!r}")
        for name in ("min_samples", "min_domain_samples", "min_image_size", "example_ids"):
            if getattr(self, name) < 0:
                raise ValueError(f"ValidationConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.points_abs_bound <= 0:
            raise ValueError(f"ValidationConfig.points_abs_bound must be > 0, got {self.points_abs_bound!r}")
        if not self.allowed_channels:
            raise ValueError("ValidationConfig.allowed_channels must not be empty")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> "ValidationConfig":
        """Build from a ``params.yaml`` section; unknown keys are an error, not silently ignored."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown validation setting(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["allowed_channels"] = list(self.allowed_channels)
        return d


@dataclass(frozen=True)
class ExportConfig:
    opset: int = 18
    atol: float = 1e-4


@dataclass(frozen=True)
class TrackingConfig:
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<project>/mlflow.db
    experiment: str = "ganpipe"
    artifact_root: str | None = None  # None: the tracking server chooses; <project>/mlartifacts for a local store
    sample_every: int = 0  # log a sample grid every N steps; 0: four times per run
    # Reaching the store before training: tries after the first, waiting retry_backoff * 2**i seconds
    # between them (4 and 1.0: about 15 s in all before exit 8); MLflow's own HTTP retries are off then.
    connect_retries: int = 4
    retry_backoff: float = 1.0


@dataclass(frozen=True)
class RunConfig:
    model: str
    dataset: str
    preset: str
    seed: int
    recipe: str
    data: DataConfig
    data_kind: DataKind
    model_overrides: dict
    train: TrainConfig
    eval: EvalConfig = field(default_factory=EvalConfig)
    gates: dict[str, GateSpec] = field(default_factory=dict)  # metric -> bounds; only the gates in force
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)  # every: 0 switches it off
    export: ExportConfig = field(default_factory=ExportConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    threads: int = 0  # torch intra-op threads for training and evaluation; 0 = auto (torch's default)
    nproc: int = 1  # data-parallel training processes (torchrun); the global batch stays train.batch_size

    @property
    def primary_metric(self) -> str:
        return self.eval.primary_metric

    @property
    def conditional(self) -> bool:
        """Whether the model is class-conditional (its config has classes)."""
        return int(self.model_overrides.get("c_dim", _config_default(self.model, "c_dim", 0)) or 0) > 0

    @property
    def data_name(self) -> str:
        """The data set as trained: its registered name, or the file stem of an image folder or array;
        a derived task adds itself (``fashion-mnist-sr4``)."""
        source = self.data.name
        if source in ("folder", "npy", "paired-folder", "aligned", "npz-pairs", "unpaired-folder", "two-domains") \
                and self.data.root:
            source = Path(self.data.root).stem or source
        task = {"sr": f"-sr{self.data.scale}", "edges": "-edges"}.get(self.data.task, "")
        return f"{source}{task}"

    @property
    def registered_name(self) -> str:
        """Registry name ``<model>-<data name>`` (``dcgan-digits``, ``pix2pix-fashion-mnist-sr4``)."""
        return f"{self.model}-{self.data_name}"

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
        raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(e)}") from e
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (run, data, train, ...)")
    return values


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's multi-line message as one line: the problem and where (line and column, 1-based)."""
    problem = getattr(error, "problem", None) or str(error).strip().splitlines()[0]
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context = getattr(error, "context", None)
    return f"{problem}{where}" + (f" ({context})" if context else "")


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
            raise ConfigError(f"--set {item!r}: cannot parse the value ({_yaml_problem(e)})") from e
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
OVERLAYS = ("kinds", "models", "datasets", "presets")  # sections of sections, applied in this order
RUN_KEYS = ("model", "dataset", "preset", "recipe", "seed", "threads", "nproc")


def load_run_config(params_path: str | os.PathLike | None = "params.yaml", *, model: str | None = None,
                    dataset: str | None = None, preset: str | None = None,
                    overrides: list[str] | tuple[str, ...] = (), evaluation: bool = True) -> RunConfig:
    """Resolve the run configuration; every error is a ``ConfigError`` naming the field and the fix.

    evaluation: judge the gates and the primary metric against what the run will produce. Commands
    that train nothing (``ganpipe validate``) pass False: their data need not be one a model can
    be scored on; the gates are then empty and the primary metric left as written.
    """
    params = read_params(params_path)
    unknown = sorted(set(params) - set(SECTIONS) - set(OVERLAYS))
    if unknown:
        raise ConfigError(f"{params_path}: unknown section(s) {unknown}; known: {list(SECTIONS) + list(OVERLAYS)}")
    cli = parse_overrides(overrides)
    unknown = sorted(set(cli) - set(SECTIONS))
    if unknown:  # a typo (--set trian.steps=5) must not be ignored silently
        raise ConfigError(f"--set: unknown section(s) {unknown}; known: {list(SECTIONS)}")
    for source, section in ((str(params_path), params.get("run")), ("--set", cli.get("run"))):
        bad = sorted(set(section or {}) - set(RUN_KEYS))
        if bad:
            raise ConfigError(f"{source}: unknown run field(s) {['run.' + k for k in bad]}; known: {list(RUN_KEYS)}")
    arguments = {k: v for k, v in {"model": model, "dataset": dataset, "preset": preset}.items() if v is not None}
    first = {**(params.get("run") or {}), **(cli.get("run") or {}), **arguments}
    dataset_spec = str(first.get("dataset", "digits"))
    preset_name = str(first.get("preset", "default"))
    presets = _overlay_table(params, "presets")
    # The task (data.task: "sr", "edges") makes a single-domain set paired, so it decides the kind and is
    # read before the kind's overlays; kinds.* and models.* may not set it.
    task_layers = [params.get("data") or {}, _overlay(presets.get(preset_name), "presets").get("data") or {},
                   cli.get("data") or {}]
    task = str({k: v for layer in task_layers for k, v in layer.items()}.get("task", "") or "")
    source = _declared_source(dataset_spec, task)
    kind = _declared_kind(source)

    layers = [{s: params.get(s, {}) or {} for s in SECTIONS}]
    kinds = _overlay_table(params, "kinds")
    bad_kinds = sorted(set(kinds) - {k.value for k in DataKind})
    if bad_kinds:
        raise ConfigError(f"{params_path}: kinds.{bad_kinds[0]} is not a data kind; kinds: "
                          f"{', '.join(k.value for k in DataKind)}")
    layers += [_overlay(kinds.get(k.value), f"kinds.{k.value}") for k in kind.lineage()]
    if preset_name not in presets and preset_name != "default":
        raise ConfigError(f"unknown preset {preset_name!r}; presets in {params_path}: {sorted(presets) or ['default']}")
    preset_layer = _overlay(presets.get(preset_name), f"presets.{preset_name}")

    dataset_layer, dataset_models = _dataset_overlay(params, source, task, str(params_path))

    # The model picks its models.<name> overlay, so it is read from every run section first.
    run_sections = [layer.get("run") or {} for layer in (*layers, dataset_layer, preset_layer)]
    run_sections += [cli.get("run") or {}, arguments]
    model_name = str({k: v for section in run_sections for k, v in section.items()}.get("model", "auto"))
    if model_name == "auto":
        model_name = DEFAULT_MODEL_BY_KIND.get(kind, "")
    spec = _model_spec(model_name, kind, dataset_spec)
    models = _overlay_table(params, "models")
    unknown_models = sorted(set(models) - set(ganmodels.list_models()))
    if unknown_models:
        raise ConfigError(f"{params_path}: models.{unknown_models[0]} is not a registered model; models: "
                          f"{', '.join(ganmodels.list_models())}")
    layers += [_overlay(models.get(model_name), f"models.{model_name}"), dataset_layer,
               _overlay(dataset_models.get(model_name), f"datasets.{source.name}.models.{model_name}"), preset_layer,
               cli]
    merged: dict = {}
    for layer in layers:
        merged = deep_merge(merged, layer)
    run = {**merged.get("run", {}), **arguments}

    recipe_name = str(run.get("recipe", "stabilised"))
    try:
        recipe = ganmodels.get_recipe(model_name, recipe_name) if spec.recipes else {"model": {}, "train": {}}
    except KeyError as e:
        raise ConfigError(f"run.recipe: {e.args[0]}") from None
    seed = _typed(int, run.get("seed", 0), "run.seed")
    threads = _threads(run.get("threads", "auto"))
    nproc = _nproc(run.get("nproc", 1), "run.nproc")

    data_cfg = _build("data", lambda d: resolve_data_config(dataset_spec, **d), _section(merged, "data"))
    model_overrides = _typed_fields(spec.config_cls, {**recipe.get("model", {}), **_section(merged, "model")}, "model")
    model_cfg = _build("model", lambda m: ganmodels.registry.make_config(
        model_name, _with_shape_defaults(model_name, m, data_cfg)), model_overrides)
    train_values = _typed_fields(TrainConfig, {**recipe.get("train", {}), **_section(merged, "train"), "seed": seed},
                                 "train")
    train_cfg = _build("train", TrainConfig.from_dict, train_values)
    eval_cfg = _build_typed("eval", EvalConfig, merged)
    conditional = int(getattr(model_cfg, "c_dim", 0) or 0) > 0
    produced = produced_metrics(kind, conditional=conditional, available=_references(data_cfg, eval_cfg, kind))
    what = f"{kind.value} data, model {model_name!r}"
    gates: dict[str, GateSpec] = {}
    if evaluation:
        gates = _gates(_section(merged, "gates"), produced, what)
        eval_cfg = dataclasses.replace(eval_cfg, primary_metric=_primary(eval_cfg.primary_metric, produced, what))
    return RunConfig(
        model=model_name, dataset=dataset_spec, preset=preset_name, seed=seed, recipe=recipe_name,
        data=data_cfg, data_kind=kind, model_overrides=model_overrides, train=train_cfg, eval=eval_cfg, gates=gates,
        validation=_build("validation", ValidationConfig.from_dict,
                          _typed_fields(ValidationConfig, _section(merged, "validation"), "validation")),
        monitor=_build_typed("monitor", MonitorConfig, merged),
        export=_build_typed("export", ExportConfig, merged),
        tracking=_build_typed("tracking", TrackingConfig, merged), threads=threads, nproc=nproc,
    )


def _threads(value: Any) -> int:
    """``run.threads``: a positive count, or ``auto`` (0 internally: torch's default, one per core)."""
    if value == "auto":
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"run.threads={value!r} must be a positive integer or 'auto'")
    return value


def _nproc(value: Any, field_name: str) -> int:
    """Training processes: a positive integer (1: no torchrun)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{field_name}={value!r} must be a positive integer (the number of training processes)")
    return value


def load_tracking_config(params_path: str | os.PathLike | None = "params.yaml") -> TrackingConfig:
    """The ``tracking`` section of ``params.yaml`` alone, for commands that only read the store
    (``ganpipe compare``, ``ganpipe ui``); a missing params file means the defaults."""
    params = read_params(params_path) if params_path is not None and Path(params_path).is_file() else {}
    return _build_typed("tracking", TrackingConfig, params)


def run_config_from_dict(values: dict) -> RunConfig:
    """Rebuild a ``RunConfig`` saved with ``to_dict`` (stages read the resolved config back)."""
    v = copy.deepcopy(values)
    return RunConfig(
        model=v["model"], dataset=v["dataset"], preset=v["preset"], seed=v["seed"], recipe=v["recipe"],
        data=DataConfig(**v["data"]), data_kind=DataKind.parse(v["data_kind"]), model_overrides=v["model_overrides"],
        train=TrainConfig.from_dict(v["train"]), eval=EvalConfig(**v["eval"]),
        gates={metric: GateSpec(**bounds) for metric, bounds in v["gates"].items()},
        validation=ValidationConfig.from_dict(v["validation"]),
        monitor=MonitorConfig(**v["monitor"]), export=ExportConfig(**v["export"]),
        tracking=TrackingConfig(**v["tracking"]), threads=v.get("threads", 0), nproc=v.get("nproc", 1),
    )


def model_config_for(cfg: RunConfig, sample_shape: tuple[int, ...], num_classes: int = 0,
                     input_shape: tuple[int, ...] | None = None) -> Any:
    """The model config with the data's shapes unless set explicitly: resolution and channels of the
    samples (targets), the scale of paired inputs, and the number of classes of conditional models."""
    values = dict(cfg.model_overrides)
    fields_ = {f.name for f in dataclasses.fields(ganmodels.get_spec(cfg.model).config_cls)}
    if len(sample_shape) == 3:
        if "channels" in fields_:
            values.setdefault("channels", sample_shape[0])
        if "resolution" in fields_:
            values.setdefault("resolution", sample_shape[-1])
    if input_shape is not None and "scale" in fields_:
        values.setdefault("scale", sample_shape[-1] // input_shape[-1])
    if cfg.conditional and num_classes:
        values.setdefault("c_dim", num_classes)
    return ganmodels.registry.make_config(cfg.model, values)


def _with_shape_defaults(model_name: str, values: dict, data_cfg: DataConfig) -> dict:
    """For checking the model config early: take the resolution (and channels, when fixed) from the data."""
    fields_ = {f.name for f in dataclasses.fields(ganmodels.get_spec(model_name).config_cls)}
    out = dict(values)
    if "resolution" in fields_ and data_cfg.resolution is not None:  # None: the source's size, known once read
        out.setdefault("resolution", data_cfg.resolution)
    if "channels" in fields_ and data_cfg.channels is not None:
        out.setdefault("channels", data_cfg.channels)
    return out


def _config_default(model: str, name: str, fallback: Any) -> Any:
    for f in dataclasses.fields(ganmodels.get_spec(model).config_cls):
        if f.name == name:
            return f.default
    return fallback


def _declared_source(dataset_spec: str, task: str) -> DataConfig:
    """The data set the spec names (a registered name, a folder or an array path), with the task asked for."""
    from ganmodels.data import list_datasets
    from ganmodels.data.config import source_for

    source = source_for(dataset_spec)
    if source is None:
        raise ConfigError(f"--dataset / run.dataset: {dataset_spec!r} is neither a registered name nor an accepted "
                          f"path. Registered names: {', '.join(list_datasets())}. Paths: {PATH_FORMS}.")
    return DataConfig(**source, task=task)


def _declared_kind(source: DataConfig) -> DataKind:
    """The kind the data set declares, judged from its path or name alone (nothing is read)."""
    try:
        return dataset_kind(source)
    except DataError as e:
        raise ConfigError(f"--dataset / run.dataset: {e}") from None


def _model_spec(model_name: str, kind: DataKind, dataset_spec: str):
    fitting = ganmodels.registry.models_for(kind)
    try:
        spec = ganmodels.get_spec(model_name)
    except KeyError as e:
        raise ConfigError(f"--model / run.model: {e.args[0]}") from None
    if not kind.satisfies(spec.accepts):
        from ganmodels.data.kinds import describe

        choices = ", ".join(f"--model {m}" for m in fitting) or "(no registered model)"
        raise ConfigError(f"model {model_name!r} trains on {describe(spec.accepts)} data but data set "
                          f"{dataset_spec!r} holds {kind.value}; for {kind.value} use {choices}")
    return spec


def _dataset_overlay(params: dict, source: DataConfig, task: str, where: str) -> tuple[dict, dict]:
    """(``datasets.<name>`` without its ``models`` table, that table) for the run's data set; empty for a
    derived task, whose paired data ``kinds.paired-images`` rules."""
    from ganmodels.data import list_datasets

    datasets = _overlay_table(params, "datasets")
    unknown = sorted(set(datasets) - set(list_datasets()))
    if unknown:
        raise ConfigError(f"{where}: datasets.{unknown[0]} is not a registered data set; data sets: "
                          f"{', '.join(list_datasets())}")
    checked = {}
    for name, values in datasets.items():
        values = dict(values or {}) if isinstance(values, dict) or values is None else values
        if not isinstance(values, dict):
            raise ConfigError(f"datasets.{name} must be a mapping of sections, got {type(values).__name__}")
        models = _overlay_table(values, "models") if "models" in values else {}
        unknown_models = sorted(set(models) - set(ganmodels.list_models()))
        if unknown_models:
            raise ConfigError(f"{where}: datasets.{name}.models.{unknown_models[0]} is not a registered model; "
                              f"models: {', '.join(ganmodels.list_models())}")
        for model, section in models.items():
            _overlay(section, f"datasets.{name}.models.{model}")
        checked[name] = (_overlay({k: v for k, v in values.items() if k != "models"}, f"datasets.{name}"), models)
    if task:
        return {}, {}
    return checked.get(source.name, ({}, {}))


def _overlay_table(params: dict, name: str) -> dict:
    table = params.get(name) or {}
    if not isinstance(table, dict):
        raise ConfigError(f"section {name!r} must be a mapping of names to sections, got {type(table).__name__}")
    return table


def _overlay(values: Any, where: str) -> dict:
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping of sections, got {type(values).__name__}")
    unknown = sorted(set(values) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {unknown}; known: {list(SECTIONS)}")
    return values


def _references(data_cfg: DataConfig, eval_cfg: EvalConfig, kind: DataKind) -> set[str]:
    """What this run's evaluation can measure against: FID weights on this machine, a known 2D mixture,
    class labels (a domain classifier)."""
    from ganmodels.data import dataset_has_truth, dataset_labelled
    from ganmodels.metrics import InceptionWeightsNotFound, find_inception_weights

    found = {"labels"} if dataset_labelled(data_cfg) else set()
    if dataset_has_truth(data_cfg):
        found.add("truth")
    try:
        find_inception_weights(eval_cfg.inception_weights)
        found.add("inception")
    except InceptionWeightsNotFound as e:
        if eval_cfg.inception_weights is not None:  # asked for explicitly: a wrong path is an error
            raise ConfigError(f"eval.inception_weights: {e}") from None
    try:
        mixture_spec(data_cfg.name)
        found.add("modes")
    except DataError:
        pass
    return found


# Gate fields of ganpipe 0.1 params files, and what replaced them.
_OLD_GATES = {"max_primary": "domain_fd: {max: X} (or fid / reverse_kl)", "min_class_coverage": "class_coverage: "
              "{min: X}", "max_class_kl": "class_kl: {max: X}", "min_precision": "precision: {min: X}",
              "min_recall": "recall: {min: X}", "min_modes_fraction": "modes_fraction: {min: X}",
              "min_high_quality": "high_quality_fraction: {min: X}", "max_reverse_kl": "reverse_kl: {max: X}"}


def _gates(section: dict, produced: list[str], what: str) -> dict[str, GateSpec]:
    """``{metric: {min: x} | {max: x} | null}`` -> the gates in force, each checked against the registry."""
    gates: dict[str, GateSpec] = {}
    for metric, bounds in section.items():
        if bounds is None:  # null switches a gate off (presets, --set gates.recall=null)
            continue
        name = f"gates.{metric}"
        if metric in _OLD_GATES:
            raise ConfigError(f"{name}: gates are now written per metric; write {_OLD_GATES[metric]}")
        try:
            spec = get_metric(metric)
        except KeyError as e:
            raise ConfigError(f"{name}: {e.args[0]}") from None
        if spec.direction == "none":
            raise ConfigError(f"{name}: {metric!r} ({spec.description}) is not a quality score and cannot be gated")
        if metric not in produced:
            raise ConfigError(f"{name}: this run ({what}) does not produce {metric!r}, so the gate could never be "
                              f"judged; it produces {', '.join(produced) or 'nothing'}. Remove the gate or set it "
                              "to null")
        if not isinstance(bounds, dict) or not bounds or set(bounds) - {"min", "max"}:
            raise ConfigError(f"{name}={bounds!r} must be {{min: X}}, {{max: X}}, {{min: X, max: Y}} or null")
        values = _typed_fields(GateSpec, bounds, name)
        gates[metric] = _build(name, lambda d: GateSpec(**d), values)
    return gates


def _primary(requested: str, produced: list[str], what: str) -> str:
    if requested == "auto":
        chosen = primary_metric(produced)
        if chosen is None:
            raise ConfigError(f"eval.primary_metric=auto: this run ({what}) produces no metric that can rank "
                              "models (fid, domain_fd or reverse_kl); set eval.primary_metric to one of "
                              f"{', '.join(produced) or '(none)'}")
        return chosen
    if requested not in produced:
        raise ConfigError(f"eval.primary_metric={requested!r}: this run ({what}) does not produce it; it produces "
                          f"{', '.join(produced) or 'nothing'}")
    if get_metric(requested).direction == "none":
        raise ConfigError(f"eval.primary_metric={requested!r} has no better direction; choose a quality score")
    return requested


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
