"""The approval of a package whose run did not succeed: withdrawn, and checked again until it can no longer change.

record_results approves a run's package just before the transaction that makes the run SUCCEEDED and champion, and
first keeps the package on the run (``model_package_arn`` and ``package_marked_at``, written only while the run is
EVALUATING). When the run ends otherwise instead (its deadline, a person's stop, a missing job), the package must
not stay Approved. Whatever ends the run withdraws the approval at once (``withdraw``, best effort), and record_results
withdraws its own approval when its transaction finds the run ended; either can fail (SageMaker throttling), and
record_results may approve after the end already withdrew. So the ended run stays in the outbox's pending index
(``outbox.send_pending`` does not clear it) while the withdrawal is ``owed``, and every reconciler pass ``settle``s
it: the package is put back to pending again, and once ``SETTLE_AFTER_SECONDS`` have passed since the mark (no
record_results invocation that wrote the mark can still be approving), ``approval_settled_at`` is written and the
run leaves the index.

The same holds for a run that SUCCEEDED without becoming champion while its package may be Approved (an attempt
approved it for a champion move, then the champion changed) and putting it back to pending was still refused when
record_results stopped retrying (``registry.error`` "approval failed"): it is settled the same way, unless the run
has become champion since (a person promoted it), whose package is approved (again) instead. A promotion can come
between the pass's read of the champion pointer and its withdrawal; a promotion moves the pointer before it approves,
so the pass reads the pointer again after withdrawing, and approves the package again when the run is champion by
then (a refusal of that approval leaves the run owing: the next pass finds it champion and approves it).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from reviewtune.core import aws_errors, registry, states
from reviewtune.core.champion import get_champion
from reviewtune.core.clients import AwsClients
from reviewtune.core.runs import PENDING, RunsRepository, RunStatus, now_iso, parse_iso

logger = Logger(child=True)

# Longer than any function's timeout (300 s): record_results approves within the invocation that wrote the mark.
SETTLE_AFTER_SECONDS = 900
CHAMPION_SINCE = f"{registry.CHAMPION_DESCRIPTION_PREFIX}promoted by hand while the approval of its earlier decision was being withdrawn"


def owed(item: dict[str, Any]) -> bool:
    """Whether the run ended otherwise than SUCCEEDED after its package was marked for approval, or SUCCEEDED not
    champion with its package's return to pending refused, and its withdrawal is not settled yet."""
    if not item.get("model_package_arn") or item.get("approval_settled_at"):
        return False
    if item.get("status") == RunStatus.SUCCEEDED:
        return _unapproval_refused(item)
    return states.is_final(item.get("status"))


def _unapproval_refused(item: dict[str, Any]) -> bool:
    """A SUCCEEDED run that is not champion and whose package record_results could not put back to pending."""
    registry_entry = item.get("registry") or {}
    champion_run_id = (item.get("champion") or {}).get("champion_run_id")
    return (
        champion_run_id != item["run_id"]
        and registry_entry.get("approval") != registry.PENDING
        and str(registry_entry.get("error", "")).startswith(registry.APPROVAL_FAILED)
    )


def reason(item: dict[str, Any]) -> str:
    if item.get("status") == RunStatus.SUCCEEDED:
        return f"run {item['run_id']} succeeded without becoming champion"
    return f"run {item['run_id']} ended {item['status']}: {item.get('failure_reason') or 'no reason recorded'}"


def withdraw(clients: AwsClients, item: dict[str, Any]) -> str | None:
    """Best effort: put the run's package back to PendingManualApproval (a person's Rejected stays). AWS's refusal
    (logged), or None when done."""
    arn = item["model_package_arn"]
    try:
        registry.back_to_pending(clients.sagemaker, arn, reason(item))
    except (ClientError, BotoCoreError) as exc:
        logger.warning(
            "could not withdraw the approval of the ended run's model package (the reconciler tries again)",
            extra={"run_id": item["run_id"], "model_package_arn": arn, "error": aws_errors.describe(exc)},
        )
        return aws_errors.describe(exc)
    return None


