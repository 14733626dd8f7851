"""SageMaker ParameterRanges as Optuna distributions (one function), and sampled values as hyperparameters.

Scaling: ``Linear`` and ``Auto`` sample uniformly, ``Logarithmic`` log-uniformly, ``ReverseLogarithmic``
(continuous ranges inside [0, 1) only) samples ``1 - value`` log-uniformly, so values crowd towards 1.
Sampled continuous values become hyperparameters as ``repr(float)``, integers as ``str(int)``, categorical
values exactly as given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from reviewtune.core.ranges import MAX_HYPERPARAMETERS, MAX_RANGES
from reviewtune.core.warm_start import SAGEMAKER_RESERVED

from .errors import ValidationError

CONTINUOUS = "Continuous"
INTEGER = "Integer"
CATEGORICAL = "Categorical"


@dataclass(frozen=True)
class Dimension:
    """One tunable hyperparameter."""

    name: str
    kind: str
    distribution: BaseDistribution
    reverse: bool = False

    def to_hyperparameter(self, sampled: Any) -> str:
        if self.kind == CONTINUOUS:
            value = 1.0 - float(sampled) if self.reverse else float(sampled)
            return repr(value)
        if self.kind == INTEGER:
            return str(int(sampled))
        return str(sampled)


def _number(text: str, parse, what: str, name: str) -> Any:
    try:
        value = parse(text)
    except (TypeError, ValueError):
        raise ValidationError(
            f"The {what} of hyperparameter {name!r} is not a valid number: {text!r}."
        ) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(f"The {what} of hyperparameter {name!r} must be finite: {text!r}.")
    return value


def _continuous(spec: dict[str, Any]) -> Dimension:
    name = spec["Name"]
    low = _number(spec["MinValue"], float, "MinValue", name)
    high = _number(spec["MaxValue"], float, "MaxValue", name)
    scaling = spec.get("ScalingType", "Auto")
    if low >= high:
        raise ValidationError(
            f"The MinValue ({spec['MinValue']}) of continuous hyperparameter {name!r} must be less than its "
            f"MaxValue ({spec['MaxValue']})."
        )
    if scaling == "Logarithmic":
        if low <= 0:
            raise ValidationError(
                f"Logarithmic scaling of hyperparameter {name!r} needs MinValue greater than 0, got {spec['MinValue']}."
            )
        return Dimension(name, CONTINUOUS, FloatDistribution(low, high, log=True))
    if scaling == "ReverseLogarithmic":
        if low < 0 or high >= 1:
            raise ValidationError(
                f"ReverseLogarithmic scaling of hyperparameter {name!r} needs 0 <= MinValue < MaxValue < 1, "
                f"got {spec['MinValue']}..{spec['MaxValue']}."
            )
        return Dimension(name, CONTINUOUS, FloatDistribution(1.0 - high, 1.0 - low, log=True), reverse=True)
    return Dimension(name, CONTINUOUS, FloatDistribution(low, high))


def _integer(spec: dict[str, Any]) -> Dimension:
    name = spec["Name"]
    low = _number(spec["MinValue"], int, "MinValue", name)
    high = _number(spec["MaxValue"], int, "MaxValue", name)
    scaling = spec.get("ScalingType", "Auto")
    if low > high:
        raise ValidationError(
            f"The MinValue ({low}) of integer hyperparameter {name!r} must not be greater than its MaxValue ({high})."
        )
    if scaling == "ReverseLogarithmic":
        raise ValidationError(
            f"ReverseLogarithmic scaling is only valid for continuous hyperparameters, not integer {name!r}."
        )
    if scaling == "Logarithmic":
        if low <= 0:
            raise ValidationError(
                f"Logarithmic scaling of hyperparameter {name!r} needs MinValue greater than 0, got {low}."
            )
        return Dimension(name, INTEGER, IntDistribution(low, high, log=True))
    return Dimension(name, INTEGER, IntDistribution(low, high))


def _categorical(spec: dict[str, Any]) -> Dimension:
    name = spec["Name"]
    values = list(spec["Values"])
    if len(set(values)) != len(values):
        raise ValidationError(f"The Values of categorical hyperparameter {name!r} must be unique: {values}.")
    return Dimension(name, CATEGORICAL, CategoricalDistribution(values))


_BUILDERS = {
    "ContinuousParameterRanges": _continuous,
    "IntegerParameterRanges": _integer,
    "CategoricalParameterRanges": _categorical,
}


def search_space(
    parameter_ranges: dict[str, Any] | None, static: dict[str, str] | None = None
) -> dict[str, Dimension]:
    """Turn ParameterRanges into named Dimensions; raises ValidationError for an inconsistent range."""
    parameter_ranges = parameter_ranges or {}
    if parameter_ranges.get("AutoParameters"):
        raise ValidationError(
            "AutoParameters are not supported by the local SageMaker service; give explicit ranges."
        )
    space: dict[str, Dimension] = {}
    for key, build in _BUILDERS.items():
        for spec in parameter_ranges.get(key) or []:
            dimension = build(spec)
            if dimension.name in space:
                raise ValidationError(
                    f"The hyperparameter {dimension.name!r} appears in more than one parameter range."
                )
            if static and dimension.name in static:
                raise ValidationError(
                    f"The hyperparameter {dimension.name!r} is both tunable (ParameterRanges) and static "
                    "(StaticHyperParameters); remove it from one of them."
                )
            space[dimension.name] = dimension
    if not space:
        raise ValidationError("ParameterRanges must define at least one hyperparameter range to tune.")
    if len(space) > MAX_RANGES:
        raise ValidationError(f"ParameterRanges define {len(space)} hyperparameter ranges; at most {MAX_RANGES} are "
                              "allowed in all.")
    total = len(set(static or {}) | set(space) | SAGEMAKER_RESERVED)
    if total > MAX_HYPERPARAMETERS:
        raise ValidationError(f"The tuning job has {total} hyperparameters (static, tunable and "
                              f"{', '.join(sorted(SAGEMAKER_RESERVED))}); at most {MAX_HYPERPARAMETERS} are allowed.")
    return space


def grid(space: dict[str, Dimension]) -> dict[str, list[Any]]:
    """The grid of a Grid search; only categorical ranges are allowed, as in SageMaker."""
    others = [d.name for d in space.values() if d.kind != CATEGORICAL]
    if others:
        raise ValidationError(
            f"The Grid strategy supports only CategoricalParameterRanges; {', '.join(others)} "
            "must be categorical."
        )
    return {name: list(d.distribution.choices) for name, d in space.items()}


def grid_size(space: dict[str, Dimension]) -> int:
    return math.prod(len(values) for values in grid(space).values())
