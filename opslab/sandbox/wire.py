"""Values as plain, bounded JSON: the only thing that crosses between learner code and a grader.

`encode` turns a Python value into tagged JSON (`{"t": "set", "v": [...]}`); `decode` turns it
back into the same plain types and nothing else: no pickle, no classes chosen by the sender,
no code. What cannot cross as data (a function, a class, any other object) is sent as a
`handle` (a number the sandbox keeps) with a snapshot of its repr, str and public attributes.
Sizes are bounded on both sides: a value that is too deep, too long or too large is refused.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from typing import Any

MAX_DEPTH = 12
MAX_ITEMS = 20_000  # containers and their elements, in one value
MAX_TEXT = 1 << 20  # characters of one str or repr; bytes alike
MAX_INT_DIGITS = 4_000
MAX_ATTRS = 50
CONTAINERS = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}


class WireError(ValueError):
    """A value cannot cross: too large, too deep, or not of the wire's form."""


class _Budget:
    def __init__(self) -> None:
        self.items = 0

    def spend(self) -> None:
        self.items += 1
        if self.items > MAX_ITEMS:
            raise WireError(f"the value has more than {MAX_ITEMS} elements")


def _text(value: str, what: str) -> str:
    if len(value) > MAX_TEXT:
        raise WireError(f"{what} is longer than {MAX_TEXT} characters")
    return value


def safe_text(call: Callable[[], object], what: str) -> str:
    """repr()/str() of a learner object, bounded; an exception in it becomes a note."""
    try:
        text = call()
    except Exception as exc:  # the object's own __repr__ failed: describe, do not crash
        return f"<{what} raised {type(exc).__name__}>"
    if not isinstance(text, str):
        return f"<{what} returned {type(text).__name__}>"
    return text[:MAX_TEXT]


def encode(value: Any, handle: Callable[[Any], int] | None = None) -> dict[str, Any]:
    """Tagged JSON for `value`; objects become handles when `handle` is given, else a WireError."""
    return _encode(value, handle, 0, _Budget())


def _encode(value: Any, handle: Callable[[Any], int] | None, depth: int, budget: _Budget) -> Any:
    budget.spend()
    if depth > MAX_DEPTH:
        raise WireError(f"the value is nested more than {MAX_DEPTH} levels deep")
    kind = type(value)
    if value is None or value is ...:
        return {"t": "none" if value is None else "ellipsis"}
    if kind is bool:
        return {"t": "bool", "v": value}
    if kind is int:
        digits = str(value)
        if len(digits) > MAX_INT_DIGITS:
            raise WireError(f"an int with more than {MAX_INT_DIGITS} digits")
        return {"t": "int", "v": digits}
    if kind is float:
        return {"t": "float", "v": repr(value)}
    if kind is str:
        return {"t": "str", "v": _text(value, "a str")}
    if kind is bytes:
        return {"t": "bytes", "v": base64.b64encode(_text(value, "a bytes")).decode()}  # type: ignore[arg-type]
    if kind.__name__ in CONTAINERS and kind is CONTAINERS[kind.__name__]:
        items = [_encode(item, handle, depth + 1, budget) for item in value]
        return {"t": kind.__name__, "v": items}
    if kind is dict:
        pairs = [
            [_encode(k, handle, depth + 1, budget), _encode(v, handle, depth + 1, budget)]
            for k, v in value.items()
        ]
        return {"t": "dict", "v": pairs}
    if handle is None:
        raise WireError(f"a {kind.__name__} cannot cross as data")
    return _object(value, handle, depth, budget)


def _object(value: Any, handle: Callable[[Any], int], depth: int, budget: _Budget) -> Any:
    """A handle with a snapshot: the type's name, repr, str, and its data attributes."""
    attrs: dict[str, Any] = {}
    names = getattr(value, "__dict__", None)
    fields = getattr(value, "__dataclass_fields__", None)
    candidates = list(fields) if isinstance(fields, dict) else []
    if isinstance(names, dict):
        candidates += [n for n in names if isinstance(n, str)]
    for name in candidates[:MAX_ATTRS]:
        if name.startswith("_") or name in attrs:
            continue
        try:
            attrs[name] = _encode(getattr(value, name), None, depth + 1, budget)
        except (WireError, Exception):  # an attribute that is not data stays on its side
            continue
    return {
        "t": "handle",
        "id": handle(value),
        "kind": "class" if isinstance(value, type) else "callable" if callable(value) else "object",
        "type": safe_text(lambda: type(value).__name__, "type name"),
        "repr": safe_text(lambda: repr(value), "repr"),
        "str": safe_text(lambda: str(value), "str"),
        "attrs": attrs,
    }


def decode(data: Any, handle: Callable[[dict[str, Any]], Any] | None = None) -> Any:
    """The plain value for tagged JSON; a handle becomes `handle(data)` (or a WireError)."""
    return _decode(data, handle, 0, _Budget())


def _decode(
    data: Any, handle: Callable[[dict[str, Any]], Any] | None, depth: int, budget: _Budget
) -> Any:
    budget.spend()
    if depth > MAX_DEPTH or not isinstance(data, dict):
        raise WireError("not a value of the wire's form")
    tag, raw = data.get("t"), data.get("v")
    simple: dict[str, Callable[[], Any]] = {
        "none": lambda: None,
        "ellipsis": lambda: ...,
        "bool": lambda: bool(raw) if isinstance(raw, bool) else _bad(),
        "int": lambda: _int(raw),
        "float": lambda: _float(raw),
        "str": lambda: _text(raw, "a str") if isinstance(raw, str) else _bad(),
        "bytes": lambda: (
            base64.b64decode(_text(raw, "bytes"), validate=True) if isinstance(raw, str) else _bad()
        ),
    }
    if tag in simple:
        return simple[tag]()
    if tag in CONTAINERS and isinstance(raw, list):
        items = [_decode(item, handle, depth + 1, budget) for item in raw]
        return CONTAINERS[tag](items)
    if tag == "dict" and isinstance(raw, list):
        out = {}
        for pair in raw:
            if not (isinstance(pair, list) and len(pair) == 2):
                _bad()
            out[_decode(pair[0], handle, depth + 1, budget)] = _decode(
                pair[1], handle, depth + 1, budget
            )
        return out
    if tag == "handle" and handle is not None:
        return handle(data)
    return _bad()


def _bad() -> Any:
    raise WireError("not a value of the wire's form")


def _int(raw: Any) -> int:
    if not isinstance(raw, str) or len(raw) > MAX_INT_DIGITS + 1:
        _bad()
    return int(raw)


def _float(raw: Any) -> float:
    if not isinstance(raw, str) or len(raw) > 40:
        _bad()
    value = float(raw)
    return value if not math.isnan(value) else math.nan
