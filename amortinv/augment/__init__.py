"""Batched augmentation gated by an invariance vector: images and audio (log-mel)."""

from __future__ import annotations

from amortinv.augment.audio import AudioAugment, AudioSettings, LogMel, MelConfig
from amortinv.augment.vision import VisionAugment, VisionSettings
from amortinv.invariance import InvarianceSpace


def make_augment(space: InvarianceSpace) -> VisionAugment | AudioAugment:
    """The augmentation pipeline for ``space``'s modality, at standard settings."""
    return AudioAugment(space) if space.modality == "audio" else VisionAugment(space)


__all__ = [
    "AudioAugment",
    "AudioSettings",
    "LogMel",
    "MelConfig",
    "VisionAugment",
    "VisionSettings",
    "make_augment",
]
