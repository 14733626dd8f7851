"""One Approved model package per dataset, the champion's: a former champion's package goes back to pending.

When the champion pointer moves (record_results' transaction, or ``reviewtune promote``), the write that moves it
also notes the champion it replaces in the pointer's ``dethroned`` map (run id -> its package and when), so a crash
after the move cannot forget it (``champion.set_champion``). Settling a dataset (``settle``: right after the move,
best effort, and in the reconciler's passes: ``settle_all``) first makes sure the champion's own package is Approved
(one DescribeModelPackage; approved when it is not), and only then puts each noted package back to
PendingManualApproval: a champion whose approval SageMaker refuses leaves the one before it Approved, so a deployment
that follows the group's Approved version keeps a model. Each change is recorded on its run (``runs show``), then the entries are
taken out of the map, only if the pointer did not move meanwhile.

A pass settles first the datasets marked as having work waiting (the move marks its dataset; so do ``note`` and a
pass whose settling SageMaker refused), then the others in rotation from where the last pass stopped
(champion_rotation.py), while the pass has time for it and at most ``MAX_SETTLED_PER_PASS`` of them: every champion is
checked within a round of the rotation (at most MAX_SETTLED_PER_PASS datasets a pass, fewer when its time is short:
25 passes, about two hours, for 5,000 datasets), and the steps after it keep their time.

The check of the champion's package in the passes also repairs what a race leaves: a pass that read the pointer
before a promotion back, and puts that run's package to pending after the promotion approved it (the pass reads the
pointer again after its changes and approves it back at once; should it die first, the next pass does: the
promotion marked the dataset), or a champion whose approval record_results had to give up on. SageMaker's first
refusal of that approval is kept on the pointer (``approval_refused_since``): a refusal for good is given up on a week
after it. A promotion that lost a race with another (its approval landing after the other moved the pointer away) puts
its package back itself (promotion.py), or, where SageMaker refuses, notes it on the pointer for the passes
(``note``).

reviewtune never rejects a package: one found Rejected was rejected by a person, and stays so. The champion's is not
approved again; the pointer notes it (``package_rejected``), the packages before it keep their approval, and the next
run of the dataset that succeeds with a package of its own takes its place without a comparison
(``champion.plan_challenge``, once ``still_rejected`` has read it Rejected again); should the person approve it
again (or promote the champion), the note goes. A package found Rejected is never put back to pending
(``registry.back_to_pending``). A champion's package deleted from the registry by a person is noted the same way
(``package_rejected`` with ``deleted``) and replaced the same way: it never serves again. UpdateModelPackage takes no
condition on the status it changes: a person's rejection landing between reviewtune's read of a package and its
update (milliseconds) is overwritten by that update; the person rejects it again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from reviewtune.core import aws_errors, champion_rotation, registry, withdrawal
from reviewtune.core.champion import TRIES, Champion, champion_datasets, champion_key, get_champion
from reviewtune.core.runs import RunsRepository, RunStatus, now_iso, parse_iso, to_item

logger = Logger(child=True)

CHAMPION_APPROVED = "champion: approved again (its package was not Approved)"
PACKAGE_GONE = "the model package no longer exists"
# A pass settles this many datasets at most (each a consistent read or two and a DescribeModelPackage, more when
# something changes): the SageMaker calls of a pass stay bounded, and a stack of N datasets has each champion checked
# within N / MAX_SETTLED_PER_PASS passes.
MAX_SETTLED_PER_PASS = 200
SAVE_PLACE_EVERY = 50  # the rotation's place is kept this often too, not only at the end of the pass's share


def settle_all(runs: RunsRepository, sagemaker: Any, now: datetime | None = None,
               out_of_time: Callable[[], bool] = lambda: False) -> int:
    """A reconciler pass's share of the champions: the marked datasets first, then the others in rotation from the
    place the last pass kept, one after the other while ``out_of_time()`` says no, MAX_SETTLED_PER_PASS at most, each
    once a pass; the place reached is kept for the next pass. Returns how many packages had their approval set; a
    dataset whose settling SageMaker refused is marked for the next pass, and the first refusal is raised once the
    pass's share is done."""
    table = runs.table
    place = champion_rotation.read(table)
    changed, failure, settled, stopped = 0, None, 0, False
    done: set[str] = set()

    def may_go_on() -> bool:
        nonlocal stopped
        stopped = stopped or settled >= MAX_SETTLED_PER_PASS or out_of_time()
        return not stopped

    def settle_one(dataset: str, token: str | None = None) -> None:
        nonlocal changed, failure, settled
        settled += 1
        done.add(dataset)
        try:
            changed += sum(approval in (registry.APPROVED, registry.PENDING)
                           for approval in settle(runs, sagemaker, dataset, now).values())
        except (ClientError, BotoCoreError) as exc:
            logger.warning("could not settle the approvals of a dataset's packages (the next pass tries again)",
                           extra={"dataset": dataset, "error": aws_errors.describe(exc)})
            failure = failure or exc
            if token is None:  # a marked one keeps its mark
                champion_rotation.mark(table, dataset)
        else:
            if token is not None:  # settled: its mark off, unless marked again meanwhile (another token)
                champion_rotation.unmark(table, dataset, token)

    for dataset, token in sorted(place.marks.items()):
        if not may_go_on():
            break
        settle_one(dataset, token)
    reached, saved, settled_when_saved = place.after, place.after, settled
    for dataset in _rotation(table, place.after):
        if dataset not in done:
            if not may_go_on():
                break
            settle_one(dataset)
        reached = dataset
        if settled - settled_when_saved >= SAVE_PLACE_EVERY:  # a pass that dies in the step keeps most of its share
            champion_rotation.save_place(table, reached)
            saved, settled_when_saved = reached, settled
    if reached is not None and reached != saved:
        champion_rotation.save_place(table, reached)
    if stopped:
        logger.info("the champions' settling stopped for this pass; the next goes on from there",
                    extra={"settled": settled, "place": reached})
    if failure is not None:
        raise failure
    return changed


