"""The model card (``pipelines.card``): a self-contained page that says what the run's files and gates
say, read back with Python's own HTML parser and PIL, never through the card's own code.

The end-to-end runs (tests/test_pipeline_e2e.py) check the card of real runs, its MLflow artifact and
the version description; tests/test_browser.py renders it in Chromium."""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines import card

CLASSES = [f"class {k}" for k in range(10)]


class Page(HTMLParser):
    """Every tag with its attributes, the text of each <li> of the summary list, the table rows."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.summary: list[str] = []
        self.rows: list[list[str]] = []
        self._in_summary = self._in_li = False
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "ul" and attrs.get("id") == "summary":
            self._in_summary = True
        elif tag == "li" and self._in_summary:
            self._in_li = True
            self.summary.append("")
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "ul":
            self._in_summary = False
        elif tag == "li":
            self._in_li = False
        elif tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._in_li:
            self.summary[-1] += data
        if self._cell is not None:
            self._cell.append(data)


def gate(metric, value, comparison, threshold):
    passed = value <= threshold if comparison == "<=" else value >= threshold
    return {"name": metric, "metric": metric, "value": value, "threshold": threshold, "comparison": comparison,
            "passed": passed, "reason": f"{metric}={value:.4g} {'passes' if passed else 'FAILS'} {comparison} "
                                        f"{threshold:g}"}


def png(path: Path, seed: int, size: int = 40) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path.read_bytes()


def tiny_checkpoint(tmp_path: Path, model: str) -> Path:
    import ganmodels
    from ganmodels.data import DataConfig, load_dataset
    from ganmodels.train import TrainConfig, Trainer
    from tests.model_configs import SMALL

    data = load_dataset(DataConfig(name="digits", resolution=16, max_samples=200))
    trainer = Trainer(ganmodels.build(model, SMALL[model]), data, TrainConfig(steps=2, batch_size=8),
                      workdir=tmp_path / model)
    return trainer.fit().checkpoint


def run_summary(run_dir: Path, status: str, *, conditional: bool = False, checkpoint: Path | None = None) -> dict:
    gates = [gate("domain_fd", 7.4, "<=", 50.0), gate("precision", 0.71, ">=", 0.5),
             gate("class_kl", 0.2 if status == "rejected" else 0.004, "<=", 0.05)]
    metrics = {"domain_fd": 7.4, "precision": 0.71, "class_kl": gates[2]["value"], "recall": 0.92, "kid": 0.0123}
    if conditional:
        metrics["cond_accuracy"] = 0.99
    summary = {
        "status": status, "run_name": "dcgan-digits-test", "run_dir": str(run_dir), "mlflow_run_id": "abc123",
        "experiment_id": "1", "tracking_uri": "sqlite:///x/mlflow.db", "git_commit": "0123456789abcdef0123",
        "model": "cgan" if conditional else "dcgan", "dataset": "digits", "preset": "default",
        "registered_model": "dcgan-digits",
        "data": {"path": "x", "data_hash": "f" * 64, "n_train": 1438, "n_test": 359, "sample_shape": [1, 16, 16],
                 "num_classes": 10, "kind": "labelled-images", "class_names": CLASSES, "origin": "sklearn"},
        "training": {"steps": 3000, "seconds": 73.2, "rollbacks": 0, "stopped_early": False, "stop_reason": "",
                     "checkpoint": str(checkpoint) if checkpoint else None, "device": "cpu"},
        "evaluation": {"metrics": metrics, "primary_metric": "domain_fd", "primary_value": 7.4,
                       "gates": {"passed": status == "registered", "gates": gates}, "samples": ""},
        "failed_gates": {g["name"]: g["reason"] for g in gates if not g["passed"]},
    }
    if status == "registered":
        summary["registry"] = {"registered": True, "model_name": "dcgan-digits", "version": "3",
                               "aliases": ["champion", "challenger"], "previous_champion_version": "2",
                               "reason": "dcgan-digits v3: becomes champion: domain_fd=7.4 vs champion v2 8.1"}
    else:
        summary["registry"] = {"registered": False, "reason": "failed gates: class_kl"}
    return summary


def images(page: Page) -> list[bytes]:
    out = []
    for tag, attrs in page.tags:
        if tag == "img":
            src = attrs["src"]
            assert src.startswith("data:image/png;base64,"), src[:60]
            out.append(base64.b64decode(src.split(",", 1)[1], validate=True))
    return out


def test_the_card_shows_every_gate_picture_and_lineage_embedded(tmp_path):
    run_dir = tmp_path / "run"
    pictures = {name: png(run_dir / name, i) for i, name in enumerate(
        [card.SAMPLES_FILE, card.INTERPOLATION_FILE, card.LOSS_CURVES_FILE, card.MONITOR_CURVES_FILE,
         f"{card.PREVIEWS_DIR}/step_000750.png", f"{card.PREVIEWS_DIR}/step_001500.png"])}
    summary = run_summary(run_dir, "registered", conditional=True)
    params = {"seed": 0, "recipe": "stabilised", "train": {"steps": 3000}}
    validation = {"success": True, "n_expectations": 17, "n_samples": 1797, "dataset": "digits",
                  "kind": "image", "docs_path": "/x/index.html", "failures": []}
    lineage = card.Lineage(git_commit=summary["git_commit"], params=params, validation=validation)
    path = card.write_model_card(summary, lineage)
    assert path == run_dir / "report.html"
    text = path.read_text(encoding="utf-8")
    page = Page(text)

    # Self-contained: every picture is one of the run's files, byte for byte; nothing else is referenced.
    embedded = images(page)
    assert sorted(embedded) == sorted(pictures.values())
    for picture in embedded:
        Image.open(io.BytesIO(picture)).verify()
    assert not [a for _, a in page.tags for k in ("href", "src") if k in a and not a[k].startswith(("data:", "#"))]
    assert not [t for t, _ in page.tags if t in ("script", "link", "iframe")]

    # Each gate: its value, its threshold and the verdict its numbers give.
    rows = {r[0]: r for r in page.rows if r}
    for g in summary["evaluation"]["gates"]["gates"]:
        name, value, threshold, verdict, reason = rows[g["name"]]
        assert float(value) == pytest.approx(g["value"], rel=1e-3)
        assert threshold == {"<=": "≤", ">=": "≥"}[g["comparison"]] + f" {g['threshold']:g}"
        assert verdict == ("pass" if g["passed"] else "FAIL") and reason == g["reason"]
    assert float(rows["kid"][1]) == pytest.approx(0.0123) and float(rows["recall"][1]) == pytest.approx(0.92)

    # Lineage: commit, data version, seed, packages, params; the registry decision and its reason.
    assert rows["git commit"][1] == summary["git_commit"]
    assert rows["data version (sha256 of the prepared tensors)"][1] == "f" * 64
    import torch as torch_

    assert rows["torch"][1] == torch_.__version__.split("+")[0] or rows["torch"][1] == torch_.__version__
    assert json.dumps(params, indent=2, sort_keys=True).replace('"', "&quot;") in text
    assert "passed" in text and "17" in text and "1,797" in text
    assert summary["registry"]["reason"] in text and "version 2" in text
    assert "one row per class" in text and ", ".join(CLASSES) in text  # the conditional grid's rows named

    # The summary at the top is the version description, line by line.
    markdown = card.summary_markdown(summary, lineage)
    described = [re.sub(r"\*\*(.+?):\*\* ", r"\1: ", line[2:]) for line in markdown.splitlines()
                 if line.startswith("- ")]
    assert page.summary == described
    assert page.summary[0] == "Verdict: registered as dcgan-digits version 3 (aliases: champion, challenger)"
    assert page.summary[1].startswith("Gates: 3 of 3 passed: domain_fd 7.4 ≤ 50 pass; precision 0.71 ≥ 0.5 pass")


def test_a_rejected_run_shows_why_and_a_failed_one_what_it_got_to(tmp_path):
    rejected = run_summary(tmp_path / "rejected", "rejected")
    lineage = card.Lineage(git_commit="abc", params={"seed": 1, "recipe": "stabilised"})
    text = card.write_model_card(rejected, lineage).read_text()
    page = Page(text)
    gate_rows = [r for r in page.rows if len(r) == 5]
    assert ["class_kl", "0.2", "≤ 0.05", "FAIL", rejected["failed_gates"]["class_kl"]] in gate_rows
    assert ["domain_fd", "7.4", "≤ 50", "pass", rejected["evaluation"]["gates"]["gates"][0]["reason"]] in gate_rows
    assert ["class_kl", rejected["failed_gates"]["class_kl"]] in page.rows  # the registry section's table
    assert page.summary[0] == "Verdict: rejected by gate(s) class_kl; nothing registered"
    assert "Nothing registered: failed gates: class_kl" in text

    failed = {"status": "failed", "run_name": "r", "run_dir": str(tmp_path / "failed"), "model": "dcgan",
              "dataset": "bad.npy", "preset": "smoke", "registered_model": "dcgan-bad", "mlflow_run_id": "x",
              "error": "DataValidationError: 2 of 17 expectations failed"}
    validation = {"success": False, "n_expectations": 17, "n_samples": 200, "dataset": "bad.npy", "kind": "image",
                  "docs_path": "/d/index.html", "failures": [{"check": "no_nan", "column": "nan_count",
                                                             "unexpected_count": 2, "example_ids": ["bad.npy[all:3]"]}]}
    text = card.write_model_card(failed, card.Lineage(git_commit="abc", params={}, validation=validation)).read_text()
    page = Page(text)
    assert page.summary[0] == "Verdict: failed: DataValidationError: 2 of 17 expectations failed; nothing registered"
    assert ["no_nan", "nan_count", "2", "bad.npy[all:3]"] in page.rows
    assert not images(page)


def test_card_pictures_walk_the_latent_space_of_noise_models_only(tmp_path):
    from ganmodels.train import load_model

    for model, rows in (("dcgan", card.INTERPOLATION_ROWS), ("cgan", 10)):
        checkpoint = tiny_checkpoint(tmp_path, model)
        run_dir = tmp_path / f"run-{model}"
        summary = run_summary(run_dir, "registered", checkpoint=checkpoint)
        monitor = {"monitor.class_coverage": [(20, 0.3), (40, 0.6)], "monitor.recall": [(20, 0.1), (40, 0.2)]}
        written = card.save_card_pictures(summary, monitor, seed=5)
        assert set(written) == {"interpolation", "monitor_curves"}
        with Image.open(written["interpolation"]) as picture:
            # rows x steps tiles of 16 px with 2 px padding, enlarged to >= 256 px wide by a whole factor
            width, height = 2 + card.INTERPOLATION_STEPS * 18, 2 + rows * 18
            factor = picture.width // width
            assert picture.size == (width * factor, height * factor) and picture.width >= 256
        walk, _ = load_model(checkpoint).interpolate(rows, card.INTERPOLATION_STEPS, seed=5)
        assert walk.shape == (rows, card.INTERPOLATION_STEPS, 1, 16, 16)

    # A translation model has no latent: monitor curves (if any) only.
    from tests.test_cli import tiny_pix2pix

    checkpoint, _ = tiny_pix2pix(tmp_path)
    summary = run_summary(tmp_path / "run-pix2pix", "registered", checkpoint=Path(checkpoint))
    assert card.save_card_pictures(summary, {}, seed=5) == {}
    assert not (tmp_path / "run-pix2pix" / card.INTERPOLATION_FILE).exists()
