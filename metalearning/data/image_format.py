"""How a dataset's images are turned into learner inputs, so outside images can be too.

Task configs bind it (``configs/tasks/*.gin``); :mod:`metalearning.adapt_images` reads it to
preprocess a user's own images exactly as the meta-training data was.
"""

from __future__ import annotations

from typing import NamedTuple

import gin
import numpy as np
from PIL import Image


class ImageFormat(NamedTuple):
    """Side, channels and polarity of the stored images.

    Attributes:
        size: images are resized to ``size × size`` (LANCZOS, as the dataset preprocessing).
        channels: 1 (grey) or 3 (RGB).
        invert: grey values are inverted (Omniglot stores ink as 255 on a 0 background).
    """

    size: int
    channels: int
    invert: bool

    def pixels(self, image: Image.Image) -> np.ndarray:
        """``image`` as the dataset stores it: uint8 ``[size, size]`` (grey) or ``[size, size, 3]``
        (RGB), LANCZOS-resized unless already ``size``, grey values inverted if ``invert``. The one
        preprocessing of the datasets' own images (Omniglot, MiniImagenet) and of a user's."""
        converted = image.convert("L" if self.channels == 1 else "RGB")
        if converted.size != (self.size, self.size):
            converted = converted.resize((self.size, self.size), Image.LANCZOS)
        pixels = np.asarray(converted, dtype=np.uint8)
        return 255 - pixels if self.invert else pixels


@gin.configurable
def image_format(*, size: int, channels: int, invert: bool) -> ImageFormat:
    if channels not in (1, 3):
        raise ValueError(f"image_format.channels must be 1 or 3, got {channels}")
    return ImageFormat(size, channels, invert)
