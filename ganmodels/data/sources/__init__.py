"""Built-in data-set readers; importing this package registers each of them by name."""

from ganmodels.data.sources import (digits, folder, glyphs, mixtures, npy, paired, torchvision_sets,  # noqa: F401
                                    unpaired)