def _rotation(table: Any, after: str | None) -> Iterator[str]:
    """Every dataset that has a champion, once, in name order from just after ``after`` round to it."""
    yield from champion_datasets(table, after=after)
    if after is None:
        return
    for dataset in champion_datasets(table):
        if dataset > after:  # the index's order (UTF-8 bytes) is the code points' order
            return
        yield dataset


def settle_quietly(runs: RunsRepository, sagemaker: Any, dataset: str) -> None:
    """``settle`` right after the pointer moved; when SageMaker refuses, logged (the reconciler's next pass does
    it)."""
    try:
        settle(runs, sagemaker, dataset)
    except (ClientError, BotoCoreError) as exc:
        logger.warning("the former champion's package is still approved; the reconciler puts it back to pending",
                       extra={"dataset": dataset, "error": aws_errors.describe(exc)})


def settle(runs: RunsRepository, sagemaker: Any, dataset: str, now: datetime | None = None) -> dict[str, str | None]:
    """Make sure the champion's package is Approved, then put the packages the pointer notes back to pending, read the
    pointer again (a run promoted back meanwhile is approved again, a champion replaced meanwhile goes back), record
    each change on its run, and take the noted entries out of the pointer unless it moved meanwhile. Returns run id ->
    the approval set (None: the package is gone, or the change was given up; Rejected: a person's, left so); raises
    when SageMaker refuses (the next pass tries again). A champion whose package is not Approved (none, gone,
    refused, Rejected) leaves the noted ones as they are: something approved keeps serving."""
    now = now or datetime.now(UTC)
    current = get_champion(runs.table, dataset)
    if current is None:
        return {}
    done: dict[str, str | None] = {}
    approved = _approve_champion(runs, sagemaker, current, now)
    if approved == "now":
        done[current.run_id] = registry.APPROVED
    noted = {run_id: entry for run_id, entry in current.dethroned.items() if run_id != current.run_id}
    if approved:
        for run_id, entry in noted.items():
            done[run_id] = _set(sagemaker, entry, registry.PENDING, _why(current), now)
    if not done and not (approved and current.run_id in current.dethroned):
        return done  # else a champion promoted back still has its own entry: nothing to change, the entry to forget
    after = get_champion(runs.table, dataset)
    arns = {run_id: entry["model_package_arn"] for run_id, entry in noted.items()}
    arns[current.run_id] = current.model_package_arn
    for run_id, approval in list(done.items()):
        # the pointer moved between the read above and these changes: each package as the pointer says now (should
        # this fail or the pass die, the next pass's check does it for a champion; a package this pass approved for
        # a run replaced meanwhile is noted on the pointer first, as the move's own entry for it may be settled and
        # forgotten already, by the new champion's settling that ran before this approval landed)
        wanted = registry.APPROVED if after is not None and run_id == after.run_id else registry.PENDING
        if approval in (registry.APPROVED, registry.PENDING) and approval != wanted:
            if wanted == registry.PENDING and _noted_again(runs.table, dataset, run_id, arns[run_id]) == "champion":
                done[run_id] = registry.APPROVED  # promoted back meanwhile: its package stays Approved
                continue
            registry.set_approval(sagemaker, arns[run_id], wanted,
                                  CHAMPION_APPROVED if wanted == registry.APPROVED else no_longer_champion(dataset))
            done[run_id] = wanted
    for run_id, approval in done.items():
        record_approval(runs, run_id, arns[run_id], approval, noted.get(run_id, {}).get("error"))
    if after is not None:  # the entries settled, not one a move made anew since (a run promoted back, then replaced)
        _forget(runs.table, after, [run_id for run_id, entry in after.dethroned.items()
                                    if _same_entry(noted.get(run_id), entry) or run_id == after.run_id])
    return done


