"""The model card of one run: ``runs/<run>/report.html``, written for every run that got a run
directory (registered, rejected or failed), so a rejected run shows why.

One self-contained page (``pipelines.html``): the verdict and its short summary, every gate with
its value, threshold and verdict, the other metrics, the sample grid (one row per class for
conditional models; input | bicubic | output | target strips for paired data), a latent
interpolation strip (noise models), the training previews, loss and mode-monitor curves, the
lineage (git commit, data version, resolved params, seed, package versions, the validation report)
and the registry decision with its reason.

``summary_lines`` is the short summary at the top of the card; ``summary_markdown`` is the same
lines as Markdown, written into the registered model version's description (MLflow renders it).
Both read only the run summary (``pipelines.flow``), so they say the same thing.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from pipelines.html import escape, figure, number, page, table, verdict, write_page

CARD_FILE = "report.html"
SAMPLES_FILE = "eval/samples.png"
INTERPOLATION_FILE = "eval/interpolation.png"
LOSS_CURVES_FILE = "train/loss_curves.png"
MONITOR_CURVES_FILE = "train/monitor_curves.png"
PREVIEWS_DIR = "train/samples"
VALIDATION_SUMMARY = "validation/validation_summary.json"

# What a reader needs to rebuild the environment; ganpipe first.
INTERPOLATION_ROWS, INTERPOLATION_STEPS = 8, 10  # conditional models: one row per class, up to 16
PACKAGES = ("ganpipe", "torch", "torchvision", "numpy", "scikit-learn", "mlflow", "prefect", "dvc",
            "great-expectations", "onnx", "onnxruntime")
SYMBOLS = {"<=": "≤", ">=": "≥"}
# Longest description MLflow keeps for a model version is 5,000 characters on older servers.
DESCRIPTION_LIMIT = 5000


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@dataclass(frozen=True)
class Lineage:
    """Where a run came from, beyond its summary."""

    git_commit: str
    params: dict  # the resolved run configuration (config.json)
    packages: dict[str, str] = field(default_factory=package_versions)
    validation: dict | None = None  # validation/validation_summary.json


# -- the short summary -----------------------------------------------------------------------------


def summary_lines(summary: dict, lineage: Lineage) -> list[tuple[str, str]]:
    """(label, text) lines: the verdict, the gates, the primary metric, the registry decision, data and code."""
    lines = [("Verdict", _verdict(summary))]
    evaluation = summary.get("evaluation") or {}
    gates = (evaluation.get("gates") or {}).get("gates", [])
    if gates:
        passed = sum(g["passed"] for g in gates)
        lines.append(("Gates", f"{passed} of {len(gates)} passed: " + "; ".join(_gate_text(g) for g in gates)))
    elif evaluation:
        lines.append(("Gates", f"none in force (preset {summary.get('preset')})"))
    early = (summary.get("failed_gates") or {}).get("early_stop")
    if early:
        lines.append(("Stopped early", early))
    primary = evaluation.get("primary_metric")
    if primary and evaluation.get("primary_value") is not None:
        lines.append(("Primary metric", f"{primary} = {number(evaluation['primary_value'])} "
                                        f"({_direction(primary)} is better)"))
    registry = summary.get("registry") or {}
    if registry.get("reason"):
        lines.append(("Registry", registry["reason"]))
    data = summary.get("data") or {}
    if data:
        lines.append(("Data", f"{summary.get('dataset')} version {data['data_hash'][:12]} "
                              f"({data['n_train']:,} train / {data['n_test']:,} test samples)"))
    training = summary.get("training") or {}
    code = f"commit {lineage.git_commit[:12]}, seed {lineage.params.get('seed')}, {summary.get('model')} " \
           f"({lineage.params.get('recipe')} recipe)"
    if training:
        code += f", {training['steps']} steps in {training['seconds']:.0f} s on {training['device']}"
    lines.append(("Code", code))
    lines.append(("Run", f"{summary.get('run_name')} (MLflow run {summary.get('mlflow_run_id')})"))
    return lines


def summary_markdown(summary: dict, lineage: Lineage) -> str:
    """``summary_lines`` as a Markdown list, for the registered version's description."""
    text = "\n".join(f"- **{label}:** {value}" for label, value in summary_lines(summary, lineage))
    text += f"\n\nThe model card with samples, curves and lineage is the run's artifact `{CARD_FILE}`."
    return text if len(text) <= DESCRIPTION_LIMIT else text[: DESCRIPTION_LIMIT - 3] + "..."


