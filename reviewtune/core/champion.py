"""The champion of each dataset: the run whose model serves, kept as ONE item in the runs table.

Item layout (key ``run_id = "champion#<dataset>"``, so no new table is needed)::

    run_id            "champion#team-a/reviews.tsv"
    kind              "champion" (the sparse ``by_champion`` index lists every dataset's champion by it)
    champion_of       the dataset
    champion_run_id   the run whose model is champion
    accuracy          its test accuracy (0..1)
    test_rows         how many test reviews it was measured on
    test_split        what identifies that test split (the SHA-256 of its test TSV)
    model_package_arn its version in the Model Registry (optional)
    changed_at        when it became champion (ISO 8601, UTC)
    version           1, 2, ... one more at every change
    history           [{run_id, at, why, accuracy, by?}], newest last, the last HISTORY_MAX changes
    dethroned         {run_id: {model_package_arn, since, replaced_by, run_id, version}}: champions replaced whose package
                      approval is still to be settled (former_champions.py), noted by the write that moved the pointer
                      (every move also marks the dataset for the reconciler's next pass: champion_rotation.py)
    approval_refused_since  when SageMaker first refused to approve this champion's package (former_champions.py;
                      gone once it is Approved, and with the next champion)
    package_rejected  {found_at, description?, deleted?}: the champion's package was found Rejected in the Model
                      Registry, or ``deleted`` from it (a person's decision: reviewtune does neither). It is not
                      approved again, and the next
                      run of the dataset that succeeds takes its place without a comparison (former_champions.py;
                      gone once the package is Approved again, and with the next champion)

The item deliberately has no ``dataset``, ``status`` or ``created_at`` attribute: the table's ``by_dataset``
and ``by_status`` indexes are keyed on them, so the champion pointer stays out of every run listing.

The pointer changes only by a conditional write that names the champion the writer saw
(``expected_run_id``; None for "there is no champion yet"); if someone changed it meanwhile the write fails
with ``ChampionChanged`` and nothing is lost: read again, decide again.

A run being recorded moves the pointer in ONE transaction with its own final write (``run_update``: the run's
EVALUATING -> SUCCEEDED, with its results and message): a run ended meanwhile (the reconciler at its deadline) never
becomes champion (``RunMovedOn``), and no run is champion without having SUCCEEDED.

A challenger is compared with the champion only through a ``Comparison``: ONE evaluation job measured both
models on the same test reviews of the challenger's split, leaving out the reviews the champion was trained on.
``decide`` then promotes the challenger only if it is better by ``margin_points`` percentage points and, where the
job counted the reviews only one of the two got right, only if so uneven a split of them is unlikely by chance
(McNemar's exact test, ``max_p_value``): on a few hundred test reviews, one model two or three reviews ahead of
another equal to it is common, and a champion should not change on a coin's throw. The decision carries the
sentence people read, e.g. "new champion: challenger 75.20 % vs champion 73.10 % on the same 309 test reviews".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from reviewtune.core import aws_errors, champion_rotation, display
from reviewtune.core.errors import ReviewtuneError
from reviewtune.core.formats import MAX_FILE_BYTES
from reviewtune.core.guessing import MostCommonClass
from reviewtune.core.runs import from_item, to_item

CHAMPION_KEY_PREFIX = "champion#"
CHAMPIONS_INDEX = "by_champion"
CHAMPION_KIND = "champion"
DEFAULT_MARGIN_POINTS = 0.5
# The highest McNemar p-value at which a challenger ahead by the margin replaces the champion (ChampionMaxPValue):
# 0.05, the chance of so uneven a split of the reviews only one model got right if both models were as good.
DEFAULT_MAX_P_VALUE = 0.05
# McNemar's p-value in whole numbers up to this many reviews right by one model only (about 0.05 s at the most)
MCNEMAR_EXACT_MAX = 20_000
# A comparison on fewer test reviews than this says nothing either way (a few reviews left once those the champion
# was trained on are out: a file dropped again with most of its rows): the champion stays. ChampionMinComparedReviews.
DEFAULT_MIN_COMPARED_REVIEWS = 30
HISTORY_MAX = 100
MANUAL_PREFIX = "promoted manually: "  # the pointer's history entry of a person's promotion: this, then the reason
TRIES = 3

# What became of a challenger (the run item's ``champion.decision``).
FIRST = "first champion"
PROMOTED = "promoted"
KEPT = "kept"
NOT_COMPARED = "not compared"
GUESSING = "no better than guessing"  # not champion: its test accuracy does not beat the most common class's share
ALREADY = "already champion"


class ChampionChanged(ReviewtuneError):
    """The champion is no longer the one the caller expected; read it again and decide again."""


class RunMovedOn(ReviewtuneError):
    """The challenging run's own write found it no longer in the status it had to be in: nothing was written."""


