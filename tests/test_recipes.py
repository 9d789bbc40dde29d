"""Named training recipes: every recipe of every registered model builds a working model and a valid
TrainConfig, and the stabilised recipes really switch on the stabilisers they claim.

The stabilisers are checked on the built modules (spectral-norm parametrizations, a MinibatchStd
layer, the trainer's EMA copy), not by reading the recipe dict back, so a recipe flag that a model
ignores fails here.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import ganmodels
from ganmodels.augment import parse_policy
from ganmodels.models.layers import MinibatchStd
from ganmodels.data import DataKind
from ganmodels.train import TrainConfig, Trainer, seed_everything
from tests.model_configs import SMALL

MODELS_WITH_RECIPES = [name for name in ganmodels.list_models() if ganmodels.get_spec(name).recipes]
RECIPE_CASES = [(name, recipe) for name in MODELS_WITH_RECIPES for recipe in sorted(ganmodels.get_spec(name).recipes)]

# SMALL shrinks widths so each case runs in milliseconds; the recipe's own fields are never overridden.


def build_small(name: str, recipe: dict) -> nn.Module:
    seed_everything(0)
    small = {k: v for k, v in SMALL.get(name, {}).items() if k not in recipe["model"]}
    return ganmodels.build(name, {**recipe["model"], **small})


def spectral_normed(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules()
            if parametrize.is_parametrized(m, "weight")
            and any(type(p).__name__ == "_SpectralNorm" for p in m.parametrizations.weight)]


def weight_layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))]


def test_models_with_recipes_have_a_stabilised_default_and_a_baseline():
    assert MODELS_WITH_RECIPES, "no registered model has recipes"
    for name in MODELS_WITH_RECIPES:
        recipes = ganmodels.get_spec(name).recipes
        assert {"stabilised", "baseline"} <= set(recipes), name
        for recipe in recipes.values():
            assert set(recipe) == {"model", "train"}


@pytest.mark.parametrize(("name", "recipe_name"), RECIPE_CASES)
def test_recipe_builds_a_model_and_a_train_config(name, recipe_name):
    recipe = ganmodels.get_recipe(name, recipe_name)
    cfg = TrainConfig(**recipe["train"], batch_size=8)  # validates every train field
    gan = build_small(name, recipe)
    for key, value in recipe["model"].items():  # the recipe's model fields reach the built config
        assert getattr(gan.config, key) == value, key
    inputs = gan.signature().example(cfg.batch_size, torch.Generator().manual_seed(0))
    fake = gan.export_module()(*inputs)
    assert fake.shape[0] == cfg.batch_size and torch.isfinite(fake).all()
    fake.mean().backward()
    assert all(p.grad is not None for p in gan.generator.parameters())


@pytest.mark.parametrize("name", MODELS_WITH_RECIPES)
def test_recipes_are_copies(name):
    recipe = ganmodels.get_recipe(name, "stabilised")
    recipe["train"]["lr_g"] = -1.0
    assert ganmodels.get_recipe(name, "stabilised")["train"]["lr_g"] > 0


def train_briefly(name: str, recipe: dict, data_of_kind: dict) -> Trainer:
    data = data_of_kind[ganmodels.get_spec(name).accepts[0]]
    cfg = TrainConfig(**recipe["train"], batch_size=16, device="cpu")
    trainer = Trainer(build_small(name, recipe), data, cfg)
    trainer.fit(2 * cfg.reg_every)  # ends on a step where lazy regularisers run, for the next train_step
    return trainer


@pytest.mark.parametrize("name", MODELS_WITH_RECIPES)
def test_stabilised_recipe_enables_anti_collapse_and_ema_and_baseline_neither(name):
    """The contract of the two names: "stabilised" has an EMA generator and at least one
    discriminator-side stabiliser; "baseline" has no EMA and none of them."""
    stabilisers = ("minibatch_std", "spectral", "pack", "r1", "gp", "diffaugment")
    stabilised, baseline = ganmodels.get_recipe(name, "stabilised"), ganmodels.get_recipe(name, "baseline")
    assert stabilised["train"]["ema_beta"] > 0 and baseline["train"]["ema_beta"] == 0
    assert claimed_stabilisers(stabilised), f"{name}: the stabilised recipe enables none of {stabilisers}"
    assert not claimed_stabilisers(baseline), f"{name}: the baseline recipe is not unstabilised"


def claimed_stabilisers(recipe: dict) -> set[str]:
    model, train = recipe["model"], recipe["train"]
    claimed = {"minibatch_std"} if model.get("minibatch_std") else set()
    claimed |= {"spectral"} if model.get("d_norm") == "spectral" else set()
    claimed |= {"pack"} if model.get("pack", 1) > 1 else set()
    claimed |= {"r1"} if train.get("r1_gamma", 0) > 0 else set()
    claimed |= {"gp"} if train.get("gp_lambda", 0) > 0 else set()
    claimed |= {"diffaugment"} if parse_policy(train.get("diffaugment", "")) else set()
    return claimed


@pytest.mark.parametrize(("name", "recipe_name"), RECIPE_CASES)
def test_recipe_stabilisers_are_present_in_the_built_model_and_trainer(name, recipe_name, tiny_images, tiny_points,
                                                                        tiny_pairs, tiny_unpaired):
    """Each stabiliser a recipe turns on is found in the modules or the trainer's step logs."""
    recipe = ganmodels.get_recipe(name, recipe_name)
    claimed = claimed_stabilisers(recipe)
    data_of_kind = {DataKind.IMAGES: tiny_images, DataKind.LABELLED_IMAGES: tiny_images, DataKind.POINTS: tiny_points,
                    DataKind.PAIRED_IMAGES: tiny_pairs, DataKind.UNPAIRED_IMAGES: tiny_unpaired}
    trainer = train_briefly(name, recipe, data_of_kind)
    for net in trainer.groups["D"].networks:  # every discriminator (CycleGAN has two)
        D = trainer.networks[net]
        assert any(isinstance(m, MinibatchStd) for m in D.modules()) == ("minibatch_std" in claimed)
        if "spectral" in claimed:
            assert spectral_normed(D) == weight_layers(D)  # every weight layer, the head included
        else:
            assert not spectral_normed(D)
    if "pack" in recipe["model"]:  # noise families: packing really groups samples in D
        D = trainer.networks["D"]
        real = trainer.tensors["x"][:16]
        c = torch.arange(16) % trainer.model.G.c_dim if trainer.model.G.c_dim else None
        assert D(real, c).shape == (16 // recipe["model"]["pack"],)
    logs = trainer.train_step()
    assert ("r1" in logs) == ("r1" in claimed)
    assert ("gp" in logs) == ("gp" in claimed)
    assert bool(trainer.augment) == ("diffaugment" in claimed)
    # EMA: the evaluated generator is a separate averaged copy exactly when ema_beta > 0.
    inference = trainer.model.inference_network
    G = trainer.networks[inference]
    if recipe["train"]["ema_beta"] > 0:
        assert inference in trainer.ema and trainer.generator is trainer.ema[inference]
        ema = torch.cat([p.flatten() for p in trainer.ema[inference].parameters()])
        live = torch.cat([p.detach().flatten() for p in G.parameters()])
        assert not torch.equal(ema, live)
    else:
        assert trainer.generator is G and not trainer.ema


def test_dcgan_spectral_norm_bounds_each_discriminator_layer():
    """Independent check that the stabilised D's constraint acts: after power iterations every
    layer's (out, in*k*k) weight matrix has largest singular value ~1 (Miyato et al. 2018, §2.1)."""
    D = build_small("dcgan", ganmodels.get_recipe("dcgan", "stabilised")).D.train()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())
    for _ in range(30):
        D(torch.randn(8, 1, 16, 16))
    D.eval()
    for m in weight_layers(D):
        sigma = torch.linalg.matrix_norm(m.weight.detach().reshape(m.weight.shape[0], -1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=0.05)


def test_dcgan_baseline_is_the_original_dcgan_recipe():
    """Radford et al. 2016, §4: batch-norm D, Adam lr 2e-4 for both, beta1 0.5, the non-saturating
    loss, no EMA and none of the later stabilisers."""
    recipe = ganmodels.get_recipe("dcgan", "baseline")
    D = build_small("dcgan", recipe).D
    assert any(isinstance(m, nn.BatchNorm2d) for m in D.modules())
    train = recipe["train"]
    assert (train["loss"], train["lr_g"], train["lr_d"], train["beta1"]) == ("ns", 2e-4, 2e-4, 0.5)
    assert not claimed_stabilisers(recipe)


def test_dcgan_config_defaults_have_the_stabilised_discriminator():
    """``ganmodels.build("dcgan")`` without a recipe gets the stabilised recipe's D stabilisers
    (widths may differ: the recipe's are sized for the digits default run)."""
    from ganmodels.models.dcgan import DCGANConfig

    defaults = {f.name: f.default for f in dataclasses.fields(DCGANConfig)}
    model = ganmodels.get_recipe("dcgan", "stabilised")["model"]
    for key in ("d_norm", "minibatch_std", "pack"):
        if key in model:
            assert defaults[key] == model[key], f"DCGANConfig.{key} default differs from the stabilised recipe"