def _same_entry(settled: dict[str, Any] | None, entry: dict[str, Any]) -> bool:
    """Whether the pointer's ``entry`` is the one settled, not one a later move made for the same run (the pointer's
    version it was made at; moves of one second apart otherwise look alike). A settling may have added its error."""
    return settled is not None and all(settled.get(key) == entry.get(key) for key in ("since", "replaced_by", "version"))


def _noted_again(table: Any, dataset: str, run_id: str, arn: str) -> str:
    """``note`` a package approved for a champion replaced meanwhile, read again while the pointer moves under it:
    "noted", "champion" (the run is champion again) or, with the pointer moving at every try, "moved" (its correction
    then goes on unnoted, as a pass's correction always did). Raises when DynamoDB refuses."""
    noted = "moved"
    for _ in range(TRIES):
        noted = note(table, dataset, run_id, arn)
        if noted != "moved":
            break
    return noted


def _approve_champion(runs: RunsRepository, sagemaker: Any, champion: Champion, now: datetime) -> str | None:
    """Approve the champion's package unless it is Approved already: "now" when approved now, "already", or None when
    it is not Approved (no package, gone, Rejected by a person, which stays so and is noted on the pointer, or
    SageMaker refusing it for good for registry.GIVE_UP_SECONDS since its first refusal, which the pointer keeps:
    recorded on the run once, and logged). Raises while SageMaker refuses within that."""
    arn = champion.model_package_arn
    if not arn:
        return None
    try:
        status, description = registry.approval(sagemaker, arn)
        approve_now = status not in (registry.APPROVED, registry.REJECTED)  # a person's Rejected stays
        if approve_now:
            registry.set_approval(sagemaker, arn, registry.APPROVED, CHAMPION_APPROVED)
    except ClientError as exc:
        if registry.package_gone(exc):  # deleted by a person: like a rejection, it never serves again
            _rejected(runs, champion, None, now, deleted=True)
            return None
        if aws_errors.transient(exc):
            raise
        if champion.approval_refused_since is None:
            _mark(runs.table, champion, "approval_refused_since", now_iso(now))
        if not registry.refused_for_good(exc, parse_iso(champion.approval_refused_since or now.isoformat()), now):
            raise
        logger.error("the champion's package cannot be approved; the one before stays Approved", extra={
            "dataset": champion.dataset, "run_id": champion.run_id, "model_package_arn": arn,
            "error": aws_errors.describe(exc)})
        record_approval(runs, champion.run_id, arn, None, f"{registry.APPROVAL_FAILED}: the champion's package could not be "
                f"approved for {registry.GIVE_UP_DAYS} days: {aws_errors.text(exc)}")
        return None
    if status == registry.REJECTED:
        _rejected(runs, champion, description, now)
        return None
    if champion.approval_refused_since is not None or champion.package_rejected is not None:
        # approved (by a person again, or now: a rejection put back to pending is approved)
        approved_again(runs.table, champion)
        record_approval(runs, champion.run_id, arn, registry.APPROVED, None)
    approved = "now" if approve_now else "already"
    if approved == "now":
        logger.warning("the champion's package was not Approved: approved", extra={
            "dataset": champion.dataset, "run_id": champion.run_id, "model_package_arn": arn})
    return approved


