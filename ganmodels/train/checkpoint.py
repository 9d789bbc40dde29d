"""Checkpoints are data: state dicts, optimizer states, counters, RNG states and the resolved config.

Loadable with ``torch.load(weights_only=True)``; never a pickled module. Written atomically, so a
crash leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ganmodels.io import atomic_torch_save

FORMAT = "ganpipe-checkpoint/1"


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
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a ganpipe checkpoint (expected format {FORMAT!r})")
    return state


def load_generator(path: str | os.PathLike, *, use_ema: bool = True, map_location: str = "cpu") -> torch.nn.Module:
    """Rebuild the generator from a checkpoint via the model registry (EMA weights when present), in eval mode."""
    from ganmodels.registry import build

    state = load_checkpoint(path, map_location)
    gan = build(state["model"], state["model_config"])
    weights = state["G_ema"] if use_ema and state.get("G_ema") is not None else state["G"]
    gan.G.load_state_dict(weights)
    return gan.G.eval().requires_grad_(False)
