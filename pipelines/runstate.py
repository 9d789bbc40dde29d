"""What a run needs to be resumed or recognised again: its record (``runs/<name>/run.json``) and its
fingerprint (data version, code version, params hash).

The record is written atomically when the run starts and again once its data version is known. It
holds how the run was asked for (model, data set, preset, ``--set`` overrides, params file), so
``ganpipe run --resume`` resolves the configuration again and refuses to continue when the result
differs from the run's own (params.yaml edited, another code version, other data).

The fingerprint is what makes a scheduled retraining mean something: a run whose data version, code
version and params hash equal those tagged on a registered version would train the same model again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipelines.errors import ConfigError

RECORD_FILE = "run.json"
# Sections and fields of the resolved config that do not change the trained model: where the run is
# tracked and how often it saves. Left out of the params hash and of the resume comparison.
# How a run is tracked, checkpointed, read back from the device or spread over processes does not
# change the model it trains (N data-parallel processes train one process's weights; sync_every only
# moves where the host reads the step's numbers), so a run may resume with other values.
NOT_IN_FINGERPRINT = {"tracking": None, "nproc": None,
                      "train": ("checkpoint_every", "checkpoint_seconds", "sync_every")}
FINISHED = ("registered", "rejected", "up_to_date")


class ResumeRefused(ConfigError):
    """The run cannot be continued as it was started (exit 2); the message says what changed and the fix."""


@dataclass
class RunRecord:
    run_name: str
    mlflow_run_id: str
    request: dict  # model, dataset, preset, overrides, params_path: as the run was asked for
    config: dict  # the resolved config
    code_version: str
    params_hash: str
    data_version: str | None = None
    started: float = 0.0
    extra: dict = field(default_factory=dict)

    def save(self, run_dir: Path) -> Path:
        from pipelines.stages import write_json

        return write_json(asdict(self), run_dir / RECORD_FILE)

    @classmethod
    def load(cls, run_dir: Path) -> "RunRecord":
        path = run_dir / RECORD_FILE
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as e:
            raise ResumeRefused(f"{path} is not a readable run record ({type(e).__name__}: {e}); start a new run "
                                "without --resume") from None


def result_config(config: dict) -> dict:
    """The resolved config without the fields that do not change the trained model."""
    out = json.loads(json.dumps(config, sort_keys=True, default=str))
    for section, keys in NOT_IN_FINGERPRINT.items():
        if keys is None:
            out.pop(section, None)
        else:
            for key in keys:
                (out.get(section) or {}).pop(key, None)
    return out


def params_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(result_config(config), sort_keys=True).encode()).hexdigest()[:16]


def code_version() -> str:
    """A hash of the source of ``ganmodels`` and ``pipelines`` (every .py and .yaml file, by relative path).

    Not the git commit: a commit that only edits the README or a test trains the same model, and an
    installed package has no git history. A dirty working tree counts as the code it holds.
    """
    import ganmodels
    import pipelines

    digest = hashlib.sha256()
    for package in (ganmodels, pipelines):
        root = Path(package.__file__).parent
        for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".yaml") and p.is_file()):
            digest.update(f"{package.__name__}/{path.relative_to(root).as_posix()}\0".encode())
            digest.update(path.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()[:16]


def find_run_dir(root: Path, which: str) -> Path:
    """``runs/<which>``, or the most recently started run for ``latest``; a clear error otherwise."""
    runs = root / "runs"
    if which == "latest":
        records = sorted((p.parent for p in runs.glob(f"*/{RECORD_FILE}")), key=_started)
        if not records:
            raise ResumeRefused(f"--resume latest: no run to resume under {runs} (no {RECORD_FILE}); start one "
                                "with `ganpipe run`")
        return records[-1]
    run_dir = runs / which
    if not (run_dir / RECORD_FILE).is_file():
        known = sorted(p.parent.name for p in runs.glob(f"*/{RECORD_FILE}"))[-5:]
        raise ResumeRefused(f"--resume {which}: no run record {run_dir / RECORD_FILE}; pass a run name from runs/ "
                            f"(recent: {', '.join(known) or 'none'}) or `latest`")
    return run_dir


def _started(run_dir: Path) -> float:
    try:
        return float(json.loads((run_dir / RECORD_FILE).read_text()).get("started", 0.0))
    except (OSError, ValueError):
        return os.path.getmtime(run_dir / RECORD_FILE)


def check_unchanged(record: RunRecord, config: dict, code: str) -> None:
    """Refuse (exit 2) to resume when the configuration resolved now or the code differs from the run's."""
    before, now = _flat(result_config(record.config)), _flat(result_config(config))
    changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    if changed:
        shown = "; ".join(f"{k}: {before.get(k, '(unset)')} -> {now.get(k, '(unset)')}" for k in changed[:5])
        raise ResumeRefused(f"cannot resume run {record.run_name}: its resolved config changed since it started "
                            f"({shown}{'; ...' if len(changed) > 5 else ''}); restore params.yaml (or "
                            f"{record.request.get('params_path')}) as it was, or start a new run without --resume")
    if code != record.code_version:
        raise ResumeRefused(f"cannot resume run {record.run_name}: the ganmodels/pipelines code changed since it "
                            f"started (code version {record.code_version} -> {code}); check out the code it ran "
                            "with, or start a new run without --resume")


def check_same_data(record: RunRecord, data_version: str) -> None:
    if record.data_version and record.data_version != data_version:
        raise ResumeRefused(f"cannot resume run {record.run_name}: its data changed since it started (data "
                            f"version {record.data_version[:12]} -> {data_version[:12]}); restore the data, or "
                            "start a new run without --resume")


def _flat(values: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
