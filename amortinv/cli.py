"""Command-line flags from a config dataclass: one ``--flag`` per field, typed by its default."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, *,
                         help: dict[str, str] | None = None, skip: tuple[str, ...] = (),
                         unset: bool = False, renamed: dict[str, str] | None = None) -> None:
    """Add ``--some-field`` for every field of ``cls`` except ``skip``.

    Booleans get ``--flag/--no-flag``, tuples take several values. With ``unset`` every flag
    defaults to None, so a caller can tell which settings were given (to override a preset).
    ``renamed`` (old field name -> new) keeps the old flag working as an alias of the new one.
    """
    help = help or {}
    old_names = {new: old for old, new in (renamed or {}).items()}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        flags = [_flag(f.name)] + ([_flag(old_names[f.name])] if f.name in old_names else [])
        text = help.get(f.name, "")
        shown = None if unset else default
        if isinstance(default, bool):
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, default=shown,
                                help=text, dest=f.name)
        elif isinstance(default, tuple):
            parser.add_argument(*flags, type=int, nargs="+", default=shown, help=text,
                                dest=f.name)
        else:
            parser.add_argument(*flags, type=type(default), default=shown, dest=f.name,
                                help=f"{text} (default {default!r})".strip())


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def config_values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The values given for ``cls``'s fields (lists become tuples; unset ones are left out)."""
    values = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name, None)
        if value is not None:
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return values