def champion_key(dataset: str) -> str:
    """The runs-table key of a dataset's champion item."""
    if not dataset:
        raise ValueError("the dataset name is empty")
    return f"{CHAMPION_KEY_PREFIX}{dataset}"


def is_champion_key(run_id: str) -> bool:
    return run_id.startswith(CHAMPION_KEY_PREFIX)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


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
    dethroned: dict[str, dict[str, Any]] = field(default_factory=dict)
    approval_refused_since: str | None = None
    package_rejected: dict[str, Any] | None = None

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
            dethroned=dict(item.get("dethroned") or {}),
            approval_refused_since=item.get("approval_refused_since"),
            package_rejected=item.get("package_rejected"),
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "history": list(self.history)}


def _count(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"comparison.{name} must be a whole number >= 0, got {value!r}")
    if value > MAX_FILE_BYTES:  # a review takes a byte at least: no file the start takes holds more
        raise ValueError(f"comparison.{name} counts {value} reviews, more than a file of at most "
                         f"{MAX_FILE_BYTES:,} bytes holds")
    return value


def _accuracy(value: Any, name: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise ValueError(f"comparison.{name} must be a number between 0 and 1, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Comparison:
    """The challenger and the champion measured by ONE evaluation job on the same test reviews.

    ``rows_left_out`` test reviews were left out because the champion was trained on them (``overlap_checked``
    is False when the champion's training hashes were not available, so nothing could be left out).
    The accuracies are None when no row was left to compare on.
    """

    champion_run_id: str
    rows_compared: int
    rows_left_out: int
    overlap_checked: bool
    challenger_accuracy: float | None
    champion_accuracy: float | None
    # the compared reviews only the challenger got right, and only the champion (None: an evaluation job that did
    # not count them, made before they were)
    challenger_only_correct: int | None = None
    champion_only_correct: int | None = None

    @property
    def discordant(self) -> tuple[int, int] | None:
        """(only the challenger right, only the champion right), when counted."""
        if self.challenger_only_correct is None or self.champion_only_correct is None:
            return None
        return self.challenger_only_correct, self.champion_only_correct

    @classmethod
    def from_evaluation(cls, section: Any) -> Comparison:
        """The ``comparison`` object of evaluation.json, checked (ValueError with the field at fault)."""
        if not isinstance(section, Mapping):
            raise ValueError("comparison must be an object")
        run_id = section.get("champion_run_id")
        if not isinstance(run_id, str) or not run_id:
            raise ValueError("comparison.champion_run_id must be the champion's run id")
        rows = _count(section.get("rows_compared"), "rows_compared")
        left_out = _count(section.get("rows_left_out"), "rows_left_out")
        checked = section.get("overlap_checked")
        if not isinstance(checked, bool):
            raise ValueError("comparison.overlap_checked must be true or false")
        if rows == 0:
            return cls(run_id, 0, left_out, checked, None, None)
        only = {name: None if section.get(name) is None else _count(section[name], name)
                for name in ("challenger_only_correct", "champion_only_correct")}
        if None not in only.values():
            b, c = only.values()
            if b + c > rows:
                raise ValueError(f"comparison: {b + c} reviews right by one model only, of {rows} compared")
            right = [section.get(name) for name in ("challenger_correct", "champion_correct")]
            if all(isinstance(count, int) for count in right) and b - c != right[0] - right[1]:
                raise ValueError(f"comparison: {b} reviews right by the challenger only and {c} by the champion only "
                                 f"do not make the {right[0]} and {right[1]} right of each")
        return cls(
            run_id,
            rows,
            left_out,
            checked,
            _accuracy(section.get("challenger_accuracy"), "challenger_accuracy"),
            _accuracy(section.get("champion_accuracy"), "champion_accuracy"),
            **only,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    """Whether the challenger becomes champion, and the sentence that says why."""

    promote: bool
    reason: str


def mcnemar_p(challenger_only: int, champion_only: int) -> float:
    """McNemar's exact two-sided p-value: the chance, if either model were as likely as the other to be the one
    right on a review only one of them got right, of a split of those reviews at least this uneven (1.0 for none).

    Exact in whole numbers up to ``MCNEMAR_EXACT_MAX`` such reviews (their cost grows with the square of the count);
    beyond, in floating point from the tail's largest term down, stopping where the terms no longer count: a
    fraction of a second at any count a comparison may hold (Comparison.from_evaluation), so that no evaluation.json
    can hold a decision (and its function) up."""
    n = challenger_only + champion_only
    smaller = min(challenger_only, champion_only)
    if n <= MCNEMAR_EXACT_MAX:
        term = tail = 1  # C(n, 0); each next term from the one before
        for i in range(1, smaller + 1):
            term = term * (n - i + 1) // i
            tail += term
        return min(1.0, 2 * tail / 2**n)
    # C(n, i) / C(n, smaller) for i = smaller, smaller - 1, ...: each term at most the one before (smaller <= n / 2)
    largest = math.lgamma(n + 1) - math.lgamma(smaller + 1) - math.lgamma(n - smaller + 1) - n * math.log(2)
    term = tail = 1.0
    for i in range(smaller, 0, -1):
        term *= i / (n - i + 1)
        tail += term
        if term < tail * 1e-17:
            break
    return min(1.0, 2 * math.exp(largest) * tail)


def decide(
    challenger_accuracy: float,
    champion_accuracy: float | None,
    margin_points: float = DEFAULT_MARGIN_POINTS,
    *,
    test_rows: int | None = None,
    discordant: tuple[int, int] | None = None,
    max_p_value: float = DEFAULT_MAX_P_VALUE,
) -> Decision:
    """Challenger against champion (accuracies 0..1, on the same test reviews): promote only if better by
    ``margin_points`` percentage points and, with ``discordant`` (the reviews only the challenger got right, and only
    the champion), only if McNemar's p-value of that split is at most ``max_p_value``. No champion yet: the
    challenger becomes the first."""
    for name, value in (("challenger", challenger_accuracy), ("champion", champion_accuracy)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"the {name} accuracy must be between 0 and 1, got {value}")
    if margin_points < 0:
        raise ValueError(f"the margin must not be negative, got {margin_points}")
    if not 0 < max_p_value <= 1:
        raise ValueError(f"the largest p-value must be above 0 and at most 1, got {max_p_value}")
    if champion_accuracy is None:
        on_rows = f" on {display.count(test_rows)} test reviews" if test_rows else ""
        return Decision(True, f"first champion: challenger {display.percent(challenger_accuracy)}{on_rows}")
    gain = (challenger_accuracy - champion_accuracy) * 100
    same_rows = f" on the same {display.count(test_rows)} test reviews" if test_rows else " on the same test reviews"
    comparison = (f"challenger {display.percent(challenger_accuracy)} vs champion {display.percent(champion_accuracy)}"
                  f"{same_rows}")
    # Rounded to 1e-9 so that 75.5 % vs 75.0 % with a 0.5 margin counts as reaching it despite float error.
    ahead = round(gain, 9) >= margin_points and gain > 0
    why = f"{_difference_shown(gain, margin_points)}, margin {margin_points:g} points"
    promote = ahead
    if discordant is not None:
        p_value = mcnemar_p(*discordant)
        # two-sided: ahead also in the reviews that tell the two apart (the counts and the accuracies agree when the
        # evaluation job wrote both: Comparison.from_evaluation)
        chance = ahead and (p_value > max_p_value or discordant[0] <= discordant[1])
        promote = ahead and not chance
        unlikely = ("" if not chance else f", over the {max_p_value:g} a new champion needs, so the lead may be chance"
                    if p_value > max_p_value else ", but those favour the champion")
        why += (f"; {display.count(discordant[0])} reviews right by the challenger only, "
                f"{display.count(discordant[1])} by the champion only: McNemar p {_p_shown(p_value, max_p_value)}"
                f"{unlikely}")
    verdict = "new champion" if promote else "champion kept"
    return Decision(promote, f"{verdict}: {comparison} ({why})")


def _p_shown(p_value: float, max_p_value: float) -> str:
    """The p-value with three decimals, or as many more as it takes to fall on its side of ``max_p_value``."""
    shown, decimals = _on_its_side(p_value, 3, lambda value: value > max_p_value)
    return f"{shown:.{decimals}f}"


def _difference_shown(gain: float, margin_points: float) -> str:
    """The gain in points with two decimals, or as many more as it takes for the figure to fall on the side of the
    margin it is on: a gain of 0.4975 points under a 0.5 margin reads ``+0.498 points``, not ``+0.50``."""
    shown, decimals = _on_its_side(gain, 2, lambda value: round(value, 9) >= margin_points and value > 0)
    return f"{shown:+.{decimals}f} points"


def _on_its_side(value: float, decimals: int, side: Callable[[float], bool]) -> tuple[float, int]:
    """``value`` rounded to ``decimals``, or to as many more (up to 9) as it takes for ``side`` to say of the rounded
    figure what it says of the value: a figure shown never reads as the other side of the bound that decided."""
    for places in range(decimals, 10):
        shown = round(value, places)
        if side(shown) is side(value):
            break
    return shown, places


def get_champion(table: Any, dataset: str) -> Champion | None:
    """The dataset's champion, or None when it has none yet (strongly consistent read)."""
    item = table.get_item(Key={"run_id": champion_key(dataset)}, ConsistentRead=True).get("Item")
    return Champion.from_item(item) if item else None


def champion_datasets(table: Any, after: str | None = None) -> Iterator[str]:
    """Every dataset that has a champion, in name order (the sparse by_champion index; never a table scan); only those
    whose name comes after ``after``, when given. Pages are read as the caller goes on."""
    condition = Key("kind").eq(CHAMPION_KIND)
    if after is not None:
        condition = condition & Key("champion_of").gt(after)
    query: dict[str, Any] = {"IndexName": CHAMPIONS_INDEX, "KeyConditionExpression": condition}
    while True:
        response = table.query(**query)
        for item in response["Items"]:
            yield item["champion_of"]
        if "LastEvaluatedKey" not in response:
            return
        query["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def list_champions(table: Any) -> list[Champion]:
    """Every dataset's champion, by dataset name (each read again, strongly consistent)."""
    found = (get_champion(table, dataset) for dataset in champion_datasets(table))
    return [champion for champion in found if champion is not None]


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
    by: str | None = None,
    run_update: dict[str, Any] | None = None,
    expect_rejected: bool = False,
) -> Champion:
    """Make ``run_id`` the champion if the champion is still ``expected_run_id`` (None: no champion yet), and, with
    ``expect_rejected``, its package still noted Rejected (a decision that rests on it: approved again meanwhile, the
    champion is compared instead).

    Appends {run_id, at, why, accuracy[, by]} to the history. Raises ChampionChanged when the condition fails.
    ``run_update``: the run's own conditional UpdateItem (``RunsRepository.transition_request``), written in the
    same transaction; RunMovedOn when its condition fails, and nothing is written.
    """
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must be between 0 and 1, got {accuracy}")
    at = at or _now()
    current = get_champion(table, dataset)
    if expect_rejected and current is not None and current.run_id == expected_run_id and not current.package_rejected:
        raise ChampionChanged(f"the package of {expected_run_id}, champion of {dataset!r}, is no longer noted Rejected; "
                              "read it again")
    if (current.run_id if current else None) != expected_run_id:
        raise ChampionChanged(
            f"the champion of {dataset!r} is {current.run_id if current else 'nobody'}, not "
            f"{expected_run_id or 'nobody'} as expected"
        )
    entry: dict[str, Any] = {"run_id": run_id, "at": at, "why": why, "accuracy": accuracy}
    if by:
        entry["by"] = by
    history = [*(current.history if current else ()), entry]
    # the champion replaced: its package goes back to pending (former_champions.py); earlier notes are carried over,
    # a champion promoted back's too (settling it approves its package again)
    dethroned = dict(current.dethroned) if current else {}
    if current is not None and current.run_id != run_id and current.model_package_arn:
        dethroned[current.run_id] = {"run_id": current.run_id, "model_package_arn": current.model_package_arn,
                                     "since": at, "replaced_by": run_id, "version": current.version + 1}
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
        dethroned=dethroned,
    )
    item = {
        "run_id": champion_key(dataset),
        "kind": CHAMPION_KIND,
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
    if dethroned:
        item["dethroned"] = dethroned
    if expected_run_id is None:
        condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(run_id)"}
    else:
        condition = {
            "ConditionExpression": "champion_run_id = :expected AND version = :version"
                                   + (" AND attribute_exists(package_rejected)" if expect_rejected else ""),
            "ExpressionAttributeValues": to_item({":expected": expected_run_id, ":version": current.version}),
        }
    changed = f"the champion of {dataset!r} changed while {run_id} was being promoted; read it again"
    if run_update is not None:
        _put_with_run_update(table, to_item(item), condition, run_update, run_id=run_id, changed=changed)
    else:
        try:
            table.put_item(Item=to_item(item), **condition)
        except ClientError as error:
            # TransactionConflict: a record_results transaction was writing the pointer at that moment
            if aws_errors.lost_race(error):
                raise ChampionChanged(changed) from error
            raise
    # the next reconciler pass settles the dataset first, whatever the caller's own settling does: the packages of the
    # champions replaced, and the new champion's own approval, which record_results may have had to give up on
    champion_rotation.mark(table, dataset)
    return champion


def _put_with_run_update(
    table: Any, item: dict[str, Any], condition: dict[str, Any], run_update: dict[str, Any], *, run_id: str, changed: str
) -> None:
    """The champion item's conditional put and the run's conditional update as one transaction. The Table's client
    takes Python values, as the Table does (boto3 serializes them)."""
    put = {"TableName": table.name, "Item": item, **condition}
    update = {"TableName": table.name, **run_update}
    try:
        table.meta.client.transact_write_items(TransactItems=[{"Put": put}, {"Update": update}])
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
            raise
        reasons = [reason.get("Code") for reason in error.response.get("CancellationReasons") or ()]
        if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
            raise RunMovedOn(f"{run_id} was ended meanwhile; the champion was not changed") from error
        if "ConditionalCheckFailed" in reasons or "TransactionConflict" in reasons:
            raise ChampionChanged(changed) from error  # another writer on either item: read again, decide again
        raise  # throttled, or the item could not be written: nothing was; the event or the reconciler tries again


@dataclass(frozen=True)
class Outcome:
    """What became of a challenger: ``label`` (FIRST, PROMOTED, KEPT, NOT_COMPARED, GUESSING, ALREADY), the sentence
    people read, and the champion afterwards."""

    label: str
    reason: str
    champion_run_id: str | None


def _not_comparable(
    current: Champion, comparison: Comparison | None, not_measured: str | None,
    min_compared: int = DEFAULT_MIN_COMPARED_REVIEWS,
) -> str | None:
    """Why the challenger cannot be judged against ``current`` (None: it can)."""
    by_hand = "; promote the challenger by hand if wanted"
    if comparison is None:
        because = f": {not_measured}" if not_measured else ""
        return f"champion kept: {current.run_id} was not measured on this run's test reviews{because}{by_hand}"
    if comparison.champion_run_id != current.run_id:
        return (
            f"champion kept: {current.run_id} became champion after the evaluation measured "
            f"{comparison.champion_run_id}{by_hand}"
        )
    if comparison.rows_compared == 0:
        return (
            f"champion kept: all {comparison.rows_left_out} test reviews were in {current.run_id}'s training data, "
            f"none is left to compare on{by_hand}"
        )
    if comparison.rows_compared < min_compared:
        return (
            f"champion kept: only {comparison.rows_compared} test reviews were not in {current.run_id}'s training "
            f"data ({comparison.rows_left_out} were), fewer than the {min_compared} a comparison needs "
            f"(ChampionMinComparedReviews){by_hand}"
        )
    return None


def _already(current: Champion, run_id: str) -> Outcome:
    """The run is champion already. When its own decision put it there (a retry after the pointer was written:
    the answer was lost, or the run's own write failed afterwards), that decision is told again, not "already"."""
    last = current.history[-1] if current.history else {}
    if last.get("run_id") == run_id and last.get("why") and not last.get("by"):
        return Outcome(FIRST if current.version == 1 else PROMOTED, str(last["why"]), run_id)
    return Outcome(ALREADY, ALREADY, run_id)


@dataclass(frozen=True)
class Plan:
    """What a challenger's decision is, before anything is written: the outcome and, when the pointer moves to
    the challenger, what ``set_champion`` needs (the champion it was decided against, the reason, and whether the
    decision rests on that champion's package being Rejected: ``replaces_rejected``)."""

    outcome: Outcome
    moves: bool
    expected_run_id: str | None = None
    reason: str = ""
    replaces_rejected: bool = False


def plan_challenge(
    table: Any,
    dataset: str,
    *,
    run_id: str,
    accuracy: float,
    test_rows: int,
    comparison: Comparison | None,
    margin_points: float = DEFAULT_MARGIN_POINTS,
    not_measured: str | None = None,
    min_compared: int = DEFAULT_MIN_COMPARED_REVIEWS,
    has_package: bool = True,
    max_p_value: float = DEFAULT_MAX_P_VALUE,
    most_common: MostCommonClass | None = None,
) -> Plan:
    """A succeeded run challenges its dataset's champion: the decision, from the champion read now.

    The first run of a dataset becomes champion on its own ``accuracy``. Any later one is judged only on
    ``comparison`` (both models, the same test reviews) and only against the champion that comparison measured:
    without one, on fewer than ``min_compared`` reviews, or when the champion changed since, the champion stays and
    the reason says so (``not_measured``: why the evaluation could not measure it). A champion whose package a person
    rejected (``package_rejected``) is replaced by any challenger that has a package of its own (``has_package``),
    without a comparison; one without a package is compared as usual. Whatever the comparison, a challenger whose
    ``accuracy`` does not beat always answering its test split's ``most_common`` class never becomes champion
    (GUESSING; a person may still promote it)."""
    current = get_champion(table, dataset)
    if current is not None and current.run_id == run_id:
        return Plan(_already(current, run_id), moves=False)
    if most_common is not None and not most_common.beaten_by(accuracy):
        return Plan(_guessing(accuracy, test_rows, most_common, current), moves=False)
    if current is None:
        decision, label = decide(accuracy, None, margin_points, test_rows=test_rows), FIRST
    elif current.package_rejected and has_package:
        decision, label = _replaces_rejected(current, accuracy, test_rows), PROMOTED
    else:
        why_not = _not_comparable(current, comparison, not_measured, min_compared)
        if why_not:
            return Plan(Outcome(NOT_COMPARED, why_not, current.run_id), moves=False)
        assert comparison is not None and comparison.challenger_accuracy is not None
        decision = decide(
            comparison.challenger_accuracy,
            comparison.champion_accuracy,
            margin_points,
            test_rows=comparison.rows_compared,
            discordant=comparison.discordant,
            max_p_value=max_p_value,
        )
        if not decision.promote:
            return Plan(Outcome(KEPT, decision.reason, current.run_id), moves=False)
        label = PROMOTED
    return Plan(
        Outcome(label, decision.reason, run_id),
        moves=True,
        expected_run_id=current.run_id if current else None,
        reason=decision.reason,
        replaces_rejected=bool(current and current.package_rejected and has_package),
    )


def _guessing(accuracy: float, test_rows: int, most_common: MostCommonClass, current: Champion | None) -> Outcome:
    """A challenger no better than always answering one class: not champion, the champion (if any) stays."""
    on_rows = f" on {display.count(test_rows)} test reviews" if test_rows else ""
    stays = f"; champion {current.run_id} stays" if current is not None else "; the dataset has no champion yet"
    return Outcome(GUESSING, f"not champion: challenger {display.percent(accuracy)}{on_rows} is {most_common.text()}"
                             f"{stays}", current.run_id if current is not None else None)


def _replaces_rejected(current: Champion, accuracy: float, test_rows: int) -> Decision:
    """A champion whose package a person Rejected in the Model Registry (or deleted from it) does not serve: any run
    that succeeds takes its place (unless no better than answering one class: ``plan_challenge``), whatever the
    comparison says."""
    on_rows = f" on {display.count(test_rows)} test reviews" if test_rows else ""
    return Decision(True, f"new champion: the model package of champion {current.run_id} was "
                          f"{package_fate(current.package_rejected)}; challenger {display.percent(accuracy)}{on_rows}")


def package_state(note: dict[str, Any] | None) -> str | None:
    """What a person did to a champion's package, from the pointer's note (``package_rejected``): "deleted",
    "Rejected", or None (no note)."""
    return None if not note else "deleted" if note.get("deleted") else "Rejected"


def package_fate(note: dict[str, Any] | None) -> str:
    """``package_state`` in a sentence: "deleted from the Model Registry" or "Rejected in the Model Registry"."""
    return "deleted from the Model Registry" if package_state(note) == "deleted" else "Rejected in the Model Registry"


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
    by: str | None = None,
) -> Champion:
    """A person makes ``run_id`` the champion; the history says "promoted manually: <reason>" and who did."""
    if not reason.strip():
        raise ValueError("a manual promotion needs a reason")
    return set_champion(
        table,
        dataset,
        run_id=run_id,
        accuracy=accuracy,
        test_rows=test_rows,
        test_split=test_split,
        why=f"{MANUAL_PREFIX}{reason.strip()}",
        expected_run_id=expected_run_id,
        model_package_arn=model_package_arn,
        by=by,
    )
