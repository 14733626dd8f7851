"""The champion of each dataset: the run whose model serves, kept as ONE item in the runs table.

Item layout (key ``run_id = "champion#<dataset>"``, so no new table is needed)::

    run_id            "champion#team-a/reviews.tsv"
    champion_of       the dataset
    champion_run_id   the run whose model is champion
    accuracy          its test accuracy (0..1)
    test_rows         how many test reviews it was measured on
    test_split        what identifies that test split (e.g. the S3 URI + ETag of test.tsv)
    model_package_arn its version in the Model Registry (optional)
    changed_at        when it became champion (ISO 8601, UTC)
    version           1, 2, ... one more at every change
    history           [{run_id, at, why, accuracy}], newest last, the last HISTORY_MAX changes

The item deliberately has no ``dataset``, ``status`` or ``created_at`` attribute: the table's ``by_dataset``
and ``by_status`` indexes are keyed on them, so the champion pointer stays out of every run listing.

The pointer changes only by a conditional write that names the champion the writer saw
(``expected_run_id``; None for "there is no champion yet"); if someone changed it meanwhile the write fails
with ``ChampionChanged`` and nothing is lost: read again, decide again.

``decide`` compares a challenger with the champion: it wins only if it is better by ``margin_points``
percentage points on the same test split, and the decision carries the sentence people read, e.g.
"challenger 75.2 % vs 73.1 % on the same 309 test reviews".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from reviewtune.core.errors import ReviewtuneError
from reviewtune.core.runs import from_item, to_item

CHAMPION_KEY_PREFIX = "champion#"
DEFAULT_MARGIN_POINTS = 0.5
HISTORY_MAX = 100


class ChampionChanged(ReviewtuneError):
    """The champion is no longer the one the caller expected; read it again and decide again."""


def champion_key(dataset: str) -> str:
    """The runs-table key of a dataset's champion item."""
    if not dataset:
        raise ValueError("the dataset name is empty")
    return f"{CHAMPION_KEY_PREFIX}{dataset}"


def is_champion_key(run_id: str) -> bool:
    return run_id.startswith(CHAMPION_KEY_PREFIX)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def percent(accuracy: float) -> str:
    """0.7523 -> '75.2 %'."""
    return f"{accuracy * 100:.1f} %"


@dataclass(frozen=True)
class Champion:
    dataset: str
    run_id: str
    accuracy: float
    test_rows: int
    test_split: str
    changed_at: str
    version: int
    model_package_arn: str | None = None
    history: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Champion:
        item = from_item(item)
        return cls(
            dataset=item["champion_of"],
            run_id=item["champion_run_id"],
            accuracy=float(item["accuracy"]),
            test_rows=int(item["test_rows"]),
            test_split=item["test_split"],
            changed_at=item["changed_at"],
            version=int(item["version"]),
            model_package_arn=item.get("model_package_arn"),
            history=tuple(item.get("history") or ()),
        )


@dataclass(frozen=True)
class Decision:
    """Whether the challenger becomes champion, and the sentence that says why."""

    promote: bool
    reason: str


def decide(
    challenger_accuracy: float,
    champion_accuracy: float | None,
    margin_points: float = DEFAULT_MARGIN_POINTS,
    *,
    test_rows: int | None = None,
    same_test_split: bool = True,
) -> Decision:
    """Challenger against champion (accuracies 0..1): promote only if better by ``margin_points`` points.

    No champion yet: the challenger becomes the first. A champion measured on another test split cannot be
    compared: it stays (a person can promote the challenger by hand).
    """
    for name, value in (("challenger", challenger_accuracy), ("champion", champion_accuracy)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"the {name} accuracy must be between 0 and 1, got {value}")
    if margin_points < 0:
        raise ValueError(f"the margin must not be negative, got {margin_points}")
    on_rows = f" on {test_rows} test reviews" if test_rows else ""
    if champion_accuracy is None:
        return Decision(True, f"first champion: challenger {percent(challenger_accuracy)}{on_rows}")
    if not same_test_split:
        return Decision(
            False,
            f"champion kept: challenger {percent(challenger_accuracy)} vs {percent(champion_accuracy)} were "
            "measured on different test splits and cannot be compared; promote the challenger by hand if wanted",
        )
    gain = (challenger_accuracy - champion_accuracy) * 100
    same_rows = f" on the same {test_rows} test reviews" if test_rows else " on the same test split"
    comparison = f"challenger {percent(challenger_accuracy)} vs {percent(champion_accuracy)}{same_rows}"
    # Rounded to 1e-9 so that 75.5 % vs 75.0 % with a 0.5 margin counts as reaching it despite float error.
    if round(gain, 9) >= margin_points and gain > 0:
        return Decision(True, f"{comparison} (+{gain:.1f} points, margin {margin_points:g})")
    return Decision(False, f"champion kept: {comparison} ({gain:+.1f} points, margin {margin_points:g})")


