"""Plain-value codec between the sandbox and the evaluator (standard library only).

Strict scoring moves arguments into the sandbox and return values out of it as JSON (``None``,
``bool``, ``float``, ``str`` and small ``int`` as themselves, everything else as tagged lists) that
holds nothing but builtin values: ``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``,
``bytes``, ``bytearray``, ``list``, ``tuple``, ``set``, ``frozenset`` and ``dict`` (``Counter``,
``OrderedDict`` and ``defaultdict`` arrive as plain ``dict``). The encoder
checks exact types (``type(x) is int``), so a subclass or any object with its own ``__eq__``
cannot cross; the decoder rebuilds fresh builtin objects and rejects anything malformed. This file
is loaded by path inside the sandbox worker, so it must import nothing outside the standard library.
"""

from __future__ import annotations

import array
import collections
import hashlib
import sys
from typing import Any

MAX_DEPTH = 100
# Standard dict subclasses cross as plain dicts (MBPP's references return Counter): their
# contents are read with dict's own C methods, so even a patched class cannot lie about them.
_DICT_LIKE = (collections.Counter, collections.OrderedDict, collections.defaultdict)
MAX_ITEMS = 1_000_000


class CodecError(ValueError):
    """A value that is not plain builtin data, or a malformed encoding."""


class TooLarge(CodecError):
    """A value with more items than the encoder may send (its digest can go instead)."""


class Digest:
    """A value that came back as its :func:`digest_value` only (it was too large to send).

    A plain class: this file is loaded by path in the sandbox, where dataclasses cannot resolve
    their module.
    """

    __slots__ = ("sha256",)

    def __init__(self, sha256: str) -> None:
        self.sha256 = sha256

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Digest) and other.sha256 == self.sha256

    def __hash__(self) -> int:
        return hash(self.sha256)

    def __repr__(self) -> str:
        return f"Digest({self.sha256[:12]}...)"

    @staticmethod
    def of(value: Any) -> Digest:
        return value if isinstance(value, Digest) else Digest(digest_value(value))


def encode_value(value: Any, max_items: int = MAX_ITEMS) -> Any:
    """Encode a plain builtin value as JSON-ready tagged lists.

    Raises:
        CodecError: For any other type (named in the message), too deep a nesting or more than
            ``max_items`` items.
    """
    budget = [max_items]
    return _encode(value, 0, budget)


_NATIVE_INT = 2**53  # ints below this cross as JSON numbers; larger ones as hex (no digit limit)


