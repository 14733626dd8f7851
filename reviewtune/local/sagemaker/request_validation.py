"""Validate a request against botocore's SageMaker service model, as the real service does.

The model carries every member's type, required members, length and value bounds, patterns and enums, so
the checks here are generic and the messages use the service's own wording::

    1 validation error detected: Value 'bad_name' at 'hyperParameterTuningJobName' failed to satisfy
    constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

import botocore.session

from .errors import ValidationError

if TYPE_CHECKING:
    from botocore.model import OperationModel, Shape

try:  # AWS patterns use \p{L}-style classes that only the `regex` package understands.
    import regex as _regex_engine
except ImportError:  # pragma: no cover - regex is installed with transformers
    _regex_engine = re


@functools.cache
def service_model():
    """The SageMaker service model that botocore ships (loaded once)."""
    return botocore.session.get_session().get_service_model("sagemaker")


def operation_model(operation: str) -> OperationModel:
    return service_model().operation_model(operation)


# Java's '.' (AWS checks patterns with Java's regex, without DOTALL) matches no line terminator; Python's only not '\n'
_JAVA_DOT = "[^\n\r\u0085\u2028\u2029]"


def _java_dots(pattern: str) -> str:
    """``pattern`` with each '.' outside a character class (and not escaped) matching what Java's does."""
    out, escaped, depth = [], False, 0
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "[":
            depth += 1
        elif char == "]" and depth:
            depth -= 1
        elif char == "." and not depth:
            out.append(_JAVA_DOT)
            continue
        out.append(char)
    return "".join(out)


@functools.cache
def _compiled(pattern: str):
    try:
        return _regex_engine.compile(_java_dots(pattern))
    except Exception:  # a pattern this engine cannot read is not checked
        return None


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _render(value: Any) -> str:
    return "null" if value is None else f"'{value}'"


def _check(shape: Shape, value: Any, path: str, errors: list[str]) -> None:
    def fail(constraint: str) -> None:
        errors.append(f"Value {_render(value)} at '{path}' failed to satisfy constraint: {constraint}")

    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        if not isinstance(value, dict):
            fail("Member must be a structure")
            return
        for name in shape.required_members:
            if value.get(name) is None:
                errors.append(
                    f"Value null at '{_join(path, name)}' failed to satisfy constraint: Member must not be null"
                )
        for name, member in shape.members.items():
            if value.get(name) is not None:
                _check(member, value[name], _join(path, name), errors)
    elif kind == "list":
        if not isinstance(value, list):
            fail("Member must be a list")
            return
        _check_size(len(value), meta, fail)
        for index, item in enumerate(value, start=1):
            _check(shape.member, item, f"{path}.{index}.member", errors)
    elif kind == "map":
        if not isinstance(value, dict):
            fail("Member must be a map")
            return
        _check_size(len(value), meta, fail)
        for key, item in value.items():
            _check(shape.key, key, f"{path}.key", errors)
            _check(shape.value, item, f"{path}.{key}", errors)
    elif kind == "string":
        if not isinstance(value, str):
            fail("Member must be a string")
            return
        _check_size(len(value), meta, fail)
        if shape.enum and value not in shape.enum:
            fail(f"Member must satisfy enum value set: [{', '.join(shape.enum)}]")
        pattern = meta.get("pattern")
        compiled = _compiled(pattern) if pattern else None
        if compiled is not None and compiled.fullmatch(value) is None:
            fail(f"Member must satisfy regular expression pattern: {pattern}")
    elif kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            fail("Member must be an integer")
            return
        _check_value(value, meta, fail)
    elif kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail("Member must be a number")
            return
        _check_value(value, meta, fail)
    elif kind == "boolean":
        if not isinstance(value, bool):
            fail("Member must be a boolean")
    elif kind == "timestamp" and (isinstance(value, bool) or not isinstance(value, (int, float, str))):
        fail("Member must be a timestamp")


def _join(path: str, name: str) -> str:
    return f"{path}.{_camel(name)}" if path else _camel(name)


def _check_size(size: int, meta: dict, fail) -> None:
    if "min" in meta and size < meta["min"]:
        fail(f"Member must have length greater than or equal to {meta['min']}")
    if "max" in meta and size > meta["max"]:
        fail(f"Member must have length less than or equal to {meta['max']}")


def _check_value(value: float, meta: dict, fail) -> None:
    if "min" in meta and value < meta["min"]:
        fail(f"Member must have value greater than or equal to {meta['min']}")
    if "max" in meta and value > meta["max"]:
        fail(f"Member must have value less than or equal to {meta['max']}")


def validate_request(operation: str, params: dict[str, Any]) -> None:
    """Raise ValidationError listing every constraint ``params`` breaks for ``operation``."""
    shape = operation_model(operation).input_shape
    if shape is None:
        return
    errors: list[str] = []
    _check(shape, params, "", errors)
    if errors:
        count = len(errors)
        noun = "error" if count == 1 else "errors"
        raise ValidationError(f"{count} validation {noun} detected: " + "; ".join(errors))
