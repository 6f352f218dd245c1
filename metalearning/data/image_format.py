"""How a dataset's images are turned into learner inputs, so outside images can be too.

Task configs bind it (``configs/tasks/*.gin``); :mod:`metalearning.adapt_images` reads it to
preprocess a user's own images exactly as the meta-training data was.
"""

from __future__ import annotations

from typing import NamedTuple

import gin


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


@gin.configurable
def image_format(*, size: int, channels: int, invert: bool) -> ImageFormat:
    if channels not in (1, 3):
        raise ValueError(f"image_format.channels must be 1 or 3, got {channels}")
    return ImageFormat(size, channels, invert)
