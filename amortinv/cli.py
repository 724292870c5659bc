"""Command-line flags from a config dataclass: one ``--flag`` per field, typed by its default.

A field declared with :func:`amortinv.settings.setting` brings its allowed values: ``choices``
for strings, ``auto`` or a number for fields that can be chosen automatically.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Any

from amortinv.settings import auto_or


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, *,
                         help: dict[str, str] | None = None, skip: tuple[str, ...] = (),
                         unset: bool = False, renamed: dict[str, str] | None = None,
                         shown: dict[str, Any] | None = None) -> None:
    """Add ``--some-field`` for every field of ``cls`` except ``skip``.

    Booleans get ``--flag/--no-flag``, tuples take several values. With ``unset`` every flag
    defaults to None, so a caller can tell which settings were given (to override a preset).
    ``renamed`` (old field name -> new) keeps the old flag working as an alias of the new one.
    ``shown`` (field -> value) are the defaults the help states, e.g. a preset's values; by
    default, the dataclass's.
    """
    help = help or {}
    old_names = {new: old for old, new in (renamed or {}).items()}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        flags = [_flag(f.name)] + ([_flag(old_names[f.name])] if f.name in old_names else [])
        value = (shown or {}).get(f.name, default)
        kwargs: dict[str, Any] = {"dest": f.name, "default": None if unset else default}
        if isinstance(default, bool):
            kwargs |= {"action": argparse.BooleanOptionalAction}
            said = _flag(f.name) if value else _flag("no_" + f.name)
        elif isinstance(default, tuple):
            kwargs |= {"type": int, "nargs": "+"}
            said = " ".join(str(v) for v in value)
        else:
            auto = f.metadata.get("auto")
            kwargs |= {"type": auto_or(auto) if auto else type(default),
                       "choices": f.metadata.get("choices") or None}
            said = value if value != "" else "none"
        text = help.get(f.name, "")
        parser.add_argument(*flags, help=f"{text} (default: {said})".strip(), **kwargs)


def checkpoint_path(value: str) -> str:
    """``type=`` for a checkpoint flag: ``value`` when it names a checkpoint (its folder or
    file), else argparse's usage error saying there is none (instead of a traceback later)."""
    from amortinv.checkpoint import resolve

    try:
        resolve(value)
    except FileNotFoundError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return value


def task_name(value: str) -> str:
    """``type=`` for a task flag: a registered dataset's name or ``folder:PATH``, else
    argparse's usage error with the names it may have meant (before any work)."""
    from amortinv import data

    try:
        data.folder_or_info(value)
    except data.UnknownDataset as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return value


def positive_int(value: str) -> int:
    """``type=`` for a count that must be at least 1 (e.g. kNN's k), else argparse's usage
    error."""
    number = _parsed(value, int, "a whole number")
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def positive_float(value: str) -> float:
    """``type=`` for a finite amount above 0 (seconds, minutes), else argparse's usage
    error."""
    number = _parsed(value, float, "a number")
    if not math.isfinite(number) or number <= 0:
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {value}")
    return number


def _parsed(value: str, kind: type, words: str):
    try:
        return kind(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {words}, got {value!r}") from None


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
