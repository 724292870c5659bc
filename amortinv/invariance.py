"""Invariance spaces and invariance vectors.

An *invariance space* is a named, ordered list of augmentation *groups* for one modality. An
*invariance vector* gives one value in [0, 1] per group: 0 switches the group off, 1 is the
standard SimCLR setting of that group, values in between scale its strength. The encoder takes
the vector as an input; the space is stored with every checkpoint, and the app builds one
slider per group from it.

    >>> from amortinv.invariance import RGB
    >>> v = RGB.vector({"crop": 1, "flip": 0, "color": 0.5, "grayscale": 1, "blur": 0})
    >>> RGB.to_dict(v)["color"]
    0.5
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

Modality = Literal["image", "audio"]
VectorLike = Mapping[str, float] | Sequence[float] | torch.Tensor


class InvalidInvarianceVector(ValueError):
    """An invariance vector that does not fit its space (length, names, NaN, range)."""


@dataclass(frozen=True)
class Group:
    """One augmentation group: its name and what it does at full strength."""

    name: str
    description: str


@dataclass(frozen=True)
class InvarianceSpace:
    """A named, ordered list of augmentation groups for one modality."""

    name: str
    modality: Modality
    groups: tuple[Group, ...]
    description: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.groups)

    def __len__(self) -> int:
        return len(self.groups)

    # -- vectors -------------------------------------------------------------------------------
    def vector(self, value: VectorLike | float) -> torch.Tensor:
        """Validate ``value`` and return it as a float32 tensor of shape ``(len(space),)``.

        ``value`` is a mapping group -> value (every group named once), a sequence or tensor
        of ``len(space)`` values in the space's order, or one number for every group.
        """
        if isinstance(value, Mapping):
            vec = self._from_mapping(value)
        else:
            try:
                vec = torch.as_tensor(value, dtype=torch.float32).detach().cpu()
            except (TypeError, ValueError, RuntimeError, OverflowError):
                raise InvalidInvarianceVector(
                    f"an invariance vector is one number, {len(self)} numbers in the order "
                    f"{self._listing()}, or a mapping group -> number; got {repr(value)[:80]}"
                ) from None
            if vec.ndim == 0:  # one number (Python's, numpy's or a 0-d tensor) for every group
                vec = vec.expand(len(self)).clone()
            elif vec.ndim > 1:
                raise InvalidInvarianceVector(
                    f"an invariance vector is one row of {len(self)} numbers "
                    f"({self._listing()}); got shape {tuple(vec.shape)}")
            if vec.numel() != len(self):
                raise InvalidInvarianceVector(
                    f"the '{self.name}' space has {len(self)} groups ({self._listing()}), "
                    f"got a vector of length {vec.numel()}"
                )
        vec = vec.to(torch.float32)
        bad = [n for n, v in zip(self.names, vec.tolist(), strict=True) if not 0.0 <= v <= 1.0]
        if bad:
            shown = ", ".join(f"{n}={v}" for n, v in zip(self.names, vec.tolist(), strict=True)
                              if n in bad)
            raise InvalidInvarianceVector(
                f"invariance values must lie in [0, 1] (0 = group off, 1 = standard strength); "
                f"out of range or NaN: {shown}"
            )
        return vec

    def to_dict(self, vec: VectorLike | float) -> dict[str, float]:
        """The vector (validated as :meth:`vector` does) as an ordered mapping group -> value."""
        values = self.vector(vec).tolist()
        return {n: round(v, 6) for n, v in zip(self.names, values, strict=True)}

    def _from_mapping(self, value: Mapping[str, float]) -> torch.Tensor:
        unknown = sorted(k if isinstance(k, str) else repr(k) for k in set(value) - set(self.names))
        missing = [n for n in self.names if n not in value]
        if unknown or missing:
            parts = []
            if unknown:
                parts.append(f"unknown group(s) {', '.join(unknown)}")
            if missing:
                parts.append(f"missing group(s) {', '.join(missing)}")
            raise InvalidInvarianceVector(
                f"{'; '.join(parts)}: the '{self.name}' space has groups {self._listing()}"
            )
        values = []
        for n in self.names:
            try:
                values.append(float(value[n]))
            except (TypeError, ValueError):
                raise InvalidInvarianceVector(
                    f"group '{n}' needs a number in [0, 1], got {value[n]!r}"
                ) from None
        return torch.tensor(values, dtype=torch.float32)

    def _listing(self) -> str:
        return ", ".join(self.names)

    # -- sampling ------------------------------------------------------------------------------
    def default_min_on(self) -> int:
        """The paper's choice: at least two groups on (K=5: 26 corners), one when K=2."""
        return min(2, len(self) - 1) if len(self) > 1 else 1

    def corners(self, min_on: int | None = None) -> torch.Tensor:
        """All binary vectors with at least ``min_on`` groups on, shape ``(n, len(space))``."""
        min_on = self.default_min_on() if min_on is None else min_on
        if not 0 <= min_on <= len(self):
            raise ValueError(f"min_on must be in [0, {len(self)}], got {min_on}")
        rows = [c for c in itertools.product((0.0, 1.0), repeat=len(self)) if sum(c) >= min_on]
        return torch.tensor(rows, dtype=torch.float32)

    def sample(
        self,
        n: int,
        mode: Literal["corners", "continuous", "mixed"] = "corners",
        *,
        min_on: int | None = None,
        corner_fraction: float = 0.5,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw ``n`` invariance vectors, shape ``(n, len(space))``, reproducibly.

        ``corners`` draws uniformly among :meth:`corners` (the paper); ``continuous`` draws each
        value uniformly in [0, 1]; ``mixed`` draws a corner with probability
        ``corner_fraction`` and a continuous vector otherwise.
        """
        if mode not in ("corners", "continuous", "mixed"):
            raise ValueError(f"mode must be 'corners', 'continuous' or 'mixed', got {mode!r}")
        corners = self.corners(min_on)
        picked = corners[torch.randint(len(corners), (n,), generator=generator)]
        if mode == "corners":
            return picked
        uniform = torch.rand(n, len(self), generator=generator)
        if mode == "continuous":
            return uniform
        use_corner = torch.rand(n, 1, generator=generator) < corner_fraction
        return torch.where(use_corner, picked, uniform)

    # -- serialisation -------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "name": self.name,
            "modality": self.modality,
            "description": self.description,
            "groups": [{"name": g.name, "description": g.description} for g in self.groups],
        }

    @classmethod
    def from_json(cls, data: Mapping) -> InvarianceSpace:
        try:
            groups = tuple(Group(g["name"], g.get("description", "")) for g in data["groups"])
            space = cls(data["name"], data["modality"], groups, data.get("description", ""))
        except (KeyError, TypeError) as err:
            raise ValueError(f"not a valid invariance space description: {err}") from None
        if space.modality not in ("image", "audio") or not groups:
            raise ValueError(f"not a valid invariance space description: {dict(data)}")
        return space


RGB = InvarianceSpace(
    "rgb",
    "image",
    (
        Group("crop", "random resized crop (scale 0.08-1, aspect 3/4-4/3) with translation"),
        Group("flip", "horizontal flip with probability 0.5"),
        Group("color", "brightness, contrast, saturation (0.4) and hue (0.1) jitter, p=0.8"),
        Group("grayscale", "convert to grey with probability 0.2"),
        Group("blur", "Gaussian blur, sigma 0.1-2.0 px, p=0.5"),
    ),
    "the paper's SimCLR groups for colour images",
)

GREY = InvarianceSpace(
    "grey",
    "image",
    (
        Group("crop", "random resized crop (scale 0.08-1, aspect 3/4-4/3) with translation"),
        Group("flip", "horizontal flip with probability 0.5"),
        Group("color", "brightness, contrast (0.4) and gamma (0.4) jitter, p=0.8"),
        Group("blur", "Gaussian blur, sigma 0.1-2.0 px, p=0.5"),
    ),
    "the SimCLR groups for grey images: colour acts on intensity, no grayscale group",
)

SPATIAL_APPEARANCE = InvarianceSpace(
    "spatial-appearance",
    "image",
    (
        Group("spatial", "crop and horizontal flip"),
        Group("appearance", "colour jitter, grayscale and blur"),
    ),
    "the two groups of the paper's public MoCo model",
)

AUDIO = InvarianceSpace(
    "audio",
    "audio",
    (
        Group("pitch", "pitch shift, up to +-4 semitones"),
        Group("time", "time shift (up to 25%) and stretch (0.8-1.25x)"),
        Group("noise", "gain (+-6 dB) and white/coloured noise (SNR down to 10 dB)"),
        Group("mask", "time and frequency masking (up to 2 masks of 15% each)"),
        Group("filter", "random equaliser: smooth gain curve over frequency, +-9 dB"),
    ),
    "augmentation groups for log-mel spectrograms",
)

SPACES: dict[str, InvarianceSpace] = {s.name: s for s in (RGB, GREY, SPATIAL_APPEARANCE, AUDIO)}


def describe(vector: Mapping[str, float]) -> str:
    """A named vector in words, two decimals per group: ``crop 0.52, flip 0.63``."""
    return ", ".join(f"{k} {v:.2f}" for k, v in vector.items())


def get_space(name: str) -> InvarianceSpace:
    """The built-in space called ``name``."""
    try:
        return SPACES[name]
    except KeyError:
        raise KeyError(f"unknown invariance space {name!r}; known: {', '.join(SPACES)}") from None


def default_space(modality: Modality, channels: int = 3) -> InvarianceSpace:
    """The default space for a modality: RGB or grey for images, audio for audio."""
    if modality == "audio":
        return AUDIO
    return RGB if channels == 3 else GREY


