"""Values cross the sandbox's wall as data only, bounded in size and depth."""

from __future__ import annotations

import math

import pytest

from opslab.sandbox import wire


@pytest.mark.parametrize(
    "value",
    [
        None,
        ...,
        True,
        0,
        -(10**40),
        1.5,
        math.inf,
        "é\n",
        b"\x00\xff",
        [1, (2, 3)],
        {1, 2},
        frozenset("ab"),
        {"k": [None], (1, 2): {"x"}},
    ],
)
def test_round_trip_plain_values(value: object) -> None:
    assert wire.decode(wire.encode(value)) == value
    assert type(wire.decode(wire.encode(value))) is type(value)


def test_objects_cross_only_as_handles_with_a_snapshot() -> None:
    class Config:
        def __init__(self) -> None:
            self.csrf_secret, self._private, self.helper = "s" * 40, "x", object()

        def __repr__(self) -> str:
            return "Config(...)"

    handles: list[object] = []
    data = wire.encode(Config(), lambda obj: handles.append(obj) or len(handles))
    assert data["t"] == "handle"
    assert data["repr"] == "Config(...)"
    assert set(data["attrs"]) == {"csrf_secret"}  # no private name, no non-data value
    with pytest.raises(wire.WireError):
        wire.encode(Config())  # without a handle table nothing but data crosses


def test_str_subclass_is_not_data() -> None:
    class Sly(str):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = str.__hash__

    with pytest.raises(wire.WireError):
        wire.encode(Sly("x"))


def test_sizes_and_depth_are_bounded() -> None:
    with pytest.raises(wire.WireError, match="elements"):
        wire.encode(list(range(wire.MAX_ITEMS + 1)))
    nested: list[object] = []
    for _ in range(wire.MAX_DEPTH + 2):
        nested = [nested]
    with pytest.raises(wire.WireError, match="nested"):
        wire.encode(nested)
    with pytest.raises(wire.WireError, match="longer"):
        wire.encode("x" * (wire.MAX_TEXT + 1))
    with pytest.raises(wire.WireError, match="digits"):
        wire.encode(10 ** (wire.MAX_INT_DIGITS + 1))


@pytest.mark.parametrize(
    "data",
    [
        {"t": "pickle", "v": "gASV"},
        {"t": "int", "v": 3},
        {"t": "dict", "v": [[1]]},
        [1],
        {"t": "handle", "id": 1},
        {"t": "bool", "v": "yes"},
    ],
)
def test_decode_refuses_what_is_not_of_the_form(data: object) -> None:
    with pytest.raises(wire.WireError):
        wire.decode(data)