def owe(runs: RunsRepository, item: dict[str, Any], why: str) -> bool:
    """Record on a SUCCEEDED run, recorded not champion, whose package an attempt approved, that the package may be
    Approved and why (``registry.error`` "approval failed: ..."), and put the run back in the pending index: it is
    then ``owed``, and every reconciler pass ``settle``s it (back to pending; approved again if the run is champion
    by then). False when the run changed meanwhile."""
    entry = {**(item.get("registry") or {}), "approval": registry.APPROVED, "error": f"{registry.APPROVAL_FAILED}: {why}"}
    return runs.update_if(item["run_id"], RunStatus.SUCCEEDED, registry=entry, notice_pending=PENDING) is not None


def undo_late_approval(runs: RunsRepository, clients: AwsClients, item: dict[str, Any]) -> None:
    """Put back to pending the package of a run that another attempt recorded, or that ended, while this attempt was
    approving it for a champion move. A SUCCEEDED run has left the pending index already: when putting it back is
    refused, or a person promoted the run between the read of the pointer and the withdrawal (the withdrawal may have
    undone the promotion's approval), the run is ``owe``d, so that a reconciler pass settles it."""
    if item.get("status") == RunStatus.SUCCEEDED and champion_now(clients, item):
        return
    refused = withdraw(clients, item)
    if item.get("status") != RunStatus.SUCCEEDED:
        return  # an ended run stays in the pending index while its withdrawal is owed
    if refused:
        owe(runs, item, f"putting it back to pending was refused: {refused}")
    elif champion_now(clients, item):
        owe(runs, item, "promoted by hand while the approval was being withdrawn")


def left_approved(clients: AwsClients, item: dict[str, Any]) -> bool:
    """Whether a SUCCEEDED run recorded not champion has its package Approved, though nothing on the run says so: an
    attempt marked the package for a champion move (``package_marked_at``), approved it after another attempt
    recorded the run, and died before putting it back or recording that it could not (``owe``). A repeated event for
    the run asks this (one DescribeModelPackage, only for such a run); ``undo_late_approval`` leaves the package of a
    run that is champion now (promoted by hand since) as it is."""
    if (
        item.get("status") != RunStatus.SUCCEEDED
        or not item.get("model_package_arn")
        or not item.get("package_marked_at")
        or item.get("approval_settled_at")
        or owed(item)
        or (item.get("champion") or {}).get("champion_run_id") == item["run_id"]
    ):
        return False
    try:
        return registry.approval_status(clients.sagemaker, item["model_package_arn"]) == registry.APPROVED
    except ClientError as exc:
        if aws_errors.transient(exc):
            raise  # the event is delivered again
        if registry.package_gone(exc):
            return False  # deleted since: nothing left approved
        # refused (AccessDenied): taken for approved, so that undo_late_approval puts it back, or, refused too, owes
        # it to the reconciler's passes; the repeated event still does what it is for rather than fail every time
        logger.warning("could not read the approval of a run's package; putting it back to pending", extra={
            "run_id": item["run_id"], "model_package_arn": item["model_package_arn"],
            "error": aws_errors.describe(exc)})
        return True


