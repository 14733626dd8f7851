"""Hyperparameter range shorthand (HYPERPARAMETER_RANGES) to SageMaker ParameterRanges, in one function."""

from __future__ import annotations

from typing import Any

from reviewtune.core.errors import RangesError

SCALINGS = ("Auto", "Linear", "Logarithmic", "ReverseLogarithmic")
# SageMaker's limits on a tuning job's hyperparameters (automatic-model-tuning-define-ranges: "up to 30" ranges in
# all; "up to 100" hyperparameters, static and tuned, SageMaker's own _tuning_objective_metric among them)
MAX_RANGES = 30
MAX_HYPERPARAMETERS = 100


def _number(name: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RangesError(f"range {name!r}: {key} must be a number, got {value!r}")
    return value


def format_value(value: Any) -> str:
    """How a hyperparameter value is written for SageMaker (strings only)."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def parameter_ranges(spec: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Turn ``{"lr": {"min": 1e-5, "max": 5e-5, "scaling": "Logarithmic"}, "batch": [128, 256]}`` into ParameterRanges.

    A list is Categorical; an object with min/max is Continuous, or Integer with ``"type": "Integer"``.
    """
    continuous: list[dict[str, Any]] = []
    integer: list[dict[str, Any]] = []
    categorical: list[dict[str, Any]] = []
    for name, rule in spec.items():
        if isinstance(rule, list):
            if not rule:
                raise RangesError(f"range {name!r}: a categorical range needs at least one value")
            values = [format_value(v) for v in rule]
            if len(set(values)) != len(values):
                raise RangesError(f"range {name!r}: categorical values repeat: {values}")
            categorical.append({"Name": name, "Values": values})
            continue
        if not isinstance(rule, dict) or "min" not in rule or "max" not in rule:
            raise RangesError(
                f"range {name!r} must be a list of values or an object with min and max, got {rule!r}"
            )
        low, high = _number(name, "min", rule["min"]), _number(name, "max", rule["max"])
        if low > high:
            raise RangesError(f"range {name!r}: min {low} is greater than max {high}")
        scaling = rule.get("scaling", "Auto")
        if scaling not in SCALINGS:
            raise RangesError(
                f"range {name!r}: scaling must be one of {', '.join(SCALINGS)}, got {scaling!r}"
            )
        if scaling in ("Logarithmic", "ReverseLogarithmic") and low <= 0:
            raise RangesError(f"range {name!r}: {scaling} scaling needs min > 0")
        kind = rule.get("type", "Continuous")
        entry = {"Name": name, "ScalingType": scaling}
        if kind == "Integer":
            if int(low) != low or int(high) != high:
                raise RangesError(f"range {name!r}: an Integer range needs whole min and max")
            integer.append({**entry, "MinValue": str(int(low)), "MaxValue": str(int(high))})
        elif kind == "Continuous":
            continuous.append(
                {**entry, "MinValue": format_value(float(low)), "MaxValue": format_value(float(high))}
            )
        else:
            raise RangesError(f"range {name!r}: type must be Continuous or Integer, got {kind!r}")
    ranges: dict[str, list[dict[str, Any]]] = {}
    if continuous:
        ranges["ContinuousParameterRanges"] = continuous
    if integer:
        ranges["IntegerParameterRanges"] = integer
    if categorical:
        ranges["CategoricalParameterRanges"] = categorical
    return ranges


def range_names(ranges: dict[str, list[dict[str, Any]]]) -> set[str]:
    return {entry["Name"] for entries in ranges.values() for entry in entries}
