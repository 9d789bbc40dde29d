"""Built-in models. Importing this package registers each one, explicitly by module."""

from ganmodels.models import cgan, cyclegan, dcgan, mlp2d, pix2pix, stylegan2  # noqa: F401
from ganmodels.models.layers import MinibatchStd, pack

__all__ = ["MinibatchStd", "pack"]