def _rejected(runs: RunsRepository, champion: Champion, description: str | None, now: datetime, *,
              deleted: bool = False) -> None:
    """The champion's package is Rejected in the registry, or ``deleted`` from it: a person's decision (reviewtune
    does neither), kept. Noted on the pointer once (``package_rejected``, with ``deleted``; the next run that succeeds
    takes the champion's place: ``champion.plan_challenge``) and on the run's record, and logged; the packages noted
    before it keep their approval."""
    if champion.approval_refused_since is not None:  # SageMaker's refusals to approve it no longer matter
        _mark(runs.table, champion, "approval_refused_since", None)
    if champion.package_rejected is None:
        description = None if registry.written_by_reviewtune(description) else description
        logger.error(f"the champion's package was {'deleted from' if deleted else 'Rejected in'} the Model Registry: "
                     "not approved again; the next run of the dataset that succeeds (better than answering one class) "
                     "takes its place", extra={
                         "dataset": champion.dataset, "run_id": champion.run_id,
                         "model_package_arn": champion.model_package_arn, "approval_description": description})
        found = {"found_at": now_iso(now), **({"description": description[:500]} if description else {}),
                 **({"deleted": True} if deleted else {})}
        if not _mark(runs.table, champion, "package_rejected", found):
            return  # the pointer moved: the next pass reads the new one
    elif deleted and not champion.package_rejected.get("deleted"):  # Rejected, then deleted: the note says so now
        _note_deleted(runs.table, champion)
    if deleted:
        record_approval(runs, champion.run_id, champion.model_package_arn, None, PACKAGE_GONE)
    else:
        record_approval(runs, champion.run_id, champion.model_package_arn, registry.REJECTED, None)


def _note_deleted(table: Any, champion: Champion) -> None:
    """Add ``deleted`` to the pointer's note of a Rejected package, unless the pointer moved meanwhile."""
    try:
        table.update_item(Key={"run_id": champion_key(champion.dataset)},
                          UpdateExpression="SET package_rejected.deleted = :yes",
                          ConditionExpression="version = :version AND attribute_exists(package_rejected)",
                          ExpressionAttributeValues=to_item({":yes": True, ":version": champion.version}))
    except ClientError as exc:
        if not aws_errors.lost_race(exc):
            raise