def _verdict(summary: dict) -> str:
    status = summary.get("status")
    registry = summary.get("registry") or {}
    if status == "registered":
        return (f"registered as {registry['model_name']} version {registry['version']} "
                f"(aliases: {', '.join(registry['aliases'])})")
    if status == "rejected":
        return f"rejected by gate(s) {', '.join(sorted(summary.get('failed_gates') or {}))}; nothing registered"
    if status == "failed":
        return f"failed: {summary.get('error', 'unknown error')}; nothing registered"
    return str(status)


def _gate_text(gate: dict) -> str:
    rule = f"{SYMBOLS.get(gate['comparison'], gate['comparison'])} {gate['threshold']:g}"
    return f"{gate['metric']} {number(gate['value'])} {rule} {'pass' if gate['passed'] else 'FAIL'}"


def _direction(metric: str) -> str:
    from ganmodels.metrics import get_metric

    try:
        return get_metric(metric).direction
    except KeyError:
        return "?"


# -- the page ------------------------------------------------------------------------------------------


def write_model_card(summary: dict, lineage: Lineage, path: str | os.PathLike | None = None) -> Path:
    """Write the card of the run in ``summary['run_dir']`` (atomically) and return its path."""
    run_dir = Path(summary["run_dir"])
    sections = [_header(summary, lineage), _gates_section(summary), _samples_section(summary, run_dir),
                _training_section(run_dir), _lineage_section(summary, lineage), _registry_section(summary)]
    title = f"Model card: {summary.get('run_name')}"
    return write_page(page(title, "\n".join(s for s in sections if s)), path or run_dir / CARD_FILE)


def _header(summary: dict, lineage: Lineage) -> str:
    status = escape(summary.get("status", "unknown"))
    items = "".join(f"<li><b>{escape(label)}:</b> {escape(text)}</li>" for label, text in summary_lines(summary, lineage))
    return (f"<h1>{escape(summary.get('registered_model'))} <span class=\"status {status}\">{status}</span></h1>"
            f"<p>Run <code>{escape(summary.get('run_name'))}</code>: model <code>{escape(summary.get('model'))}"
            f"</code> on data set <code>{escape(summary.get('dataset'))}</code>, preset "
            f"<code>{escape(summary.get('preset'))}</code>.</p>\n<ul class=\"summary\" id=\"summary\">{items}</ul>")


def _gates_section(summary: dict) -> str:
    evaluation = summary.get("evaluation") or {}
    if not evaluation:
        return ""
    from ganmodels.metrics import get_metric

    gates = (evaluation.get("gates") or {}).get("gates", [])
    out = ["<h2 id=\"gates\">Quality gates</h2>"]
    if gates:
        rows = [[escape(g["name"]), number(g["value"]), escape(f"{SYMBOLS.get(g['comparison'])} {g['threshold']:g}"),
                 verdict(g["passed"]), escape(g["reason"])] for g in gates]
        out.append(table(["gate", "value", "threshold", "verdict", "reason"], rows, numeric=[1]))
    else:
        out.append("<p>No gate in force for this run (its preset switches them off).</p>")
    early = (summary.get("failed_gates") or {}).get("early_stop")
    if early:
        out.append(f"<p class=\"fail\">Gate early_stop: {escape(early)}</p>")
    gated = {g["metric"] for g in gates}
    others = sorted(set(evaluation.get("metrics") or {}) - gated)
    if others:
        def described(name: str) -> str:
            try:
                return get_metric(name).description
            except KeyError:
                return ""

        primary = evaluation.get("primary_metric")
        rows = [[escape(name + (" (primary)" if name == primary else "")), number(evaluation["metrics"][name]),
                 escape(described(name))] for name in others]
        out.append("<h3>Other metrics</h3>" + table(["metric", "value", "what it measures"], rows, numeric=[1]))
    return "\n".join(out)


