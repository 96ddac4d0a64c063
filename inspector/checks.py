"""Checks for values read from files: printable names, and typed dataclass fields.

A checkpoint's metadata is data a user (or an attacker) can edit; every field is
checked for type before any constructor, comparison or allocation sees it, so a
wrong value is a one-line :class:`~inspector.errors.InspectorError`, not a traceback.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from inspector.errors import InspectorError

# annotation text (``from __future__ import annotations`` keeps them as strings) -> accepted types
_ANNOTATION_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "None": (type(None),),
    "tuple[int, ...]": (list, tuple),
    "tuple[str, ...]": (list, tuple),
    "tuple[int, int]": (list, tuple),
}
# element checks for the sequence annotations above
_ELEMENTS: dict[str, Any] = {
    "tuple[int, ...]": lambda v: all(is_int(x) for x in v),
    "tuple[str, ...]": lambda v: all(isinstance(x, str) for x in v),
    "tuple[int, int]": lambda v: len(v) == 2 and all(is_int(x) and x > 0 for x in v),
}


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\x1b`` instead of ESC), safe to print to a terminal.

    Names inside a file are data: a tensor called ``"\\x1b[2J"`` must not clear the
    user's screen, and one holding a newline must not split a one-line error.
    """
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


def printable_lines(text: str) -> str:
    """:func:`printable` line by line: every control character escaped except the line breaks that make
    the lines (for multi-line output: tables, findings, Markdown), so a name read from a file cannot
    move the cursor, clear the screen or recolour the terminal; already escaped text comes back as it is."""
    return "\n".join(printable(line) for line in str(text).split("\n"))


def is_int(value: Any) -> bool:
    """An ``int`` that is not a ``bool`` (JSON ``true`` must not pass as a layer size)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _type_ok(value: Any, allowed: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in allowed
    return isinstance(value, allowed)


def check_fields(cls: type, values: Any, what: str) -> dict[str, Any]:
    """``values`` as keyword arguments for the dataclass ``cls``, after checking that it is a
    mapping, has no unknown or missing keys, and that each value has its field's type.

    Raises:
        InspectorError: naming ``what`` (e.g. ``"model config"``) and the offending key.
    """
    if not isinstance(values, Mapping):
        raise InspectorError(f"{what} must be a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [printable(str(k)) for k in values if k not in fields]
    if unknown:
        raise InspectorError(f"{what} has unknown fields {sorted(unknown)}; was it written by a newer dense-inspector?")
    missing = [
        name
        for name, f in fields.items()
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise InspectorError(f"{what} is incomplete: missing {missing}")
    for key, value in values.items():
        annotation = str(fields[key].type)
        allowed = _ANNOTATION_TYPES.get(annotation) or tuple(
            t for part in annotation.split("|") for t in _ANNOTATION_TYPES.get(part.strip(), ())
        )
        if allowed and not _type_ok(value, allowed):
            raise InspectorError(f"{what}: {key} must be {annotation}, got {printable(repr(value))[:80]}")
        for part in annotation.split("|"):
            check = _ELEMENTS.get(part.strip())
            if check is not None and isinstance(value, (list, tuple)) and not check(value):
                raise InspectorError(f"{what}: {key} must be {annotation}, got {printable(repr(value))[:80]}")
    return dict(values)
