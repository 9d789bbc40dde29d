"""The closing summary table printed after ``ganpipe run``."""

from __future__ import annotations

import sys


def print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.markup import escape

    console = Console(file=sys.stdout, width=110)
    status = summary.get("status", "unknown")
    colour = {"registered": "green", "up_to_date": "green", "rejected": "yellow",
              "interrupted": "yellow"}.get(status, "red")
    table = Table(title=f"ganpipe run {summary.get('run_name', '')}: [{colour}]{status}[/]", show_lines=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("gate")
    table.add_column("decision")
    evaluation = summary.get("evaluation") or {}
    gates = {g["metric"]: g for g in (evaluation.get("gates") or {}).get("gates", [])}
    for name, value in sorted((evaluation.get("metrics") or {}).items()):
        gate = gates.get(name)
        rule = f"{gate['comparison']} {gate['threshold']:g}" if gate else ""
        verdict = ("[green]pass[/]" if gate["passed"] else "[red]FAIL[/]") if gate else ""
        table.add_row(name + (" (primary)" if name == evaluation.get("primary_metric") else ""), f"{value:.4g}", rule,
                      verdict)
    if table.row_count:
        console.print(table)
    else:  # nothing evaluated (up to date, stopped early, failed before evaluation): the status line alone
        console.print(f"ganpipe run {summary.get('run_name', '')}: [{colour}]{status}[/]")
    registry = summary.get("registry") or {}
    if registry.get("registered"):
        console.print(f"registry: {registry['model_name']} v{registry['version']} aliases "
                      f"{', '.join(registry['aliases'])} — {registry['reason']}")
    elif registry:
        console.print(f"registry: nothing registered ({escape(str(registry.get('reason', '')))})")
    if summary.get("error"):
        console.print(f"[red]error:[/] {escape(str(summary['error']))}")  # a message may hold [brackets]
    training = summary.get("training") or {}
    if training:
        console.print(f"training: {training['steps']} steps in {training['seconds']:.0f} s on {training['device']}, "
                      f"{training['rollbacks']} rollback(s)")
    export = summary.get("export") or {}
    if export:
        files = ", ".join((export.get("files") or {"generator": export["onnx"]}).values())
        console.print(f"onnx: {files} (max abs diff vs PyTorch {export['max_abs_diff']:.2g})")
    console.print(f"run directory: {summary.get('run_dir')}  (summary.json, samples, checkpoints, Data Docs)")
    if summary.get("report"):
        console.print(f"model card: {summary['report']}", soft_wrap=True)
    if summary.get("experiment_id"):
        print_ui_links(console, summary["experiment_id"], run_id=summary.get("mlflow_run_id"),
                       model_name=registry.get("model_name") if registry.get("registered") else None,
                       version=registry.get("version"))


def print_ui_links(console, experiment_id: str | None, *, address: str | None = None, note: str = "", **which) -> None:
    """The MLflow UI pages of a run, its experiment and its registered model, as ``ganpipe ui`` serves them."""
    from pipelines.tracking import DEFAULT_UI_ADDRESS, ui_links

    console.print(note or "MLflow UI: run `ganpipe ui`, then open", soft_wrap=True)
    for name, url in ui_links(experiment_id, address=address or DEFAULT_UI_ADDRESS, **which).items():
        console.print(f"  {name}: {url}", soft_wrap=True, highlight=False)