def _encode(v: Any, depth: int, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise TooLarge("value too large")
    if depth > MAX_DEPTH:
        raise CodecError("value too deep")
    t = type(v)
    # None, bool, float, str and small ints are JSON's own values; the rest are tagged lists.
    if v is None or t is bool or t is float:
        return v
    if t is int:
        return int(v) if -_NATIVE_INT < v < _NATIVE_INT else ["i", int.__format__(v, "x")]
    if t is str:
        budget[0] -= len(v) // 64  # a long text weighs as much as many items
        if budget[0] < 0:
            raise TooLarge("value too large")
        return str.__str__(v)
    if t is complex:
        return ["c", float.hex(v.real), float.hex(v.imag)]
    if t is bytes or t is bytearray:
        budget[0] -= len(v) // 32
        if budget[0] < 0:
            raise TooLarge("value too large")
        return ["y" if t is bytes else "Y", bytes.hex(bytes(v))]
    if t is list or t is tuple or t is set or t is frozenset:
        tag = {list: "l", tuple: "t", set: "S", frozenset: "F"}[t]
        flat = _flat_values(v, budget)
        return [tag, flat if flat is not None else [_encode(x, depth + 1, budget) for x in v]]
    if t is dict or t in _DICT_LIKE:
        return [
            "d",
            [
                [_encode(k, depth + 1, budget), _encode(x, depth + 1, budget)]
                for k, x in dict.items(v)
            ],
        ]
    raise CodecError(f"{t.__name__} is not a plain builtin value")


def _flat_values(items: Any, budget: list[int]) -> list[Any] | None:
    """``items`` as they encode item by item, when all are ``str`` or all are numbers that JSON
    holds exactly (what :func:`_encode` returns unchanged), checked at C speed; else None."""
    if len(items) > budget[0]:
        raise TooLarge("value too large")  # each item costs at least one
    kinds = set(map(type, items))
    if kinds == {str}:
        budget[0] -= len(items) + sum(map(len, items)) // 64
    # A NaN first makes min and max NaN, which fails the range check: item by item, as wanted.
    elif (
        kinds
        and kinds <= {bool, int, float}
        and -_NATIVE_INT < min(items)
        and max(items) < _NATIVE_INT
    ):
        budget[0] -= len(items)
    else:
        return None
    if budget[0] < 0:
        raise TooLarge("value too large")
    return list(items)


def decode_value(data: Any, depth: int = 0) -> Any:
    """Rebuild a value from :func:`encode_value`'s output.

    Raises:
        CodecError: If ``data`` is not a well-formed encoding (e.g. forged by a sample).
    """
    try:
        return _decode(data, depth)
    except CodecError:
        raise
    except Exception as e:  # unhashable set members, bad hex, wrong arity ...
        raise CodecError(f"malformed value: {type(e).__name__}") from None


_SCALARS = (type(None), bool, int, float, str)
_SCALAR_SET = frozenset(_SCALARS)
_HEX = {"i": lambda s: int(s, 16), "y": bytes.fromhex, "Y": bytearray.fromhex}
_SEQUENCES = {"l": list, "t": tuple, "S": set, "F": frozenset}


def _decode(d: Any, depth: int) -> Any:
    if type(d) in _SCALARS:  # exact types: json.loads builds nothing else
        return d
    if depth > MAX_DEPTH or type(d) is not list or not d or type(d[0]) is not str:
        raise CodecError("malformed value")
    tag = d[0]
    if len(d) == 2 and type(d[1]) is list:
        if tag == "d":
            return {_decode(k, depth + 1): _decode(v, depth + 1) for k, v in d[1]}
        if tag in _SEQUENCES:
            if set(map(type, d[1])) <= _SCALAR_SET:  # flat: JSON built these, nothing to check
                return _SEQUENCES[tag](d[1])
            return _SEQUENCES[tag](_decode(x, depth + 1) for x in d[1])
    if len(d) == 2 and type(d[1]) is str and tag in _HEX:
        return _HEX[tag](d[1])
    if tag == "c" and len(d) == 3 and type(d[1]) is str and type(d[2]) is str:
        return complex(float.fromhex(d[1]), float.fromhex(d[2]))
    raise CodecError("malformed value")


def digest_value(value: Any) -> str:
    """A sha256 of ``value`` that equal values share, for outputs too large to send.

    Values Python calls equal digest alike where it matters for test outputs: ``bool``, ``int``
    and integral ``float`` (``1 == 1.0 == True``), ``bytes`` and ``bytearray``, ``set`` and
    ``frozenset`` (in any order), ``dict`` and its standard subclasses (in any order); ``list``
    and ``tuple`` stay apart, as ``[1] != (1,)``.

    Raises:
        CodecError: For a value that is not plain builtin data.
    """
    h = hashlib.sha256()
    _feed(h, value, 0)
    return h.hexdigest()


def _feed(h: Any, v: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise CodecError("value too deep")
    t = type(v)
    if v is None:
        h.update(b"N;")
    elif t is bool or t is int:
        h.update(b"i%x;" % int(v))
    elif t is float:
        if v.is_integer():
            h.update(b"i%x;" % int(v))
        else:
            h.update(b"f" + float.hex(v).encode() + b";")
    elif t is complex:
        if v.imag == 0:
            _feed(h, v.real, depth)
        else:
            h.update(b"c" + f"{float.hex(v.real)},{float.hex(v.imag)}".encode() + b";")
    elif t is str:
        data = str.encode(v, "utf-8", "surrogatepass")
        h.update(b"s%d:" % len(data) + data)
    elif t is bytes or t is bytearray:
        h.update(b"y%d:" % len(v) + bytes(v))
    elif t is list or t is tuple:
        h.update(b"l[" if t is list else b"t[")
        flat = _flat(v)  # the same bytes as item by item, for the common all-scalar case
        if flat is not None:
            h.update(flat)
        else:
            for x in v:
                _feed(h, x, depth + 1)
        h.update(b"]")
    elif t is set or t is frozenset:
        items = sorted(digest_value(x) for x in v)
        h.update(b"S[" + "".join(items).encode() + b"]")
    elif t is dict or t in _DICT_LIKE:
        items = sorted(digest_value(k) + digest_value(x) for k, x in dict.items(v))
        h.update(b"d[" + "".join(items).encode() + b"]")
    else:
        raise CodecError(f"{t.__name__} is not a plain builtin value")


_EXACT = 2**53  # every int within this range is exactly a float64, and the reverse


def _flat(items: Any) -> bytes | None:
    """The digest bytes of a sequence of only ``str``, or only numbers, written at C speed
    (outputs of a million numbers are common); None for anything else.

    Numbers within 2**53 become one float64 array, where Python's equal numbers meet (``True ==
    1 == 1.0``, ``0.0 == -0.0``); larger ones are written one by one, exactly.
    """
    kinds = set(map(type, items))
    if kinds == {str}:
        data = [str.encode(x, "utf-8", "surrogatepass") for x in items]
        return b"".join(b"s%d:%s" % (len(d), d) for d in data)
    if not kinds or not kinds <= {bool, int, float}:
        return None
    try:
        values = array.array("d", items)  # exact types only (checked above): no __float__ to lie
    except OverflowError:  # an int past float64's range
        values = array.array("d", [_EXACT])
    # Ints past 2**53 round to at least 2**53 and fail the range check; a NaN first makes max
    # and min NaN, which fails it too: both take the exact path below.
    if -_EXACT < min(values) and max(values) < _EXACT:
        if 0.0 in values:  # -0.0 == 0.0: one sign for zeros
            values = array.array("d", [x + 0.0 for x in values])
        if sys.byteorder == "big":
            values.byteswap()  # the same digest on every machine (the ground truth is cached)
        return b"D" + values.tobytes()
    return b"".join(
        b"i%x;" % int(x)
        if type(x) is not float or x.is_integer()
        else b"f" + float.hex(x).encode() + b";"
        for x in items
    )
