"""What every List* operation shares: time filters, sorting, and NextToken pagination."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from .errors import ValidationError

DEFAULT_MAX_RESULTS = 10


def _epoch(value: Any, field: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise ValidationError(f"{field} must be a timestamp, got {value!r}.")


def paginate(items: list[dict[str, Any]], params: dict[str, Any], key: str) -> dict[str, Any]:
    size = params.get("MaxResults") or DEFAULT_MAX_RESULTS
    token = params.get("NextToken")
    start = 0
    if token:
        try:
            start = int(token)
        except ValueError:
            raise ValidationError(
                f"Invalid NextToken {token!r}: pass the NextToken of the previous response."
            ) from None
        if not 0 <= start <= len(items):
            raise ValidationError(
                f"Invalid NextToken {token!r}: pass the NextToken of the previous response."
            )
    page = items[start : start + size]
    response: dict[str, Any] = {key: page}
    if start + size < len(items):
        response["NextToken"] = str(start + size)
    return response


def sort(
    items: list[dict[str, Any]], params: dict[str, Any], keys: dict[str, str], default: str
) -> list[dict[str, Any]]:
    sort_by = params.get("SortBy") or default
    field = keys[sort_by]
    reverse = (params.get("SortOrder") or "Ascending") == "Descending"
    present = [item for item in items if item.get(field) is not None]
    return sorted(present, key=lambda item: (item[field], item.get("CreationTime", 0)), reverse=reverse)


def filter_times(items: Iterable[dict[str, Any]], params: dict[str, Any]) -> list[dict[str, Any]]:
    bounds = [
        ("CreationTimeAfter", "CreationTime", 1),
        ("CreationTimeBefore", "CreationTime", -1),
        ("LastModifiedTimeAfter", "LastModifiedTime", 1),
        ("LastModifiedTimeBefore", "LastModifiedTime", -1),
    ]
    out = []
    for item in items:
        keep = True
        for param, field, direction in bounds:
            if params.get(param) is None:
                continue
            limit = _epoch(params[param], param)
            value = item.get(field, 0)
            keep &= value > limit if direction > 0 else value < limit
        if keep:
            out.append(item)
    return out


def filter_name_and_status(items: Iterable[dict[str, Any]], params: dict[str, Any], name: str, status: str):
    contains = (params.get("NameContains") or "").lower()
    wanted = params.get("StatusEquals")
    return [
        item
        for item in items
        if contains in item[name].lower() and (wanted is None or item[status] == wanted)
    ]
