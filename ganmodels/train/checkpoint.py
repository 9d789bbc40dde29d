"""Checkpoints are data: state dicts of named networks and optimisers, counters, RNG states and the
resolved configs.

Loadable with ``torch.load(weights_only=True)``; never a pickled module. Written atomically, so a
crash leaves the previous checkpoint intact.

Format 2 (this one) keys networks, EMA copies and optimisers by the names the model family gives
them (``networks.G``, ``ema.G``, ``optimisers.D``), so any family's checkpoint has the same shape.
Format 1 checkpoints (fixed ``G``/``D``/``G_ema``/``opt_G``/``opt_D`` keys, noise families only)
are read by converting them on load.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ganmodels.io import atomic_torch_save

if TYPE_CHECKING:
    from ganmodels.families.base import GANFamily

FORMAT = "ganpipe-checkpoint/2"
_FORMAT_1 = "ganpipe-checkpoint/1"


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    state = {"format": FORMAT, **state}
    atomic_torch_save(state, path)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"{path} is not a readable ganpipe checkpoint ({type(e).__name__}: {e})") from e
    if isinstance(state, dict) and state.get("format") == _FORMAT_1:
        return _from_format_1(state)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a ganpipe checkpoint (expected format {FORMAT!r})")
    return state


def _from_format_1(state: dict) -> dict:
    """Format 1 held one generator and one discriminator under fixed keys."""
    out = {k: v for k, v in state.items() if k not in ("G", "D", "G_ema", "opt_G", "opt_D")}
    out.update(format=FORMAT, family="noise", networks={"G": state["G"], "D": state["D"]},
               ema={"G": state["G_ema"]} if state.get("G_ema") is not None else {},
               optimisers={"G": state["opt_G"], "D": state["opt_D"]}, family_state={})
    return out


def load_model(path: str | os.PathLike, *, use_ema: bool = True, map_location: str = "cpu") -> "GANFamily":
    """Rebuild the trained model from a checkpoint via the model registry, in eval mode.

    With ``use_ema`` (the default) the EMA weights replace the live ones of the networks that
    have them: the model evaluates, samples and exports as the trainer's ``generator`` does.
    """
    from ganmodels.registry import build

    state = load_checkpoint(path, map_location)
    model = build(state["model"], state["model_config"])
    for name, network in model.networks().items():
        weights = state["networks"][name]
        if use_ema and (state.get("ema") or {}).get(name) is not None:
            weights = state["ema"][name]
        network.load_state_dict(weights)
    return model.eval().requires_grad_(False)


def load_generator(path: str | os.PathLike, *, use_ema: bool = True, map_location: str = "cpu") -> torch.nn.Module:
    """The inference network (the generator) of a checkpoint, EMA weights when present, in eval mode."""
    return load_model(path, use_ema=use_ema, map_location=map_location).generator
