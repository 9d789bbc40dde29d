"""``ganpipe compare``'s reading of the registry (``pipelines.compare``) against a real MLflow SQLite store
whose versions are registered by ``promote`` with known numbers: the champion first whatever its age,
the judged values, the gates each run was configured with, data version and commit; the HTML page
embeds each version's own sample grid."""

from __future__ import annotations

import base64
import io
import re

import mlflow
import numpy as np
from PIL import Image

from pipelines.compare import compared_metrics, print_comparison, registered_versions, write_comparison_html
from pipelines.registry import promote
from tests.test_registry import MODEL, empty_db, log_run, store  # noqa: F401  (fixtures)


def versions_of(store, runs: list[dict], tmp_path) -> dict[str, bytes]:
    """Register one version per entry (metrics, gates as the flattened run config writes them, a data hash,
    a commit, a sample grid); returns each version's grid bytes."""
    client = store[0]
    grids = {}
    for i, run in enumerate(runs):
        run_id, uri = log_run(store, run["metrics"])
        params = {f"gates.{m}.{bound}": str(value) for m, bounds in run["gates"].items() for bound, value in bounds.items()}
        for key, value in {**params, "data.hash": f"{i}" * 64}.items():
            client.log_param(run_id, key, value)
        client.set_tag(run_id, "mlflow.source.git.commit", f"c{i}" * 20)
        grid = tmp_path / f"grid{i}" / "samples.png"
        grid.parent.mkdir()
        Image.fromarray(np.full((8, 8), 30 * i, np.uint8)).save(grid)
        client.log_artifact(run_id, str(grid), "evaluation")
        decision = promote(client, MODEL, run_id, uri, run["metrics"], "fid")
        client.log_metric(run_id, "fid", 999.0)  # logged again later: compare shows what the gates judged
        grids[decision.version] = grid.read_bytes()
    return grids


def test_champion_first_then_newest_with_judged_values_gates_and_lineage(store, tmp_path):
    client = store[0]
    runs = [{"metrics": {"fid": 30.0, "kid": 0.03}, "gates": {"fid": {"max": 50.0, "min": None}}},
            {"metrics": {"fid": 20.0, "kid": 0.02}, "gates": {"fid": {"max": 50.0, "min": None},
                                                               "kid": {"max": 0.05, "min": None}}},
            {"metrics": {"fid": 40.0, "kid": 0.01}, "gates": {"fid": {"max": 45.0, "min": None}}}]
    grids = versions_of(store, runs, tmp_path)
    rows = registered_versions(client, MODEL)
    # v2 has the best fid: champion; v3 the latest: challenger. The champion comes first although it is not
    # the newest, then the rest newest first.
    assert [(r.version, r.aliases) for r in rows] == [("2", ("champion",)), ("3", ("challenger",)), ("1", ())]
    assert [r.metrics["fid"] for r in rows] == [20.0, 40.0, 30.0] and rows[0].primary_metric == "fid"
    assert rows[0].gates == {"fid": "≤ 50", "kid": "≤ 0.05"} and rows[1].gates == {"fid": "≤ 45"}
    assert [r.data_version for r in rows] == ["1" * 64, "2" * 64, "0" * 64]
    assert [r.commit for r in rows] == ["c1" * 20, "c2" * 20, "c0" * 20]
    assert compared_metrics(rows) == ["fid", "kid"]  # the primary, then every metric any version was gated on

    from rich.console import Console

    console = Console(record=True, width=160)
    print_comparison(console, MODEL, rows)
    lines = [re.split(r"[│┃]", line)[1:-1] for line in console.export_text().splitlines() if "│" in line]
    table = [[c.strip() for c in line] for line in lines if line[0].strip().isdigit()]
    assert [t[:4] for t in table] == [["2", "champion", "20", "0.02"], ["3", "challenger", "40", "0.01"],
                                      ["1", "-", "30", "0.03"]]
    assert [t[4:6] for t in table] == [["1" * 12, "c1" * 6], ["2" * 12, "c2" * 6], ["0" * 12, "c0" * 6]]

    page = write_comparison_html(client, {MODEL: rows}, tmp_path / "compare.html").read_text()
    embedded = [base64.b64decode(src) for src in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]
    assert embedded == [grids["2"], grids["3"], grids["1"]]  # side by side, in the table's order
    for picture in embedded:
        Image.open(io.BytesIO(picture)).verify()
    assert "version 2 (champion): fid 20" in page and "(≤ 45)" in page
    mlflow.set_tracking_uri(None)
