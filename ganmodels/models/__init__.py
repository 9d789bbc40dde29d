"""Built-in model families. Importing this package registers each one, explicitly by module."""

from ganmodels.models import dcgan, mlp2d  # noqa: F401
from ganmodels.models.layers import GAN, MinibatchStd, pack

__all__ = ["GAN", "MinibatchStd", "pack"]