def get_champion(table: Any, dataset: str) -> Champion | None:
    """The dataset's champion, or None when it has none yet (strongly consistent read)."""
    item = table.get_item(Key={"run_id": champion_key(dataset)}, ConsistentRead=True).get("Item")
    return Champion.from_item(item) if item else None


def set_champion(
    table: Any,
    dataset: str,
    *,
    run_id: str,
    accuracy: float,
    test_rows: int,
    test_split: str,
    why: str,
    expected_run_id: str | None,
    model_package_arn: str | None = None,
    at: str | None = None,
) -> Champion:
    """Make ``run_id`` the champion if the champion is still ``expected_run_id`` (None: no champion yet).

    Appends {run_id, at, why, accuracy} to the history. Raises ChampionChanged when the condition fails.
    """
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must be between 0 and 1, got {accuracy}")
    at = at or _now()
    current = get_champion(table, dataset)
    if (current.run_id if current else None) != expected_run_id:
        raise ChampionChanged(
            f"the champion of {dataset!r} is {current.run_id if current else 'nobody'}, not "
            f"{expected_run_id or 'nobody'} as expected"
        )
    history = [
        *(current.history if current else ()),
        {"run_id": run_id, "at": at, "why": why, "accuracy": accuracy},
    ]
    champion = Champion(
        dataset=dataset,
        run_id=run_id,
        accuracy=accuracy,
        test_rows=test_rows,
        test_split=test_split,
        changed_at=at,
        version=(current.version if current else 0) + 1,
        model_package_arn=model_package_arn,
        history=tuple(history[-HISTORY_MAX:]),
    )
    item = {
        "run_id": champion_key(dataset),
        "champion_of": dataset,
        "champion_run_id": run_id,
        "accuracy": accuracy,
        "test_rows": test_rows,
        "test_split": test_split,
        "changed_at": at,
        "version": champion.version,
        "history": list(champion.history),
    }
    if model_package_arn:
        item["model_package_arn"] = model_package_arn
    if expected_run_id is None:
        condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(run_id)"}
    else:
        condition = {
            "ConditionExpression": "champion_run_id = :expected AND version = :version",
            "ExpressionAttributeValues": to_item({":expected": expected_run_id, ":version": current.version}),
        }
    try:
        table.put_item(Item=to_item(item), **condition)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            raise ChampionChanged(
                f"the champion of {dataset!r} changed while {run_id} was being promoted; read it again"
            ) from error
        raise
    return champion


def promote_if_better(
    table: Any,
    dataset: str,
    *,
    run_id: str,
    accuracy: float,
    test_rows: int,
    test_split: str,
    margin_points: float = DEFAULT_MARGIN_POINTS,
    model_package_arn: str | None = None,
) -> tuple[Decision, Champion | None]:
    """Compare a succeeded run with the dataset's champion and promote it if it wins.

    Returns the decision and the champion afterwards (None only if there is none).
    """
    current = get_champion(table, dataset)
    decision = decide(
        accuracy,
        current.accuracy if current else None,
        margin_points,
        test_rows=test_rows,
        same_test_split=current is None or current.test_split == test_split,
    )
    if not decision.promote:
        return decision, current
    champion = set_champion(
        table,
        dataset,
        run_id=run_id,
        accuracy=accuracy,
        test_rows=test_rows,
        test_split=test_split,
        why=decision.reason,
        expected_run_id=current.run_id if current else None,
        model_package_arn=model_package_arn,
    )
    return decision, champion


def promote_manually(
    table: Any,
    dataset: str,
    *,
    run_id: str,
    accuracy: float,
    test_rows: int,
    test_split: str,
    reason: str,
    expected_run_id: str | None,
    model_package_arn: str | None = None,
) -> Champion:
    """A person makes ``run_id`` the champion; the history says "promoted manually: <reason>"."""
    if not reason.strip():
        raise ValueError("a manual promotion needs a reason")
    return set_champion(
        table,
        dataset,
        run_id=run_id,
        accuracy=accuracy,
        test_rows=test_rows,
        test_split=test_split,
        why=f"promoted manually: {reason.strip()}",
        expected_run_id=expected_run_id,
        model_package_arn=model_package_arn,
    )