def approved_again(table: Any, champion: Champion, *, fence: bool = False) -> Champion:
    """The champion's package is Approved (``reviewtune promote`` of the champion, or a pass): take the pointer's notes
    of a rejection and of SageMaker's refusals off, while ``champion.run_id`` is champion (whatever the version: a
    note written after the read goes too), adding one to the version: a write that read the pointer before (a pass
    noting a rejection it read earlier, a decision planned on the note) fails its condition. Nothing is written when
    ``champion`` has neither (a note written after that read is ``still_rejected``'s to find), unless ``fence``
    (``promote`` of the champion, before it approves the package): then the version goes up whatever the pointer
    holds, so a record_results that read the package Rejected before that approval fails to note it, or finds its
    note gone when it acts on it. Returns the champion without them."""
    if champion.approval_refused_since is None and champion.package_rejected is None and not fence:
        return champion
    try:
        table.update_item(Key={"run_id": champion_key(champion.dataset)},
                          UpdateExpression="REMOVE approval_refused_since, package_rejected SET version = version + :one",
                          ConditionExpression="champion_run_id = :run_id",
                          ExpressionAttributeValues=to_item({":run_id": champion.run_id, ":one": 1}))
    except ClientError as exc:
        if not aws_errors.lost_race(exc):
            raise
    return replace(champion, approval_refused_since=None, package_rejected=None, version=champion.version + 1)


def still_rejected(runs: RunsRepository, sagemaker: Any, dataset: str) -> bool:
    """Whether the package of the champion the pointer notes Rejected (or deleted) is Rejected or gone still (one
    DescribeModelPackage): a decision to replace the champion rests on it. Approved again by a person since the pass
    that noted it, the notes are taken off, the run's record says Approved, and the champion is compared as usual.
    Raises when SageMaker refuses for a moment; any other refusal leaves the pass's note to decide."""
    champion = get_champion(runs.table, dataset)
    if champion is None or champion.package_rejected is None or not champion.model_package_arn:
        return False
    try:
        status = registry.approval_status(sagemaker, champion.model_package_arn)
    except ClientError as exc:
        if aws_errors.transient(exc):
            raise
        return True  # gone (never back), or unreadable: the note stands (set_champion's write holds only with it)
    if status == registry.REJECTED:
        return True
    approved_again(runs.table, champion)
    if status == registry.APPROVED:
        record_approval(runs, champion.run_id, champion.model_package_arn, registry.APPROVED, None)
    return False


def found_rejected(runs: RunsRepository, sagemaker: Any, dataset: str) -> bool:
    """Whether the champion's package, not noted Rejected yet, read Rejected now, or is gone (one
    DescribeModelPackage): noted then as a pass would note it (``_rejected``: on the pointer unless it moved
    meanwhile, and on the run's record),
    so that a decision about to keep the champion replaces it instead, without waiting for the next pass (the caller
    reads the pointer and the package again before acting on the note: ``still_rejected``). False when the champion
    has no package or a note already, or when the package is not Rejected. SageMaker's and DynamoDB's refusals
    raise: the caller's to weigh (``registration._found_rejected``)."""
    champion = get_champion(runs.table, dataset)
    if champion is None or champion.package_rejected is not None or not champion.model_package_arn:
        return False
    try:
        status, description = registry.approval(sagemaker, champion.model_package_arn)
    except ClientError as exc:
        if not registry.package_gone(exc):
            raise
        _rejected(runs, champion, None, datetime.now(UTC), deleted=True)
        return True
    if status != registry.REJECTED:
        return False
    _rejected(runs, champion, description, datetime.now(UTC))
    return True


def _mark(table: Any, champion: Champion, attribute: str, value: Any) -> bool:
    """Keep ``value`` on the pointer as ``attribute`` unless it has one already (None: take it off), unless the
    pointer moved meanwhile: a new champion starts without either mark (``approval_refused_since``: when SageMaker
    first refused to approve the champion's package; ``package_rejected``: a person rejected it). False when the pointer
    moved."""
    names = {"#a": attribute}
    if value is None:
        update, values = "REMOVE #a", {":version": champion.version}
    else:
        update, values = "SET #a = if_not_exists(#a, :value)", {":version": champion.version, ":value": value}
    try:
        table.update_item(Key={"run_id": champion_key(champion.dataset)}, UpdateExpression=update,
                          ConditionExpression="version = :version", ExpressionAttributeNames=names,
                          ExpressionAttributeValues=to_item(values))
    except ClientError as exc:
        if not aws_errors.lost_race(exc):
            raise
        return False
    return True


