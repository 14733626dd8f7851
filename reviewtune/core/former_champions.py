"""One Approved model package per dataset, the champion's: a former champion's package goes back to pending.

When the champion pointer moves (record_results' transaction, or ``reviewtune promote``), the write that moves it
also notes the champion it replaces in the pointer's ``dethroned`` map (run id -> its package and when), so a crash
after the move cannot forget it (``champion.set_champion``). Settling a dataset (``settle``: right after the move,
best effort, and in every reconciler pass for every dataset whose pointer still notes one) puts each noted package
back to PendingManualApproval, or approves it again when its run is champion again (a rollback by ``promote``),
records the approval on the run (``runs show``), and then takes the entries out of the map, only if the pointer did
not move meanwhile. A deployment that follows the group's Approved version (or its newest) then follows the
champion, rollbacks included.

A promotion can come between a pass's read of the pointer and its withdrawal: a promotion moves the pointer before it
approves, so the pass reads the pointer again after withdrawing, and approves the package again when its run is
champion by then. The pointer keeps the entries of a champion promoted back (``set_champion`` carries every entry
over), so a refused approval is tried again by the next pass.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from reviewtune.core import aws_errors, registry
from reviewtune.core.champion import Champion, champion_key, get_champion, list_champions
from reviewtune.core.runs import RunsRepository, RunStatus, parse_iso, to_item

logger = Logger(child=True)

# A change of approval SageMaker refuses for good (AccessDenied, a validation error) is tried by every pass for this
# long after the champion moved, then recorded on the run as not done, and the entry dropped.
GIVE_UP_SECONDS = 7 * 86400
CHAMPION_AGAIN = "champion again: promoted back by hand"


def settle_all(runs: RunsRepository, sagemaker: Any, now: datetime | None = None) -> int:
    """Settle every dataset whose pointer notes former champions (a reconciler pass). Returns how many packages
    had their approval set; raises the first refusal after trying every dataset."""
    changed, failure = 0, None
    for champion in list_champions(runs.table):
        if not champion.dethroned:
            continue
        try:
            changed += settle(runs, sagemaker, champion.dataset, now)
        except (ClientError, BotoCoreError) as exc:
            logger.warning("could not settle the approvals of former champions (the next pass tries again)",
                           extra={"dataset": champion.dataset, "error": aws_errors.describe(exc)})
            failure = failure or exc
    if failure is not None:
        raise failure
    return changed


def settle_quietly(runs: RunsRepository, sagemaker: Any, dataset: str) -> bool:
    """``settle`` right after the pointer moved; a refusal is logged and left to the reconciler's next pass (False)."""
    try:
        settle(runs, sagemaker, dataset)
    except (ClientError, BotoCoreError) as exc:
        logger.warning("the former champion's package is still approved; the reconciler puts it back to pending",
                       extra={"dataset": dataset, "error": aws_errors.describe(exc)})
        return False
    return True


def settle(runs: RunsRepository, sagemaker: Any, dataset: str, now: datetime | None = None) -> int:
    """Put the packages the pointer notes back to pending (approve the champion's again), record each on its run,
    then take them out of the pointer unless it moved meanwhile. Returns how many approvals were set; raises when
    SageMaker refuses for a moment (the next pass tries again)."""
    now = now or datetime.now(UTC)
    current = get_champion(runs.table, dataset)
    if current is None or not current.dethroned:
        return 0
    done: dict[str, str | None] = {}  # run id -> the approval its package has now (None: gone or given up)
    for run_id, noted in current.dethroned.items():
        wanted = registry.APPROVED if run_id == current.run_id else registry.PENDING
        done[run_id] = _set(sagemaker, noted, wanted, _why(current, run_id), now)
    after = get_champion(runs.table, dataset)
    for run_id, approval in done.items():
        # the pointer moved between the read above and the change: a run promoted back is approved again, one
        # replaced meanwhile goes back to pending (a refusal raises; the pointer still notes the run)
        wanted = registry.APPROVED if after is not None and run_id == after.run_id else registry.PENDING
        if after is not None and approval is not None and approval != wanted:
            done[run_id] = _set(sagemaker, current.dethroned[run_id], wanted, _why(after, run_id), now)
    for run_id, approval in done.items():
        _record(runs, run_id, approval, current.dethroned[run_id], now)
    if after is not None:
        _forget(runs.table, after, [run_id for run_id in done if run_id in after.dethroned])
    return sum(approval is not None for approval in done.values())


def _why(champion: Champion, run_id: str) -> str:
    if run_id == champion.run_id:
        return CHAMPION_AGAIN  # a rollback by promote while its approval was being withdrawn
    return f"no longer champion of {champion.dataset}: {champion.run_id} is, since {champion.changed_at}"


def _set(sagemaker: Any, noted: dict[str, Any], wanted: str, why: str, now: datetime) -> str | None:
    """Set the noted package's approval; None when it no longer exists or SageMaker refused it for good for
    GIVE_UP_SECONDS (logged). Raises otherwise."""
    try:
        registry.set_approval(sagemaker, noted["model_package_arn"], wanted, why)
    except ClientError as exc:
        if registry.package_gone(exc):
            return None
        since = parse_iso(noted.get("since") or now.isoformat())
        if aws_errors.transient(exc) or now - since < timedelta(seconds=GIVE_UP_SECONDS):
            raise
        logger.error("gave up changing the approval of a former champion's package",
                     extra={"run_id": noted.get("run_id"), "model_package_arn": noted["model_package_arn"],
                            "error": aws_errors.describe(exc)})
        noted["error"] = f"{registry.APPROVAL_FAILED}: not set to {wanted}, refused for {GIVE_UP_SECONDS // 86400} days: {aws_errors.text(exc)}"
        return None
    return wanted


def _record(runs: RunsRepository, run_id: str, approval: str | None, noted: dict[str, Any], now: datetime) -> None:
    """The run's own record says what its package's approval is now (``runs show``); nothing when it did not change
    or the run is gone."""
    item = runs.get(run_id)
    if item is None or item.get("model_package_arn") != noted["model_package_arn"]:
        return
    entry_now = dict(item.get("registry") or {})
    if approval is None and noted.get("error"):
        entry_now["error"] = noted["error"]
    elif approval is None:
        entry_now.pop("approval", None)
        entry_now["error"] = "the model package no longer exists"
    else:
        entry_now["approval"] = approval
    if entry_now != (item.get("registry") or {}):
        runs.update_if(run_id, RunStatus.SUCCEEDED, registry=entry_now)


def _forget(table: Any, champion: Champion, run_ids: list[str]) -> None:
    """Take the settled entries out of the pointer, only if it is still the one read (its version): else the next
    pass settles what the pointer notes then."""
    if not run_ids:
        return
    names = {"#d": "dethroned", **{f"#r{i}": run_id for i, run_id in enumerate(run_ids)}}
    removals = ", ".join(f"#d.#r{i}" for i in range(len(run_ids)))
    try:
        table.update_item(
            Key={"run_id": champion_key(champion.dataset)},
            UpdateExpression=f"REMOVE {removals}",
            ConditionExpression="version = :version",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_item({":version": champion.version}),
        )
    except ClientError as exc:
        if aws_errors.code(exc) not in ("ConditionalCheckFailedException", "TransactionConflictException"):
            raise