def _samples_section(summary: dict, run_dir: Path) -> str:
    out = []
    samples = run_dir / SAMPLES_FILE
    if samples.is_file():
        out.append(figure(samples, _samples_caption(summary), alt="evaluation samples"))
    walk = run_dir / INTERPOLATION_FILE
    if walk.is_file():
        if (summary.get("data") or {}).get("kind") == "points":
            caption = ("Latent interpolation: each line is G along the great circle between two random latents "
                       "(slerp), from its square. A line that jumps between modes through empty space shows where "
                       "the generator puts samples no mode holds; all lines inside one mode, a collapse.")
        else:
            conditional = "one class per row (the classes in turn), " if _conditional(summary) else ""
            caption = (f"Latent interpolation: each row walks the great circle between two random latents (slerp), "
                       f"{conditional}left to right. Smooth changes mean a continuous latent space; a row of "
                       "identical images, a collapsed one.")
        out.append(figure(walk, caption, alt="latent interpolation"))
    if not out:
        return ""
    return "<h2 id=\"samples\">Samples</h2>\n" + "\n".join(out)


def _samples_caption(summary: dict) -> str:
    data = summary.get("data") or {}
    if data.get("kind") == "paired-images":
        return ("Held-out pairs, one per row: input (enlarged, nearest neighbour) | bicubic upsampling | "
                "the model's output | target.")
    if data.get("kind") == "points":
        return "Generated points (red) over the real ones (grey)."
    names = data.get("class_names") or []
    if _conditional(summary) and names:
        return "Samples from the EMA generator, one row per class, top to bottom: " + ", ".join(names) + "."
    return "Samples from the EMA generator at the evaluation seed."


def _conditional(summary: dict) -> bool:
    return bool(((summary.get("evaluation") or {}).get("metrics") or {}).get("cond_accuracy") is not None)


def _training_section(run_dir: Path) -> str:
    out = []
    previews = sorted((run_dir / PREVIEWS_DIR).glob("step_*.png"))
    if previews:
        out.append("<h3>Previews while training (the same latents or held-out inputs each time)</h3>"
                   "<div class=\"grid\">" + "".join(
            figure(p, f"step {int(p.stem.split('_')[1])}") for p in previews) + "</div>")
    curves = [(run_dir / LOSS_CURVES_FILE, "Per-step discriminator and generator losses."),
              (run_dir / MONITOR_CURVES_FILE, "Mode monitor while training (monitor.* in MLflow): class or "
                                              "mode coverage and precision/recall of fresh samples.")]
    shown = [figure(path, caption) for path, caption in curves if path.is_file()]
    if shown:
        out.append("<h3>Curves</h3>" + "".join(shown))
    return "<h2 id=\"training\">Training</h2>\n" + "\n".join(out) if out else ""


def _lineage_section(summary: dict, lineage: Lineage) -> str:
    data = summary.get("data") or {}
    training = summary.get("training") or {}
    rows = [("run", summary.get("run_name")), ("MLflow run id", summary.get("mlflow_run_id")),
            ("MLflow experiment id", summary.get("experiment_id")), ("tracking URI", summary.get("tracking_uri")),
            ("git commit", lineage.git_commit), ("data set", summary.get("dataset")),
            ("data source", data.get("origin")), ("data version (sha256 of the prepared tensors)", data.get("data_hash")),
            ("samples (train / test)", f"{data['n_train']:,} / {data['n_test']:,}" if data else None),
            ("sample shape", data.get("sample_shape")), ("seed", lineage.params.get("seed")),
            ("recipe", lineage.params.get("recipe")), ("device", training.get("device")),
            ("training steps", training.get("steps")), ("rollbacks", training.get("rollbacks"))]
    out = ["<h2 id=\"lineage\">Lineage</h2>",
           table(["what", "value"], [[escape(k), f"<code>{escape(v)}</code>"] for k, v in rows if v not in (None, "")])]
    out.append("<h3>Packages</h3>" + table(["package", "version"], [[escape(k), escape(v)]
                                                                     for k, v in lineage.packages.items()]))
    out.append(_validation_block(lineage.validation))
    out.append("<h3>Resolved parameters</h3><details><summary>config.json (params.yaml, overlays and --set "
               "resolved)</summary><pre>" + escape(json.dumps(lineage.params, indent=2, sort_keys=True, default=str))
               + "</pre></details>")
    return "\n".join(out)


