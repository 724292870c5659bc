"""Measurements of frozen features: weighted kNN accuracy, the raw-input floor and colour
statistics (what colour alone tells).

Invariance scores per transform live in :mod:`amortinv.invariance_scores`; linear readouts
in :mod:`amortinv.readout`."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def knn_predict(train_z: torch.Tensor, train_y: torch.Tensor, test_z: torch.Tensor,
                num_classes: int, k: int = 200, temperature: float = 0.07,
                chunk: int = 1024) -> torch.Tensor:
    """Weighted kNN on cosine similarity (Wu et al. 2018, as in SimCLR/MoCo evaluations):
    each of the ``k`` nearest training examples votes for its class with weight
    ``exp(similarity / temperature)``. Returns predicted classes for ``test_z``."""
    if len(train_z) == 0:
        raise ValueError("kNN needs at least one training example")
    k = min(k, len(train_z))
    device = train_z.device  # the CPU, or a GPU the features are on
    train_z = F.normalize(train_z.float(), dim=1)
    train_y = torch.as_tensor(train_y, dtype=torch.long).to(device)
    preds = []
    for start in range(0, len(test_z), chunk):
        q = F.normalize(test_z[start:start + chunk].to(device).float(), dim=1)
        sim, idx = (q @ train_z.T).topk(k, dim=1)
        votes = torch.zeros(len(q), num_classes, device=device)
        votes.scatter_add_(1, train_y[idx], torch.exp(sim / temperature))
        preds.append(votes.argmax(1).cpu())
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)


def knn_accuracy(train_z: torch.Tensor, train_y: np.ndarray | torch.Tensor,
                 test_z: torch.Tensor, test_y: np.ndarray | torch.Tensor, k: int = 200,
                 temperature: float = 0.07) -> float:
    """Top-1 accuracy of :func:`knn_predict` on a labelled test set."""
    train_y = torch.as_tensor(np.asarray(train_y), dtype=torch.long)
    test_y = torch.as_tensor(np.asarray(test_y), dtype=torch.long)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    pred = knn_predict(train_z, train_y, test_z, num_classes, k, temperature)
    return float((pred == test_y).float().mean())


#: The vectors a kNN monitor reports: every group on, every group off, and halfway.
MONITOR_VECTORS = {"all_ones": 1.0, "all_zeros": 0.0, "half": 0.5}


def knn_at_vectors(encoder, train, test, vectors: dict | None = None, k: int = 200
                   ) -> dict[str, float]:
    """kNN test accuracy of ``encoder``'s features at each named vector (``train`` and ``test``
    are labelled splits: the memory bank and the queries)."""
    scores = {}
    for label, value in (vectors or MONITOR_VECTORS).items():
        z_train, z_test = encoder.features(train.x, value), encoder.features(test.x, value)
        scores[label] = round(knn_accuracy(z_train, train.y, z_test, test.y, k), 4)
    return scores


def raw_features(x: np.ndarray, modality: str = "image") -> torch.Tensor:
    """The raw-input baseline's features: pixels in [0, 1], or log-mel spectrograms for audio
    (flattened). Every accuracy has this floor beside it."""
    if modality == "audio":
        from amortinv.augment import LogMel

        with torch.no_grad():
            return LogMel()(torch.as_tensor(x)).flatten(1)
    return torch.as_tensor(x).float().flatten(1) / 255.0


def colour_statistics(x: np.ndarray | torch.Tensor, bins: int = 36) -> torch.Tensor:
    """Hand-made colour features of ``(N, 3, H, W)`` uint8 images, ``(N, bins + 4)``: a
    histogram of hue over ``bins`` angles, each pixel weighted by its chroma and the whole
    normalised to sum to one; the chroma-weighted mean hue direction (cos, sin); the mean
    chroma; the fraction of pixels with chroma over 0.1 (a grey image has none). Hue and
    chroma are the angle and length of a pixel's (I, Q) in YIQ, the plane that
    :func:`amortinv.augment.vision.adjust_hue` (the hue jitter, and ``clipart-hue``'s
    rotation) turns. A reference for the colour tasks: what a readout on colour alone reaches
    (``scripts/colour_statistics.py``).

    >>> red = np.zeros((1, 3, 4, 4), np.uint8); red[:, 0] = 255      # a red square
    >>> grey = np.full((1, 3, 4, 4), 128, np.uint8)
    >>> stats = colour_statistics(np.concatenate([red, grey]), bins=6)
    >>> stats.shape
    torch.Size([2, 10])
    >>> stats[0, :6].round(decimals=3).tolist(), stats[0, 9].item()  # one hue; every pixel coloured
    ([0.0, 0.0, 0.0, 1.0, 0.0, 0.0], 1.0)
    >>> stats[1].abs().sum().item()                                    # grey: no colour at all
    0.0
    """
    from amortinv.augment.vision import RGB_TO_YIQ

    x = torch.as_tensor(x).float() / 255.0
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"colour statistics need (N, 3, H, W) colour images, got shape "
                         f"{tuple(x.shape)}")
    i, q = torch.einsum("cd,ndhw->nchw", torch.tensor(RGB_TO_YIQ[1:]), x).flatten(2).unbind(1)
    chroma, angle = torch.hypot(i, q), torch.atan2(q, i)
    chroma = torch.where(chroma < 1e-3, 0.0, chroma)  # grey, up to rounding (one level: 2e-3)
    where = ((angle + np.pi) / (2 * np.pi) * bins).long().clamp(0, bins - 1)
    total = chroma.sum(1, keepdim=True).clamp_min(1e-6)
    histogram = torch.zeros(len(x), bins).scatter_add_(1, where, chroma) / total
    direction = torch.stack([(chroma * angle.cos()).sum(1), (chroma * angle.sin()).sum(1)],
                            1) / total
    return torch.cat([histogram, direction, chroma.mean(1, keepdim=True),
                      (chroma > 0.1).float().mean(1, keepdim=True)], 1)
