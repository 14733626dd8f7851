"""Load a CloudFormation / SAM template written in YAML, short-form tags (!Ref, !Sub, !GetAtt ...) included."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml


class _TemplateLoader(yaml.SafeLoader):
    pass


def _short_form(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    key = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {key: value}


_TemplateLoader.add_multi_constructor("!", _short_form)


def load_template(path: str | Path) -> dict[str, Any]:
    """The template as plain data, short forms turned into their long forms ({"Fn::Sub": ...})."""
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_TemplateLoader)  # noqa: S506 - a SafeLoader subclass


def condition_holds(template: dict[str, Any], name: str, resolve: Callable[[Any], Any]) -> bool:
    """Evaluate the template's condition ``name`` (Fn::Equals / Not / And / Or / Condition); ``resolve`` gives the
    value of any other node (a Ref, a literal). Fn::Equals compares as strings, as CloudFormation does."""

    def evaluate(node: Any) -> Any:
        if isinstance(node, dict) and len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Fn::Equals":
                return str(evaluate(arg[0])) == str(evaluate(arg[1]))
            if key == "Fn::Not":
                return not evaluate(arg[0])
            if key == "Fn::And":
                return all(evaluate(a) for a in arg)
            if key == "Fn::Or":
                return any(evaluate(a) for a in arg)
            if key == "Condition":
                return evaluate(template["Conditions"][arg])
        return resolve(node)

    return bool(evaluate(template["Conditions"][name]))