def settle(runs: RunsRepository, clients: AwsClients, item: dict[str, Any], now: datetime | None = None) -> bool:
    """Withdraw the approval again; once the mark is SETTLE_AFTER_SECONDS old, record that it is settled.

    True when settled. Raises when SageMaker refuses (the next pass tries again)."""
    now = now or datetime.now(UTC)
    fields: dict[str, Any] = {}
    if item.get("status") == RunStatus.SUCCEEDED and champion_now(clients, item):
        return _settled_as_champion(runs, clients, item, now)  # promoted since: its package is the champion's
    try:
        approval = registry.back_to_pending(clients.sagemaker, item["model_package_arn"], reason(item))
    except ClientError as exc:
        ended = _ended_refused(runs, item, exc, now, "put back to pending")
        if ended is None:
            raise
        return ended
    if item.get("status") == RunStatus.SUCCEEDED:
        fields["registry"] = {**registry.without_approval_error(item.get("registry") or {}), "approval": approval}
    if item.get("status") == RunStatus.SUCCEEDED and champion_now(clients, item):
        # a person promoted the run between the read above and the withdrawal: the promotion moved the pointer
        # before approving, so this second read sees it whenever the withdrawal may have undone that approval
        return _settled_as_champion(runs, clients, item, now, approval_now=approval)
    if now - _marked(item) < timedelta(seconds=SETTLE_AFTER_SECONDS):
        return False
    settled = runs.update_if(item["run_id"], item["status"], approval_settled_at=now_iso(now), **fields)
    if settled is not None:
        logger.info(
            "approval of the ended run's package settled",
            extra={"run_id": item["run_id"], "model_package_arn": item["model_package_arn"]},
        )
    return settled is not None


def _marked(item: dict[str, Any]) -> datetime:
    """When the run's package was marked for approval (its last update, for a run recorded before the mark)."""
    return parse_iso(item.get("package_marked_at") or item["updated_at"])


def _ended_refused(runs: RunsRepository, item: dict[str, Any], exc: ClientError, now: datetime,
                   change: str, approval_now: str | None = None) -> bool | None:
    """The withdrawal settled without the ``change`` of approval it was making: the package no longer exists
    (nothing is left Approved), or SageMaker has refused it for good (access, validation) for
    ``registry.GIVE_UP_SECONDS`` since the mark, so the package keeps the approval it has (``approval_now`` where this
    pass set it, else the run's record's). The refusal is recorded on the run (``registry.error``) and the run leaves
    the pending index.
    None: try again next pass."""
    entry = registry.without_approval_error(item.get("registry") or {})
    if registry.package_gone(exc):
        entry = {k: v for k, v in entry.items() if k != "approval"}
        entry["error"] = f"the model package no longer exists: {aws_errors.text(exc)}"
    elif registry.refused_for_good(exc, _marked(item), now):
        entry["error"] = (f"{registry.APPROVAL_FAILED}: not {change}, refused for {registry.GIVE_UP_DAYS} days: "
                          f"{aws_errors.text(exc)}")
        if approval_now is not None:
            entry["approval"] = approval_now
        logger.error("gave up changing the approval of a run's package",
                     extra={"run_id": item["run_id"], "model_package_arn": item["model_package_arn"],
                            "error": entry["error"]})
    else:
        return None
    return runs.update_if(item["run_id"], item["status"], approval_settled_at=now_iso(now), registry=entry) is not None


def _settled_as_champion(runs: RunsRepository, clients: AwsClients, item: dict[str, Any], now: datetime,
                         approval_now: str | None = None) -> bool:
    """Approve the champion's package (again: an earlier pass's withdrawal may have undone the promotion's approval,
    and then been refused approving it back), unless a person rejected it (it stays so), and record the withdrawal
    settled. ``approval_now``: what this pass left the package at, when it did."""
    try:
        # a person's Rejected stays (former_champions notes it on the pointer)
        approval = registry.approve_unless_rejected(clients.sagemaker, item["model_package_arn"], CHAMPION_SINCE)
    except ClientError as exc:
        ended = _ended_refused(runs, item, exc, now, "approved as the champion's", approval_now)
        if ended is None:
            raise
        return ended
    entry = {**registry.without_approval_error(item.get("registry") or {}), "approval": approval}
    settled = runs.update_if(item["run_id"], item["status"], approval_settled_at=now_iso(now), registry=entry)
    return settled is not None


def champion_now(clients: AwsClients, item: dict[str, Any]) -> bool:
    """Whether the run is its dataset's champion now (the pointer, read strongly consistent)."""
    current = get_champion(clients.runs_table, item.get("dataset") or item["run_id"])
    return current is not None and current.run_id == item["run_id"]
