"""``ganpipe compare``: the registered versions of a model side by side, champion first.

Each version's numbers are the ones its gates judged (the version tags ``metric.<name>`` written at
registration, ``pipelines.registry``), its gates the ones its run was configured with (the run's
``gates.<metric>.min|max`` params), its lineage the run's data version and git commit. The HTML
page adds each version's evaluation sample grid, embedded like the model card's.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from mlflow import MlflowClient

from pipelines.html import escape, figure, number, page, table, write_page
from pipelines.registry import CHAMPION

SAMPLES_ARTIFACT = "evaluation/samples.png"
SYMBOLS = {"min": "≥", "max": "≤"}


@dataclass(frozen=True)
class VersionRow:
    """One registered version as ``ganpipe compare`` shows it."""

    model_name: str
    version: str
    aliases: tuple[str, ...]
    primary_metric: str
    metrics: dict[str, float]
    gates: dict[str, str]  # metric -> rule as people read it ("≤ 50")
    data_version: str
    commit: str
    created: datetime
    run_id: str
    experiment_id: str
    description: str = ""
    status: str = field(default="")  # the version's gate_status tag

    @property
    def is_champion(self) -> bool:
        return CHAMPION in self.aliases


def registered_versions(client: MlflowClient, model_name: str) -> list[VersionRow]:
    """The versions of ``model_name``: the champion first, then the newest first."""
    registered = client.get_registered_model(model_name)  # raises MlflowException when it does not exist
    aliases_of: dict[str, list[str]] = {}
    for alias, version in sorted(registered.aliases.items()):
        aliases_of.setdefault(str(version), []).append(alias)
    rows = []
    for mv in client.search_model_versions(f"name = '{model_name}'"):
        run = client.get_run(mv.run_id) if mv.run_id else None
        params = run.data.params if run else {}
        tags = run.data.tags if run else {}
        metrics = {key[len("metric."):]: float(value) for key, value in mv.tags.items() if key.startswith("metric.")}
        if not metrics and run:  # registered by other means than ganpipe's promote: the run's metrics
            metrics = dict(run.data.metrics)
        rows.append(VersionRow(
            model_name=model_name, version=str(mv.version), aliases=tuple(aliases_of.get(str(mv.version), [])),
            primary_metric=mv.tags.get("primary_metric", ""), metrics=metrics, gates=_gates(params),
            data_version=params.get("data.hash") or tags.get("ganpipe.data_version", ""),
            commit=tags.get("mlflow.source.git.commit", ""),
            created=datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=timezone.utc),
            run_id=mv.run_id or "", experiment_id=run.info.experiment_id if run else "",
            description=mv.description or "", status=mv.tags.get("gate_status", "")))
    return sorted(rows, key=lambda r: (not r.is_champion, -int(r.version)))


def _gates(params: dict[str, str]) -> dict[str, str]:
    """``gates.<metric>.min|max`` params (the flattened run config; "None" for an unset bound) -> rules."""
    rules: dict[str, list[str]] = {}
    for key, value in sorted(params.items()):
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "gates" and parts[2] in SYMBOLS and value not in ("None", ""):
            rules.setdefault(parts[1], []).append(f"{SYMBOLS[parts[2]]} {float(value):g}")
    return {metric: ", ".join(bounds) for metric, bounds in rules.items()}


def compared_metrics(rows: list[VersionRow]) -> list[str]:
    """The primary metric(s) first, then every metric any version was gated on."""
    primary = sorted({r.primary_metric for r in rows if r.primary_metric})
    gated = sorted({m for r in rows for m in r.gates} - set(primary))
    return primary + gated


def _cell(row: VersionRow, metric: str) -> str:
    value = row.metrics.get(metric)
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.4g}"


def _date(row: VersionRow) -> str:
    return row.created.astimezone().strftime("%Y-%m-%d %H:%M")


def print_comparison(console, model_name: str, rows: list[VersionRow]) -> None:
    from rich.table import Table

    metrics = compared_metrics(rows)
    table_ = Table(title=f"{model_name}: {len(rows)} registered version(s), champion first")
    for column in ("version", "aliases", *[_header(m, rows) for m in metrics], "data version", "commit", "registered"):
        table_.add_column(column, justify="right" if column == "version" else "left")
    for r in rows:
        table_.add_row(r.version, ", ".join(r.aliases) or "-", *[_cell(r, m) for m in metrics], r.data_version[:12],
                       r.commit[:12], _date(r))
    console.print(table_)
    gates = {m: {r.gates.get(m) for r in rows if r.gates.get(m)} for m in metrics}
    rules = "; ".join(f"{m} {' / '.join(sorted(g))}" for m, g in gates.items() if g)
    if rules:
        console.print(f"gates: {rules}", soft_wrap=True)


def _header(metric: str, rows: list[VersionRow]) -> str:
    return metric + (" (primary)" if any(r.primary_metric == metric for r in rows) else "")


def write_comparison_html(client: MlflowClient, models: dict[str, list[VersionRow]],
                          path: str | os.PathLike) -> Path:
    """A page with each model's table and its versions' sample grids side by side (embedded)."""
    sections = []
    with tempfile.TemporaryDirectory() as tmp:
        for model_name, rows in models.items():
            metrics = compared_metrics(rows)
            headers = ["version", "aliases", *[_header(m, rows) for m in metrics], "data version", "commit",
                       "registered"]
            body = [[escape(r.version), escape(", ".join(r.aliases) or "-"),
                     *[_cell(r, m) + (f" <small>({escape(r.gates[m])})</small>" if m in r.gates else "")
                       for m in metrics],
                     f"<code>{escape(r.data_version[:12])}</code>", f"<code>{escape(r.commit[:12])}</code>",
                     escape(_date(r))] for r in rows]
            grids = []
            for r in rows:
                picture = _download(client, r.run_id, SAMPLES_ARTIFACT, Path(tmp) / model_name / r.version)
                caption = f"version {r.version}" + (f" ({', '.join(r.aliases)})" if r.aliases else "")
                if r.primary_metric:
                    caption += f": {r.primary_metric} {number(r.metrics.get(r.primary_metric))}"
                grids.append(figure(picture, caption) if picture else f"<p>version {escape(r.version)}: no "
                                                                      f"{SAMPLES_ARTIFACT} in its run</p>")
            sections.append(f"<h2 id=\"{escape(model_name)}\">{escape(model_name)}</h2>"
                            + table(headers, body, numeric=range(2, 2 + len(metrics)))
                            + "<p>Values are the ones each version's gates judged; the gate is in brackets.</p>"
                            + f"<div class=\"cols\">{''.join(grids)}</div>")
        title = "Registered versions: " + ", ".join(models)
        return write_page(page(title, f"<h1>{escape(title)}</h1>\n" + "\n".join(sections)), path)


def _download(client: MlflowClient, run_id: str, artifact: str, dst: Path) -> Path | None:
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    dst.mkdir(parents=True, exist_ok=True)
    try:
        return Path(client.download_artifacts(run_id, artifact, str(dst)))
    except (MlflowException, OSError):
        return None
