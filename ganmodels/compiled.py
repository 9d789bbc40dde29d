"""``train.compile``: the networks a training step runs, compiled with ``torch.compile``.

Only the networks' forwards are compiled (``nn.Module.compile``, in place): parameters, buffers and
``state_dict`` keys stay the same objects, so the optimisers, the EMA copies, checkpoints and resume
do not change, and the step's random draws stay outside the compiled code (the same streams as an
uncompiled run). The same code runs on every device; what differs is the compiler torch needs (a C++
compiler for CPU kernels, Triton for CUDA), and without it the run trains uncompiled with a warning.

Compiled graphs are differentiable once, so the penalties that differentiate a gradient (R1, WGAN-GP)
run their forward uncompiled: ``differentiable_twice``. StyleGAN2's path-length penalty differentiates
its synthesis network, which that family leaves out of what it compiles (``step_modules``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil

import torch
from torch import nn


def unavailable(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot compile for ``device`` here, or None when it can."""
    if device.type == "cpu":
        compilers = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "clang++", "c++"]
        if not any(shutil.which(c) for c in compilers):
            return (f"no C++ compiler found ({', '.join(compilers)}), which torch.compile needs for CPU kernels; "
                    "install one (Debian: apt install g++) or set CXX")
        return None
    if device.type == "cuda":
        if importlib.util.find_spec("triton") is None:
            return "Triton is not installed, which torch.compile needs for CUDA kernels (pip install triton)"
        return None
    return f"torch.compile is not set up for device {device.type!r} in ganpipe"


def compile_modules(modules: dict[str, nn.Module], device: torch.device) -> None:
    """Compile each module's forward in place (lazily: the first call compiles)."""
    if device.type == "cpu":  # torch's C++ build helper warns that a CPU-only machine has no CUDA runtime
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    for module in modules.values():
        module.compile()


def differentiable_twice() -> contextlib.AbstractContextManager:
    """Forwards inside this run uncompiled, so their graph can be differentiated twice (a no-op when
    nothing is compiled)."""
    return torch.compiler.set_stance("force_eager")
