"""Command-line flags from a config dataclass: one ``--flag`` per field, typed by its default."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, *,
                         help: dict[str, str] | None = None, skip: tuple[str, ...] = (),
                         unset: bool = False) -> None:
    """Add ``--some-field`` for every field of ``cls`` except ``skip``.

    Booleans get ``--flag/--no-flag``, tuples take several values. With ``unset`` every flag
    defaults to None, so a caller can tell which settings were given (to override a preset).
    """
    help = help or {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        flag = "--" + f.name.replace("_", "-")
        text = help.get(f.name, "")
        shown = None if unset else default
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=shown,
                                help=text)
        elif isinstance(default, tuple):
            parser.add_argument(flag, type=int, nargs="+", default=shown, help=text)
        else:
            parser.add_argument(flag, type=type(default), default=shown,
                                help=f"{text} (default {default!r})".strip())


def config_values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The values given for ``cls``'s fields (lists become tuples; unset ones are left out)."""
    values = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name, None)
        if value is not None:
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return values
