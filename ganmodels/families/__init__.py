"""Model families: the interface (``GANFamily``) and the built-in families.

``NoiseGAN``: ``G(z, c)`` noise-to-sample models, unconditional or class-conditional (DCGAN, the
2D MLP GAN, the conditional GAN).
"""

from ganmodels.families.base import (EvalSamples, GANFamily, IncompatibleData, OptimiserGroup, Phase, Signature,
                                     StepContext, TensorSpec)
from ganmodels.families.noise import NoiseGAN, balanced_labels, noise_signature, sample_generator

__all__ = [
    "EvalSamples", "GANFamily", "IncompatibleData", "NoiseGAN", "OptimiserGroup", "Phase", "Signature", "StepContext",
    "TensorSpec", "balanced_labels", "noise_signature", "sample_generator",
]
