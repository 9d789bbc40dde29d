"""The stage functions dvc.yaml and the flow share: a re-scored champion is measured exactly like a new run."""

from pathlib import Path

from pipelines.config import load_run_config
from pipelines.stages import evaluate_stage, prepare_stage, score_stage, train_stage

REPO = Path(__file__).resolve().parents[1]


def test_score_stage_measures_what_evaluate_stage_measures(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the domain classifier's cache goes under the working directory
    cfg = load_run_config(REPO / "params.yaml", preset="smoke", overrides=["train.steps=4", "monitor.every=0"])
    data = tmp_path / "dataset.pt"
    prepare_stage(cfg, data)
    checkpoint = train_stage(cfg, data, tmp_path / "train")["checkpoint"]
    evaluated = evaluate_stage(cfg, data, checkpoint, tmp_path / "eval")["metrics"]
    scored = score_stage(cfg, data, checkpoint)
    assert scored.keys() == evaluated.keys() and "domain_fd" in scored
    assert scored == {k: float(v) for k, v in evaluated.items()}
