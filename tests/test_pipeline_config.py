"""Run configuration: the precedence of its layers, and every bad input named in a ``ConfigError``.

Fast: no services, only tmp params files (the project's own params.yaml is read, never written).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

import ganmodels
from ganmodels.data import DataKind
from ganmodels.train import TrainConfig
from pipelines.config import ConfigError, GateSpec, load_run_config, parse_overrides, run_config_from_dict

PROJECT_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def write_params(tmp_path: Path, values: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


# -- precedence ---------------------------------------------------------------------------------


@pytest.fixture
def layered_params(tmp_path):
    """Each train field is set by the layers up to one level, so the winner names the highest layer."""
    return write_params(tmp_path, {
        "run": {"dataset": "digits", "preset": "p"},
        "data": {"resolution": 16},
        "model": {"minibatch_std": False},  # over the recipe's True
        "train": {"lr_d": 0.001, "lr_g": 0.001, "batch_size": 8, "steps": 10},
        "kinds": {"images": {"model": {"d_norm": "batch"}, "train": {"lr_g": 0.002, "batch_size": 16, "steps": 20,
                                                                     "beta1": 0.1}},
                  "labelled-images": {"train": {"beta1": 0.2, "batch_size": 24, "steps": 24}},
                  "points": {"train": {"lr_d": 0.9, "lr_g": 0.9, "batch_size": 99, "steps": 99}}},
        "models": {"dcgan": {"train": {"batch_size": 28, "steps": 28, "ema_beta": 0.5}},
                   "mlp2d": {"train": {"ema_beta": 0.25}}},
        "presets": {"p": {"train": {"batch_size": 32, "steps": 30}}, "q": {"train": {"steps": 5}}},
    })


def test_precedence_recipe_params_kinds_preset_set(layered_params):
    recipe = ganmodels.get_recipe("dcgan", "stabilised")
    # The recipe must differ from the dataclass defaults, or the first assertion proves nothing.
    assert recipe["train"]["beta2"] != TrainConfig().beta2
    assert recipe["train"]["lr_d"] != 0.001
    assert recipe["model"] == {"d_norm": "spectral", "minibatch_std": True}

    cfg = load_run_config(layered_params, overrides=["train.steps=40"])

    assert cfg.model == "dcgan" and cfg.recipe == "stabilised" and cfg.preset == "p"
    assert cfg.train.beta2 == recipe["train"]["beta2"]  # recipe over dataclass default
    assert cfg.train.loss == recipe["train"]["loss"]
    assert cfg.train.lr_d == 0.001  # params over recipe
    assert cfg.model_overrides["minibatch_std"] is False  # params over recipe (model section)
    assert cfg.model_overrides["d_norm"] == "batch"  # kinds.images over recipe (model section)
    assert cfg.train.lr_g == 0.002  # kinds.images over params
    assert cfg.train.beta1 == 0.2  # kinds.labelled-images over kinds.images: digits are labelled images
    assert cfg.train.ema_beta == 0.5  # models.dcgan over kinds
    assert cfg.train.batch_size == 32  # preset over models
    assert cfg.train.steps == 40  # --set over preset
    assert cfg.data.resolution == 16


def test_preset_and_dataset_arguments_beat_the_run_section(layered_params):
    assert load_run_config(layered_params, preset="q").train.steps == 5
    points = load_run_config(layered_params, dataset="ring8", preset="q")
    assert (points.model, points.train.lr_d, points.train.batch_size) == ("mlp2d", 0.9, 99)  # kinds.points
    assert points.train.ema_beta == 0.25 and points.train.beta1 != 0.1  # models.mlp2d; no image overlays
    assert points.model_overrides == {**ganmodels.get_recipe("mlp2d", "stabilised")["model"], "minibatch_std": False}


def test_default_preset_needs_no_presets_section(tmp_path):
    cfg = load_run_config(write_params(tmp_path, {"train": {"steps": 7}}))
    assert (cfg.preset, cfg.dataset, cfg.train.steps) == ("default", "digits", 7)


def test_set_values_are_parsed_as_yaml_scalars(tmp_path):
    cfg = load_run_config(PROJECT_PARAMS, overrides=[
        "gates.recall=null", "train.amp=false", "train.diffaugment=color,translation",
        "train.guard.max_rollbacks=1", "eval.n_samples=500", "gates.precision.min=0.25"])
    assert "recall" not in cfg.gates and cfg.gates["precision"].min == 0.25
    assert cfg.train.amp is False
    assert cfg.train.diffaugment == "color,translation"
    assert cfg.train.guard.max_rollbacks == 1 and cfg.train.guard.loss_limit == TrainConfig().guard.loss_limit
    assert cfg.eval.n_samples == 500
    assert parse_overrides(["a.b.c=1", "a.b.d=x", "a.e="]) == {"a": {"b": {"c": 1, "d": "x"}, "e": None}}


@pytest.mark.parametrize("text, value", [("1e6", 1e6), ("1e-4", 1e-4), ("2.5E+3", 2500.0), (".5e1", 5.0)])
def test_exponent_floats_that_yaml_reads_as_strings_become_floats(text, value):
    # PyYAML (YAML 1.1) reads 1e-4 as the string '1e-4'; a float field takes the number meant.
    assert yaml.safe_load("1e-4") == "1e-4"
    cfg = load_run_config(PROJECT_PARAMS, overrides=[f"train.lr_d={text}", f"gates.domain_fd.max={text}"])
    assert cfg.train.lr_d == value and cfg.gates["domain_fd"].max == value


def test_resolved_config_round_trips_through_its_saved_dict():
    for kwargs in ({}, {"preset": "smoke"}, {"dataset": "ring8", "preset": "smoke"}):
        cfg = load_run_config(PROJECT_PARAMS, **kwargs)
        assert run_config_from_dict(cfg.to_dict()) == cfg


# -- errors name the field ----------------------------------------------------------------------


@pytest.mark.parametrize("item, named", [
    ("train.steps", "SECTION.KEY=VALUE"),
    ("steps=3", "SECTION.KEY=VALUE"),
    ("=3", "SECTION.KEY=VALUE"),
    ("train.steps=[1", "cannot parse"),
])
def test_set_syntax_errors(item, named):
    with pytest.raises(ConfigError) as err:
        load_run_config(PROJECT_PARAMS, overrides=[item])
    assert named in str(err.value) and repr(item) in str(err.value)


@pytest.mark.parametrize("item, named", [
    ("trian.steps=5", "trian"),  # unknown section
    ("train.stepz=5", "stepz"),  # unknown field
    ("train.guard.limit=5", "limit"),
    ("gates.recal={min: 0.1}", "recal"),
    ("eval.samples=10", "samples"),
    ("model.g_widht=8", "g_widht"),
    ("run.modle=dcgan", "run.modle"),
    ("train.steps=abc", "train.steps"),  # wrong types
    ("train.steps=1.5", "train.steps"),
    ("train.steps=true", "train.steps"),
    ("train.lr_g=fast", "train.lr_g"),
    ("train.guard.loss_limit=big", "train.guard.loss_limit"),
    ("train.guard=3", "train.guard"),
    ("train.amp=maybe", "train.amp"),
    ("gates.recall.min=abc", "gates.recall.min"),
    ("eval.n_samples=many", "eval.n_samples"),
    ("monitor.every=often", "monitor.every"),
    ("model.g_width=wide", "model.g_width"),
    ("model.d_norm=layer", "model.d_norm"),
    ("run.seed=x", "run.seed"),
    ("data.resolution=abc", "data.resolution"),
    ("data.colour=1", "colour"),
])
def test_bad_set_values_name_the_field(item, named):
    with pytest.raises(ConfigError) as err:
        load_run_config(PROJECT_PARAMS, overrides=[item])
    assert named in str(err.value)


def test_unknown_params_section_is_named(tmp_path):
    with pytest.raises(ConfigError, match="trainer"):
        load_run_config(write_params(tmp_path, {"trainer": {"steps": 5}}))


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError) as err:
        load_run_config(PROJECT_PARAMS, preset="nope")
    assert "'nope'" in str(err.value) and "smoke" in str(err.value)


def test_unknown_model_lists_the_registered_ones():
    with pytest.raises(ConfigError) as err:
        load_run_config(PROJECT_PARAMS, model="stylegan9")
    assert "'stylegan9'" in str(err.value) and "dcgan" in str(err.value) and "mlp2d" in str(err.value)


def test_unknown_recipe_is_named():
    with pytest.raises(ConfigError, match="run.recipe.*fancy"):
        load_run_config(PROJECT_PARAMS, overrides=["run.recipe=fancy"])


def test_missing_and_malformed_params_files(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_run_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [steps\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_run_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_run_config(bad)


@pytest.mark.parametrize("dataset", ["nosuchset", "missing_folder/"])
def test_unknown_dataset_or_missing_folder_is_named(dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_run_config(PROJECT_PARAMS, dataset=dataset)
    assert repr(dataset) in str(err.value) and "digits" in str(err.value)  # names it, lists the known sets


# -- model and data kinds -----------------------------------------------------------------------


def test_ring8_picks_mlp2d_with_the_points_kind():
    params = yaml.safe_load(PROJECT_PARAMS.read_text())
    cfg = load_run_config(PROJECT_PARAMS, dataset="ring8")
    assert (cfg.model, cfg.data_kind, cfg.registered_name) == ("mlp2d", DataKind.POINTS, "mlp2d-ring8")
    assert cfg.train.steps == params["kinds"]["points"]["train"]["steps"]
    assert cfg.train.lr_g == ganmodels.get_recipe("mlp2d", "stabilised")["train"]["lr_g"]
    smoke = load_run_config(PROJECT_PARAMS, dataset="ring8", preset="smoke")
    assert smoke.train.steps == params["presets"]["smoke"]["train"]["steps"]  # preset over kinds


def test_digits_picks_dcgan_and_cgan_is_asked_for():
    cfg = load_run_config(PROJECT_PARAMS, dataset="digits")
    assert (cfg.model, cfg.data_kind, cfg.registered_name) == ("dcgan", DataKind.LABELLED_IMAGES, "dcgan-digits")
    assert not cfg.conditional
    cgan = load_run_config(PROJECT_PARAMS, model="cgan")
    assert (cgan.model, cgan.registered_name, cgan.conditional) == ("cgan", "cgan-digits", True)


@pytest.mark.parametrize("model, dataset, fixes", [("mlp2d", "digits", ["--model cgan", "--model dcgan"]),
                                                   ("dcgan", "ring8", ["--model mlp2d"]),
                                                   ("cgan", "ring8", ["--model mlp2d"])])
def test_model_and_data_kind_mismatch(model, dataset, fixes):
    with pytest.raises(ConfigError) as err:
        load_run_config(PROJECT_PARAMS, model=model, dataset=dataset)
    assert repr(model) in str(err.value) and repr(dataset) in str(err.value)
    assert all(fix in str(err.value) for fix in fixes)


def labelled_folder(root: Path, classes=("a", "b")) -> Path:
    from PIL import Image

    for name in classes:
        (root / name).mkdir(parents=True)
        Image.new("L", (8, 8)).save(root / name / "x.png")
    return root


def test_registered_name_for_folders_and_arrays(tmp_path):
    folder = labelled_folder(tmp_path / "handwriting")
    for spec in (str(folder), str(folder) + "/"):
        cfg = load_run_config(PROJECT_PARAMS, dataset=spec)
        assert (cfg.data.name, cfg.registered_name, cfg.data_kind) == ("folder", "dcgan-handwriting",
                                                                       DataKind.LABELLED_IMAGES)
    np.save(tmp_path / "faces.npy", np.zeros((4, 8, 8), np.uint8))
    np.save(tmp_path / "faces.labels.npy", np.arange(4))
    cfg = load_run_config(PROJECT_PARAMS, dataset=str(tmp_path / "faces.npy"))
    assert (cfg.data.name, cfg.registered_name) == ("npy", "dcgan-faces")


def test_a_conditional_model_needs_labelled_data(tmp_path):
    from PIL import Image

    (tmp_path / "plain").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "plain" / "x.png")
    with pytest.raises(ConfigError, match="'cgan' trains on labelled-images data .* holds images"):
        load_run_config(PROJECT_PARAMS, model="cgan", dataset=str(tmp_path / "plain"))


def test_unlabelled_images_without_fid_weights_cannot_be_ranked(tmp_path, monkeypatch):
    """Nothing to score unlabelled images with offline: refused before training, saying what to do."""
    from PIL import Image

    monkeypatch.delenv("GANPIPE_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    (tmp_path / "plain").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "plain" / "x.png")
    with pytest.raises(ConfigError, match="produces no metric that can rank models"):
        load_run_config(PROJECT_PARAMS, dataset=str(tmp_path / "plain"))


def test_kinds_and_models_overlays_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="kinds.image is not a data kind"):
        load_run_config(write_params(tmp_path, {"kinds": {"image": {}}}))
    with pytest.raises(ConfigError, match="models.stylegan9 is not a registered model"):
        load_run_config(write_params(tmp_path, {"models": {"stylegan9": {}}}))
    with pytest.raises(ConfigError, match="models.dcgan: unknown section"):
        load_run_config(write_params(tmp_path, {"models": {"dcgan": {"trian": {}}}}))


def test_paired_sets_pick_pix2pix_at_their_own_size():
    params = yaml.safe_load(PROJECT_PARAMS.read_text())
    cfg = load_run_config(PROJECT_PARAMS, dataset="digits-sr")
    assert (cfg.model, cfg.data_kind, cfg.registered_name) == ("pix2pix", DataKind.PAIRED_IMAGES, "pix2pix-digits-sr")
    assert cfg.data.resolution is None  # kinds.paired-images: the pairs' own size
    assert cfg.train.steps == params["models"]["pix2pix"]["train"]["steps"]
    assert cfg.primary_metric == "psnr_gain_over_bicubic"
    derived = load_run_config(PROJECT_PARAMS, dataset="digits", overrides=["data.task=sr", "data.scale=2"])
    assert (derived.model, derived.data_kind, derived.data.task) == ("pix2pix", DataKind.PAIRED_IMAGES, "sr")
    with pytest.raises(ConfigError, match="'dcgan' trains on images data .* holds paired-images"):
        load_run_config(PROJECT_PARAMS, dataset="glyphs-sr", model="dcgan")
    with pytest.raises(ConfigError, match="data.task='blur' is unknown"):
        load_run_config(PROJECT_PARAMS, dataset="digits", overrides=["data.task=blur"])


def test_benchmarks_train_pix2pix_as_the_pipeline_does():
    from benchmarks import pix2pix_sr

    params = yaml.safe_load(PROJECT_PARAMS.read_text())["models"]["pix2pix"]
    assert pix2pix_sr.MODEL == params["model"] and pix2pix_sr.TRAIN == params["train"]


def test_two_domain_sets_pick_cyclegan_and_the_datasets_overlay_applies_to_its_set_only(tmp_path):
    from PIL import Image

    cfg = load_run_config(PROJECT_PARAMS, dataset="digits-bold")
    assert (cfg.model, cfg.data_kind, cfg.registered_name) == ("cyclegan", DataKind.UNPAIRED_IMAGES,
                                                               "cyclegan-digits-bold")
    assert "psnr_a2b" in cfg.gates and cfg.primary_metric == "psnr_a2b"  # datasets.digits-bold
    for d in ("A", "B"):
        (tmp_path / "u" / f"train{d}").mkdir(parents=True)
        Image.new("L", (16, 16)).save(tmp_path / "u" / f"train{d}" / "x.png")
    user = load_run_config(PROJECT_PARAMS, dataset=str(tmp_path / "u"), overrides=["data.resolution=16"])
    assert user.model == "cyclegan" and "psnr_a2b" not in user.gates  # no truth: no PSNR gate, and no error
    assert user.primary_metric == "cycle_l1_a" and user.registered_name == "cyclegan-u"
    with pytest.raises(ConfigError, match="does not produce 'psnr_a2b'"):
        load_run_config(PROJECT_PARAMS, dataset=str(tmp_path / "u"), overrides=["gates.psnr_a2b.min=20"])
    with pytest.raises(ConfigError, match="datasets.nosuch is not a registered data set"):
        load_run_config(write_params(tmp_path, {"datasets": {"nosuch": {}}}))


def test_benchmarks_train_cyclegan_as_the_pipeline_does():
    from benchmarks import cyclegan_bold

    assert cyclegan_bold.TRAIN == yaml.safe_load(PROJECT_PARAMS.read_text())["models"]["cyclegan"]["train"]


# -- per data set -------------------------------------------------------------------------------------


def test_datasets_overlay_sits_between_models_and_presets(tmp_path):
    path = write_params(tmp_path, {
        "train": {"steps": 10, "batch_size": 8, "lr_d": 0.001},
        "kinds": {"labelled-images": {"train": {"steps": 20, "batch_size": 16, "lr_d": 0.002}}},
        "models": {"dcgan": {"train": {"steps": 30, "batch_size": 24}}, "cgan": {"train": {"steps": 31}}},
        "datasets": {"fashion-mnist": {"train": {"steps": 40}, "eval": {"classifier_epochs": 3},
                                       "models": {"cgan": {"train": {"steps": 41}, "gates": {"cond_accuracy":
                                                                                             {"min": 0.7}}}}},
                     "digits": {"train": {"steps": 50}}},
        "presets": {"p": {"eval": {"classifier_epochs": 5}}},
    })
    fashion = load_run_config(path, dataset="fashion-mnist")
    assert fashion.train.steps == 40  # datasets over models.dcgan
    assert fashion.train.batch_size == 24  # models.dcgan where the data set says nothing
    assert fashion.train.lr_d == 0.002 and fashion.eval.classifier_epochs == 3
    assert "cond_accuracy" not in fashion.gates  # the cgan table is not dcgan's
    cgan = load_run_config(path, dataset="fashion-mnist", model="cgan")
    assert cgan.train.steps == 41 and cgan.gates["cond_accuracy"].min == 0.7  # datasets.<set>.models.<model>
    assert load_run_config(path, dataset="fashion-mnist", preset="p").eval.classifier_epochs == 5  # preset wins
    assert load_run_config(path, dataset="fashion-mnist", overrides=["train.steps=7"]).train.steps == 7
    assert load_run_config(path, dataset="digits").train.steps == 50
    assert load_run_config(path, dataset="mnist").train.steps == 30  # no overlay of its own
    # Pairs derived from the set are paired images: kinds.paired-images rules them, not the set's overlay.
    derived = load_run_config(path, dataset="fashion-mnist", overrides=["data.task=sr", "data.scale=2"])
    assert derived.data_kind is DataKind.PAIRED_IMAGES and derived.eval.classifier_epochs != 3


def test_datasets_overlays_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="datasets.fashion is not a registered data set"):
        load_run_config(write_params(tmp_path, {"datasets": {"fashion": {}}}))
    with pytest.raises(ConfigError, match="datasets.digits: unknown section"):
        load_run_config(write_params(tmp_path, {"datasets": {"digits": {"trian": {}}}}))
    with pytest.raises(ConfigError, match="datasets.digits.models.gan9 is not a registered model"):
        load_run_config(write_params(tmp_path, {"datasets": {"digits": {"models": {"gan9": {}}}}}))
    with pytest.raises(ConfigError, match="datasets.digits.models.cgan: unknown section"):
        load_run_config(write_params(tmp_path, {"datasets": {"digits": {"models": {"cgan": {"gate": {}}}}}}))
    # A gate the run does not produce is refused, whichever layer set it.
    with pytest.raises(ConfigError, match="gates.cond_accuracy: this run"):
        load_run_config(write_params(tmp_path, {"datasets": {"digits": {"gates": {"cond_accuracy": {"min": 0.5}}}}}))


def test_fashion_mnist_gets_its_own_classifier_and_gates_not_the_digits():
    params = yaml.safe_load(PROJECT_PARAMS.read_text())
    fashion = params["datasets"]["fashion-mnist"]
    cfg = load_run_config(PROJECT_PARAMS, dataset="fashion-mnist")
    digits = load_run_config(PROJECT_PARAMS, dataset="digits")
    assert cfg.eval.classifier_epochs == fashion["eval"]["classifier_epochs"] != digits.eval.classifier_epochs
    assert cfg.eval.min_classifier_accuracy == fashion["eval"]["min_classifier_accuracy"] < 0.9
    for metric, bounds in fashion["gates"].items():
        assert cfg.gates[metric] == GateSpec(**bounds), metric
    assert cfg.gates != digits.gates and cfg.registered_name == "dcgan-fashion-mnist"
