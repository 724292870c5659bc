"""Where models run: ``auto`` (CUDA when this machine has it, else the CPU), ``cpu``, ``cuda``
or ``cuda:N``. One function resolves the name for every script and for :func:`amortinv.load`,
and refuses a device this machine lacks with a message that says what to pass instead."""

from __future__ import annotations

import torch

#: What ``--device`` takes, for help texts.
DEVICE_HELP = "auto (CUDA when available) | cpu | cuda | cuda:N"


class DeviceUnavailable(ValueError):
    """A device name this machine cannot run on; the message says what to use instead."""


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The :class:`torch.device` that ``name`` means on this machine."""
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise DeviceUnavailable(f"unknown device {name!r}: use {DEVICE_HELP}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable(
                f"device '{name}': this machine has no usable CUDA GPU (torch "
                f"{torch.__version__}); use device 'cpu', or 'auto' to take a GPU only when "
                "there is one")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailable(
                f"device '{name}': this machine has {torch.cuda.device_count()} CUDA "
                "device(s), numbered from 0; use 'cuda' or 'auto'")
    return device
