"""The ``AWS::LanguageExtensions`` transform, offline, as far as template.yaml uses it: ``Fn::FindInMap`` with a
``DefaultValue`` (its fourth argument), resolved to the mapping's entry or to that default.

CloudFormation runs this transform before the SAM transform; the local stack does the same, before samtranslator. The
transform's other functions (``Fn::ForEach``, ``Fn::Length``, ``Fn::ToJsonString``) are refused with a clear error
rather than deployed unresolved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NAME = "AWS::LanguageExtensions"
_UNSUPPORTED = ("Fn::ForEach", "Fn::Length", "Fn::ToJsonString")


class LanguageExtensionError(ValueError):
    """The template uses a part of AWS::LanguageExtensions that cannot be applied offline."""


def apply(template: Mapping[str, Any], parameters: Mapping[str, str], region: str) -> dict[str, Any]:
    """``template`` with every ``Fn::FindInMap`` that has a ``DefaultValue`` resolved, for a stack of ``parameters``
    in ``region``; the Mappings section and the three-argument lookups are left to CloudFormation."""
    mappings = template.get("Mappings") or {}

    def key(node: Any) -> str:
        if isinstance(node, str):
            return node
        if isinstance(node, dict) and set(node) == {"Ref"}:
            name = node["Ref"]
            if name == "AWS::Region":
                return region
            if name in parameters:
                return str(parameters[name])
        raise LanguageExtensionError(f"Fn::FindInMap key {node!r} cannot be resolved offline")

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        for name in node:
            if isinstance(name, str) and name.startswith(_UNSUPPORTED):
                raise LanguageExtensionError(f"{name} ({NAME}) cannot be applied offline")
        lookup = node.get("Fn::FindInMap")
        if len(node) == 1 and isinstance(lookup, list) and len(lookup) == 4:
            map_name, first, second, default = lookup
            if not (isinstance(default, dict) and set(default) == {"DefaultValue"}):
                raise LanguageExtensionError(f"Fn::FindInMap's fourth argument must be {{DefaultValue: ...}}, got {default!r}")
            found = (mappings.get(key(map_name)) or {}).get(key(first), {}).get(key(second))
            return walk(default["DefaultValue"]) if found is None else found
        return {name: walk(value) for name, value in node.items()}

    resolved = {name: (value if name == "Mappings" else walk(value)) for name, value in template.items()}
    transforms = resolved.get("Transform")
    remaining = [t for t in ([transforms] if isinstance(transforms, str) else list(transforms or [])) if t != NAME]
    if remaining:
        resolved["Transform"] = remaining[0] if len(remaining) == 1 else remaining
    else:
        resolved.pop("Transform", None)
    return resolved