def note(table: Any, dataset: str, run_id: str, arn: str) -> str:
    """Note ``run_id``'s package in the pointer as a former champion's, for the reconciler's passes to put back to
    pending: a package approved after the pointer moved away from its run (and its entry settled). "noted";
    "champion" when the run is champion (again): its package stays Approved; "moved" when the pointer changed
    between the read and the write. Raises when DynamoDB refuses.

    The write adds one to the pointer's version: a move (``set_champion``) or a pass's ``_forget`` that read the
    pointer before it fails its condition instead of dropping the entry."""
    current = get_champion(table, dataset)
    if current is None or current.run_id == run_id:
        return "champion" if current is not None else "moved"
    entry = {"run_id": run_id, "model_package_arn": arn, "since": now_iso(), "replaced_by": current.run_id,
             "version": current.version + 1}
    names = {"#d": "dethroned", "#v": "version"}
    if current.dethroned:
        update, names["#r"], values = "SET #d.#r = :entry", run_id, {":entry": entry}
    else:
        update, values = "SET #d = :entry", {":entry": {run_id: entry}}
    try:
        table.update_item(Key={"run_id": champion_key(dataset)}, UpdateExpression=f"{update}, #v = #v + :one",
                          ConditionExpression="#v = :version", ExpressionAttributeNames=names,
                          ExpressionAttributeValues=to_item({**values, ":version": current.version, ":one": 1}))
    except ClientError as exc:
        if aws_errors.lost_race(exc):
            return "moved"
        raise
    champion_rotation.mark(table, dataset)
    return "noted"


def no_longer_champion(dataset: str) -> str:
    """Why a package went back to pending, as SageMaker records it (its ApprovalDescription)."""
    return f"no longer champion of {dataset}"


def _why(champion: Champion) -> str:
    return f"{no_longer_champion(champion.dataset)}: {champion.run_id} is, since {champion.changed_at}"


def _set(sagemaker: Any, noted: dict[str, Any], wanted: str, why: str, now: datetime) -> str | None:
    """Set the noted package's approval; None when it no longer exists or SageMaker refused it for good for
    registry.GIVE_UP_SECONDS (logged, and the error kept in ``noted``); Rejected, unchanged, when it is to go back to
    pending and a person rejected it. Raises otherwise."""
    try:
        if wanted == registry.PENDING:
            return registry.back_to_pending(sagemaker, noted["model_package_arn"], why)
        registry.set_approval(sagemaker, noted["model_package_arn"], wanted, why)
    except ClientError as exc:
        if registry.package_gone(exc):
            noted["error"] = PACKAGE_GONE
            return None
        since = parse_iso(noted.get("since") or now.isoformat())
        if not registry.refused_for_good(exc, since, now):
            raise
        logger.error("gave up changing the approval of a former champion's package",
                     extra={"run_id": noted.get("run_id"), "model_package_arn": noted["model_package_arn"],
                            "error": aws_errors.describe(exc)})
        noted["error"] = (f"{registry.APPROVAL_FAILED}: not set to {wanted}, refused for "
                          f"{registry.GIVE_UP_DAYS} days: {aws_errors.text(exc)}")
        return None
    return wanted


def record_approval(runs: RunsRepository, run_id: str, arn: str | None, approval: str | None,
                    error: str | None = None) -> None:
    """The run's own record says what its package's approval is now (``runs show``); nothing when it did not change
    or the run is gone."""
    item = runs.get(run_id)
    if item is None or not arn or item.get("model_package_arn") != arn:
        return
    entry_now = dict(item.get("registry") or {})
    if approval is not None:
        # a stale "approval failed" goes, unless it is a withdrawal still owed (withdrawal.py settles and clears it)
        entry_now = {**(entry_now if withdrawal.owed(item) else registry.without_approval_error(entry_now)),
                     "approval": approval}
    elif error:
        if not error.startswith(registry.APPROVAL_FAILED):  # the package is gone: it has no approval
            entry_now.pop("approval", None)
        entry_now["error"] = error
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
        if not aws_errors.lost_race(exc):
            raise
