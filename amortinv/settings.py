"""Typed settings that say what values they take: one declaration read by the dataclass's own
check (so the Python API refuses nonsense too) and by the command line (``choices``, ``auto``).

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Config:
    ...     steps: int = setting(1000, minimum=1)
    ...     method: str = setting("simclr", choices=("simclr", "moco"))
    ...     temperature: float | str = setting(AUTO, auto=float, above=0)
    ...     def __post_init__(self):
    ...         check_settings(self)
    >>> Config(method="byol")
    Traceback (most recent call last):
    ...
    ValueError: method (--method) must be one of simclr, moco; got 'byol'

``AUTO`` (the word ``auto``) stands for "chosen from the other settings"; such a field takes
``auto`` or a number of the ``auto`` type.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import field
from typing import Any

AUTO = "auto"


def setting(default: Any, *, choices: tuple[str, ...] = (), minimum: float | None = None,
            above: float | None = None, maximum: float | None = None,
            below: float | None = None, auto: type | None = None) -> Any:
    """A dataclass field with its allowed values: ``choices`` for strings; bounds for numbers
    (``minimum``/``maximum`` inclusive, ``above``/``below`` exclusive); ``auto`` (int or
    float) for a field that takes the word ``auto`` or such a number."""
    rules = {"choices": choices, "minimum": minimum, "above": above, "maximum": maximum,
             "below": below, "auto": auto}
    return field(default=default,
                 metadata={k: v for k, v in rules.items() if v is not None and v != ()})


def check_settings(config: Any) -> None:
    """Raise ``ValueError`` naming the first setting of ``config`` outside its allowed
    values, and what it takes (the flag is the setting's name with dashes)."""
    for f in dataclasses.fields(config):
        rules, value = f.metadata, getattr(config, f.name)
        flag = "--" + f.name.replace("_", "-")
        if rules.get("choices") and value not in rules["choices"]:
            raise ValueError(f"{f.name} ({flag}) must be one of {', '.join(rules['choices'])}; "
                             f"got {value!r}")
        if value == AUTO and rules.get("auto"):
            continue
        auto = rules.get("auto")
        wanted = _wrong_kind(value, auto(0) if auto else f.default)
        if wanted:
            takes = f"takes 'auto' or {wanted}" if auto else f"must be {wanted}"
            raise ValueError(f"{f.name} ({flag}) {takes}; got {value!r}")
        for rule, fails, words in (("minimum", lambda v, b: v < b, "at least"),
                                   ("above", lambda v, b: v <= b, "above"),
                                   ("maximum", lambda v, b: v > b, "at most"),
                                   ("below", lambda v, b: v >= b, "below")):
            bound = rules.get(rule)
            if bound is not None and fails(value, bound):
                raise ValueError(f"{f.name} ({flag}) must be {words} {bound}; got {value!r}")


def _wrong_kind(value: Any, default: Any) -> str | None:
    """What ``value`` should be, in words, where it is not of ``default``'s kind (a bool, a
    whole number, or a finite number); None where it is, or where ``default`` is of another
    kind (strings, tuples: checked by their choices, if any)."""
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if not isinstance(default, numbers.Real):
        return None
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if isinstance(default, numbers.Integral):
        return None if number and isinstance(value, numbers.Integral) else "a whole number"
    return None if number and math.isfinite(value) else "a finite number"


def auto_or(kind: type):
    """An argparse ``type``: the word ``auto``, or a number of ``kind``."""

    def parse(text: str):
        if text == AUTO:
            return AUTO
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"expected 'auto' or {kind.__name__}") from None

    parse.__name__ = f"auto or {kind.__name__}"  # argparse names the type in its message
    return parse