def _validation_block(validation: dict | None) -> str:
    if not validation:
        return "<h3>Data validation</h3><p>No validation report (the run stopped before it).</p>"
    head = (f"{validation.get('n_expectations')} expectations on {validation.get('n_samples'):,} samples of "
            f"{validation.get('dataset')} ({validation.get('kind')})")
    out = [f"<h3>Data validation</h3><p>{verdict(bool(validation.get('success')))} {escape(head)}. Great "
           f"Expectations Data Docs: <code>{escape(validation.get('docs_path'))}</code> (also the run's "
           "artifact <code>validation/data_docs/index.html</code>).</p>"]
    failures = validation.get("failures") or []
    if failures:
        rows = [[escape(f.get("check")), escape(f.get("column") or "(table)"), escape(f.get("unexpected_count")),
                 escape(", ".join(map(str, f.get("example_ids") or [])))] for f in failures]
        out.append(table(["check", "column", "unexpected rows", "example ids"], rows))
    return "".join(out)


def _registry_section(summary: dict) -> str:
    registry = summary.get("registry") or {}
    out = ["<h2 id=\"registry\">Registry decision</h2>"]
    if registry.get("registered"):
        previous = registry.get("previous_champion_version")
        out.append(f"<p>Registered as <b>{escape(registry['model_name'])}</b> version "
                   f"<b>{escape(registry['version'])}</b>, aliases <b>{escape(', '.join(registry['aliases']))}</b>."
                   f"</p><p>Why: {escape(registry['reason'])}</p>"
                   + (f"<p>Champion before this run: version {escape(previous)}.</p>" if previous else ""))
    elif registry:
        out.append(f"<p class=\"fail\">Nothing registered: {escape(registry.get('reason'))}.</p>")
        failed = summary.get("failed_gates") or {}
        if failed:
            out.append(table(["failed gate", "reason"], [[escape(k), escape(v)] for k, v in sorted(failed.items())]))
    else:
        out.append(f"<p class=\"fail\">Nothing registered: the run failed before the gates "
                   f"({escape(summary.get('error', 'unknown error'))}).</p>")
    return "\n".join(out)


# -- pictures only the card shows ------------------------------------------------------------------------


def save_card_pictures(summary: dict, monitor: dict[str, list[tuple[int, float]]], *, seed: int) -> dict[str, str]:
    """The latent interpolation strip (noise models with a checkpoint) and the mode-monitor curves,
    written into the run directory; returns the paths written, by name."""
    from pipelines.artifacts import save_interpolation, save_metric_curves

    run_dir = Path(summary["run_dir"])
    written = {}
    curves = save_metric_curves(monitor, run_dir / MONITOR_CURVES_FILE)
    if curves:
        written["monitor_curves"] = str(curves)
    checkpoint = (summary.get("training") or {}).get("checkpoint")
    if checkpoint and Path(checkpoint).is_file():
        from ganmodels.train import load_model

        model = load_model(checkpoint)
        if hasattr(model, "interpolate"):  # noise models; a translation model has no latent to walk
            rows = min(16, model.G.c_dim) if getattr(model, "conditional", False) else INTERPOLATION_ROWS
            walk, _ = model.interpolate(rows=rows, steps=INTERPOLATION_STEPS, seed=seed)
            real = None
            if walk.dim() == 3:  # points: drawn over the real held-out points
                from ganmodels.data import PreparedDataset

                real = PreparedDataset.load(summary["data"]["path"]).x_test[:1000]
            written["interpolation"] = str(save_interpolation(walk, run_dir / INTERPOLATION_FILE, real=real))
    return written
