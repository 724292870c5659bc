"""Grey and colour images for any image encoder: an RGB dataset for a grey encoder becomes
luminance, a grey dataset for an RGB encoder gets its one channel copied three times.

Either way the caller gets a note to show the user, so a conversion is never silent.

    >>> import numpy as np
    >>> rgb = np.full((2, 3, 4, 4), 200, dtype=np.uint8)
    >>> to_channels(rgb, 1).shape
    (2, 1, 4, 4)
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from amortinv.data.dataset import Dataset, Split

#: ITU-R BT.601 luma weights, as PIL's "L" mode uses.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def to_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """uint8 images ``(N, C, H, W)`` with ``C`` in {1, 3} as ``channels`` (1 or 3)."""
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected images (N, 1|3, H, W), got shape {x.shape}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if x.shape[1] == channels:
        return x
    if channels == 3:
        return np.repeat(x, 3, axis=1)
    grey = np.tensordot(LUMA, x.astype(np.float32), axes=([0], [1]))  # (N, H, W)
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)[:, None]


def adapt_channels(data: Dataset, channels: int) -> tuple[Dataset, str | None]:
    """``data`` with images of ``channels`` channels, and a note saying what was converted
    (``None`` when nothing was: audio, or the channels already match)."""
    if data.modality != "image" or data.input_shape[0] == channels:
        return data, None
    adapted = replace(data, train=Split(to_channels(data.train.x, channels), data.train.y),
                      test=Split(to_channels(data.test.x, channels), data.test.y))
    if channels == 1:
        note = (f"'{data.name}' has colour images and this encoder reads grey ones: they are "
                "converted to luminance (colour is lost).")
    else:
        note = (f"'{data.name}' has grey images and this encoder reads colour ones: each "
                "image's one channel is copied to red, green and blue.")
    return adapted, note
