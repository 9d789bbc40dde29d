"""ganmodels: a pure-PyTorch GAN library (models, training, metrics).

It imports no orchestration or tracking service; ``pipelines/`` builds on it.
"""

from ganmodels.registry import build, get_recipe, get_spec, list_models, register

__all__ = ["build", "get_recipe", "get_spec", "list_models", "register"]
__version__ = "0.1.0"
