"""A person makes a run the champion of its dataset (``reviewtune promote RUN_ID --reason TEXT``).

The manual path past the margin: the run's model package is approved in the Model Registry and the dataset's
champion pointer moves to the run through the same conditional write record_results uses, with the reason, who
and when in the pointer's history. The pointer moves first: if someone changed it meanwhile nothing at all has
changed; if the approval fails afterwards, running the command again approves the package of the run that is champion
already. Then the run's own record gets its package's approval and ``promoted`` (who, why, when), which ``runs show``
shows. Last, the previous champion's package goes back to PendingManualApproval (former_champions.py; the pointer's
move noted it, so the reconciler's next pass does it if this one cannot)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from reviewtune.core import aws_errors, former_champions, page, registry, withdrawal
from reviewtune.core.champion import (
    MANUAL_PREFIX,
    Champion,
    ChampionChanged,
    get_champion,
    is_champion_key,
    promote_manually,
)
from reviewtune.core.errors import ReviewtuneError
from reviewtune.core.reasons import PERSON_REASON_MAX_CHARS, bounded
from reviewtune.core.registration import split_identity, test_rows
from reviewtune.core.runs import RunsRepository, RunStatus, no_such_run


class PromotionError(ReviewtuneError):
    """The run cannot be made champion; the message says why and what to do."""


@dataclass(frozen=True)
class Promotion:
    run_id: str
    dataset: str
    previous_run_id: str | None
    champion: Champion
    model_package_arn: str
    already_champion: bool
    # the previous champion's package's approval once this promotion settled it: PendingManualApproval, or Approved
    # while the reconciler's next pass puts it back (former_champions.py), "deleted" or "unknown"; None: no package
    previous_approval: str | None = None
    reason: str = ""  # as the promotion recorded it (a long one shortened): the champion's history, the approval

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "dataset": self.dataset,
            "previous_champion": self.previous_run_id,
            "previous_champion_approval": self.previous_approval,
            "already_champion": self.already_champion,
            "model_package_arn": self.model_package_arn,
            "approval": registry.APPROVED,
            "reason": self.reason,
            "champion": self.champion.as_dict(),
        }


def _promotable(runs: RunsRepository, run_id: str) -> dict[str, Any]:
    """The run item, if the run can become champion; else a PromotionError that says why."""
    run = None if is_champion_key(run_id) else runs.get(run_id)
    if run is None or "status" not in run:  # the slots item, a content marker: no run
        raise PromotionError(no_such_run(run_id))
    why = refusal(run)
    if why:
        raise PromotionError(why)
    return run


def refusal(run: dict[str, Any]) -> str | None:
    """Why the run's item cannot be made champion (None: it can), before anything else is read: promote's checks,
    and what `runs show` asks before it names promote as the next step."""
    run_id = run.get("run_id")
    if run.get("status") != RunStatus.SUCCEEDED:
        return f"run {run_id} is {run.get('status')}: only a SUCCEEDED run has an evaluated model that can be champion"
    if not run.get("model_package_arn"):
        why = (run.get("registry") or {}).get("error") or "none was recorded"
        return f"run {run_id} has no model package in the Model Registry ({why}); register its model first"
    if not isinstance((run.get("results") or {}).get("test_accuracy"), int | float):
        return f"run {run_id} has no test accuracy recorded"
    return None


def _promoted_record(run: dict[str, Any], current: Champion) -> dict[str, Any] | None:
    """Who promoted a champion, when and why, for a run record that does not say it yet: the pointer's last entry when
    a person made this run champion (an earlier `promote` whose approval failed stopped before writing it; the
    record may still name an earlier promotion of the run). None when the record says it already, or a person did
    not make the run champion last."""
    last = current.history[-1] if current.history else {}
    why = str(last.get("why") or "")
    if last.get("run_id") != run["run_id"] or not why.startswith(MANUAL_PREFIX) or not last.get("by"):
        return None
    record = {"by": last.get("by"), "reason": why.removeprefix(MANUAL_PREFIX), "at": last.get("at")}
    return None if run.get("promoted") == record else record


def _approval_now(sagemaker: Any, arn: str) -> str:
    """A package's approval as SageMaker says it now: "deleted" when it no longer exists, "unknown" when it would not
    say."""
    try:
        return registry.approval_status(sagemaker, arn)
    except ClientError as error:
        return "deleted" if registry.package_gone(error) else "unknown"
    except BotoCoreError:
        return "unknown"


def _still_champion(runs: RunsRepository, sagemaker: Any, dataset: str, run_id: str, arn: str) -> None:
    """After approving: another promotion may have moved the pointer on before this approval landed (and put this
    package back to pending before it did): the package goes back to pending (where SageMaker refuses, the pointer
    notes it for the reconciler), and the person is told."""
    current = get_champion(runs.table, dataset)
    if current is not None and current.run_id == run_id:
        return
    try:
        registry.set_approval(sagemaker, arn, registry.PENDING, former_champions.no_longer_champion(dataset))
        left = "its package is back to pending"
        with contextlib.suppress(ClientError, BotoCoreError):  # its record said Approved (`runs show`)
            former_champions.record_approval(runs, run_id, arn, registry.PENDING)
    except (ClientError, BotoCoreError) as error:
        text = aws_errors.text(error) if isinstance(error, ClientError) else str(error)
        try:
            noted = former_champions.note(runs.table, dataset, run_id, arn)
        except (ClientError, BotoCoreError):
            noted = "failed"
        left = f"putting its package {arn} back to pending failed ({text}): " + {
            "noted": "the reconciler's next pass does it",
            "champion": f"{run_id} is champion again since, so its package stays Approved",
        }.get(noted, "set it to PendingManualApproval by hand")
    raise PromotionError(
        f"the champion of {dataset!r} changed to {current.run_id if current else 'nobody'} while {run_id} was being "
        f"promoted; {left}; run `reviewtune champion --dataset {page.shell_word(dataset)}` and decide again"
    )


def promote(
    runs: RunsRepository, sagemaker: Any, bucket: str, run_id: str, *, reason: str, by: str
) -> Promotion:
    """Approve ``run_id``'s model package and make the run its dataset's champion, recording ``reason`` and
    ``by`` (who). A run that is champion already only gets its package approved again."""
    if not reason.strip():
        raise PromotionError("a promotion needs a reason (--reason TEXT)")
    if not by.strip():  # the record and the package's description say who; a promotion by nobody would say nothing
        raise PromotionError("a promotion needs who makes it")
    # kept in the champion's history (its last 100 entries, in one item of at most 400 KB) and the run's record
    reason = bounded(reason.strip(), PERSON_REASON_MAX_CHARS)
    run = _promotable(runs, run_id)
    dataset = run.get("dataset") or run_id
    arn = run["model_package_arn"]
    current = get_champion(runs.table, dataset)
    already = current is not None and current.run_id == run_id
    if _approval_now(sagemaker, arn) == "deleted":  # before the pointer or its notes change: nothing changes
        raise PromotionError(
            f"run {run_id}'s model package {arn} no longer exists in the Model Registry (deleted): a champion without "
            "a package serves nothing; nothing was changed"
        )
    if already:
        # the notes of a rejection or of refused approvals go before the approval, and the pointer's version goes up
        # even without them: a decision planned on them (to replace this champion without a comparison), or a note
        # about to be written from a read made before this approval, then fails its write and is made again
        champion = former_champions.approved_again(runs.table, current, fence=True)
    else:
        try:
            champion = promote_manually(
                runs.table,
                dataset,
                run_id=run_id,
                accuracy=float(run["results"]["test_accuracy"]),
                test_rows=test_rows(run),
                test_split=split_identity(run, bucket),
                reason=reason,
                expected_run_id=current.run_id if current else None,
                model_package_arn=arn,
                by=by,
            )
        except ChampionChanged as error:
            raise PromotionError(f"{error}; nothing was changed: run the command again") from error
    try:
        registry.set_approval(sagemaker, arn, registry.APPROVED,
                              f"{registry.PROMOTED_DESCRIPTION_PREFIX}{by}: {reason.strip()}")
    except (ClientError, BotoCoreError) as error:
        text = aws_errors.text(error) if isinstance(error, ClientError) else str(error)
        if isinstance(error, ClientError) and registry.package_gone(error):  # deleted since it was read above
            raise PromotionError(
                f"run {run_id} is champion of {dataset!r}, but its model package {arn} was deleted meanwhile "
                f"({text}): the next reconciler pass notes it, and the next run of the dataset that succeeds (better "
                "than answering one class) takes its place; promote another run to choose one now"
            ) from error
        raise PromotionError(
            f"run {run_id} is champion of {dataset!r}, but approving its model package {arn} failed ({text}); "
            "run the command again to approve it"
        ) from error
    # the run's own record says so too (`runs show`): its package Approved, and who promoted it, when and why. A run
    # whose earlier approval is being withdrawn keeps owing it (its "approval failed" entry): the reconciler's next
    # pass finds it champion and approves its package again, whatever that withdrawal undid meanwhile. Written before
    # the pointer is read again (_still_champion): a promotion of another run that lands after that read puts this
    # package back to pending and records it after this write, and one that landed before it is found there
    entry = run.get("registry") or {}
    entry = {**(entry if withdrawal.owed(run) else registry.without_approval_error(entry)), "approval": registry.APPROVED}
    # a run champion already was not promoted now: its record keeps how it became champion, unless that was an
    # earlier try of this command whose approval failed before the record was written (the pointer's last entry)
    promoted = _promoted_record(run, current if already else champion)  # the pointer's entry: who, why, when
    promoted = {"promoted": promoted} if promoted else {}
    try:
        runs.update_if(run_id, RunStatus.SUCCEEDED, registry=entry, **promoted)
    finally:  # the record refused or not answered: the pointer is still read again, the package put back if overtaken
        _still_champion(runs, sagemaker, dataset, run_id, arn)
    if already and champion.dethroned:  # kept Approved while this champion's package was not: back to pending
        former_champions.settle_quietly(runs, sagemaker, dataset)
    previous = None
    if not already and current is not None and current.model_package_arn:  # the champion replaced: back to pending
        former_champions.settle_quietly(runs, sagemaker, dataset)
        previous = _approval_now(sagemaker, current.model_package_arn)
    return Promotion(run_id, dataset, current.run_id if current else None, champion, arn, already, previous, reason)
