"""A direct path for DynamoDB's attribute values through moto's response serializer, in the test process.

moto (5.2) writes every response by walking botocore's shapes; a DynamoDB AttributeValue is a structure of ten
members (S, N, B, SS, NS, BS, M, L, NULL, BOOL), each looked up under several aliases, recursively: a run's item of a
few hundred values costs tens of milliseconds per GetItem, most of the time of the functional tests. The values
moto holds are already in the wire's shape, so ``attribute_value`` writes them directly: the same JSON the walk
gives (tests/unit/test_dynamodb_values.py compares the two), with binary values base64-encoded as the walk does.
Anything that is not a plain dict of those members goes the usual way.
"""

from __future__ import annotations

import base64
from typing import Any

from moto.core import serialize

_SCALARS = frozenset({"S", "N", "NULL", "BOOL"})
_SETS = frozenset({"SS", "NS"})
_MEMBERS = _SCALARS | _SETS | {"B", "BS", "M", "L"}


class NotPlain(Exception):
    """The value is not a plain attribute value: let moto's walk write it."""


def _blob(value: Any) -> str:
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, bytes | bytearray):
        raise NotPlain
    return base64.b64encode(value).strip().decode("utf-8")


def attribute_value(value: Any) -> dict[str, Any]:
    """The JSON of one attribute value; NotPlain when moto's walk should write it."""
    if not isinstance(value, dict) or not value or not value.keys() <= _MEMBERS:
        raise NotPlain
    out: dict[str, Any] = {}
    for kind, inner in value.items():
        if inner is None:
            continue  # the walk leaves out a member whose value is None
        if kind in ("S", "N"):
            out[kind] = str(inner) if inner not in ({}, []) else inner  # as moto writes a string
        elif kind in ("NULL", "BOOL"):
            if not isinstance(inner, bool):
                raise NotPlain
            out[kind] = inner
        elif kind in _SETS:
            out[kind] = [str(member) for member in inner]
        elif kind == "B":
            out[kind] = _blob(inner)
        elif kind == "BS":
            out[kind] = [_blob(member) for member in inner]
        elif kind == "M":
            if not isinstance(inner, dict):
                raise NotPlain
            out[kind] = {name: attribute_value(member) for name, member in inner.items()}
        else:  # L
            if not isinstance(inner, list):
                raise NotPlain
            out[kind] = [attribute_value(member) for member in inner]
    return out


_walk = serialize.BaseJSONSerializer._serialize_type_structure


def _serialize_type_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
    if shape.name == "AttributeValue" and key:
        try:
            serialized[self.get_serialized_name(shape, key)] = attribute_value(value)
            return
        except NotPlain:
            pass
    _walk(self, serialized, value, shape, key)


def write_directly() -> None:
    """Install the direct path on moto's JSON serializers (idempotent)."""
    serialize.BaseJSONSerializer._serialize_type_structure = _serialize_type_structure  # type: ignore[method-assign]


def walk_only() -> None:
    """Put moto's own walk back (the comparison test uses it)."""
    serialize.BaseJSONSerializer._serialize_type_structure = _walk  # type: ignore[method-assign]
