"""One Approved model package per dataset, the champion's: a champion replaced (by a better challenger or by
``promote``) has its package put back to pending, right after the move or by the reconciler's next pass, and a
rollback by ``promote`` approves the older package again (former_champions.py)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError

from reviewtune.core import champion as champion_module
from reviewtune.core import (
    champion_rotation,
    former_champions,
    promotion,
    reconciler,
    registration,
    registry,
    slots,
)
from reviewtune.core.champion import (
    ChampionChanged,
    get_champion,
    plan_challenge,
    promote_manually,
    set_champion,
)
from reviewtune.core.promotion import PromotionError, promote
from reviewtune.core.reasons import PERSON_REASON_MAX_CHARS
from reviewtune.core.runs import RunsRepository, RunStatus, to_item
from tests.functional.pipeline import Pipeline, good_file, later, measured
from tests.functional.test_guarantees import _stale_claims
from tests.functional.test_lifecycle import start
from tests.functional.test_record_results import EVALUATION
from tests.support.faults import client_error

DATASET = "team/a.tsv"


@pytest.fixture
def pipeline(stack):
    return Pipeline(stack)


def approvals(pipeline: Pipeline) -> dict[str, str]:
    """Run id -> its package's approval status in the registry."""
    return {p["CustomerMetadataProperties"]["run_id"]: p["ModelApprovalStatus"] for p in pipeline.sagemaker.packages()}


def recorded(pipeline: Pipeline, run_id: str) -> str | None:
    return (pipeline.run(run_id).get("registry") or {}).get("approval")


def noted(pipeline: Pipeline) -> set[str]:
    """The runs the pointer still notes as replaced champions whose approval is to settle."""
    return set(get_champion(pipeline.clients.runs_table, DATASET).dethroned)


def champion_then_challenger(pipeline: Pipeline) -> tuple[str, str]:
    """``first`` champion; ``second`` measured better by far, its evaluation event not yet handled."""
    first = start(pipeline)
    pipeline.succeed(first)
    second = start(pipeline, body=good_file(seed=3))
    pipeline.finish_tuning_well(second)
    pipeline.tuning_ended(second)
    pipeline.sagemaker.finish_processing(f"{second}-eval", evaluation={
        **EVALUATION, "comparison": {"champion_run_id": first, **measured(0.90, 0.73)}})
    return first, second


def test_a_champion_replaced_by_a_better_challenger_goes_back_to_pending(pipeline):
    first, second = champion_then_challenger(pipeline)
    pipeline.evaluation_ended(second)

    assert get_champion(pipeline.clients.runs_table, DATASET).run_id == second
    assert approvals(pipeline) == {first: "PendingManualApproval", second: "Approved"}
    assert recorded(pipeline, first) == "PendingManualApproval" and recorded(pipeline, second) == "Approved"
    assert noted(pipeline) == set()
    [package] = [p for p in pipeline.sagemaker.packages() if p["ModelApprovalStatus"] == "Approved"]
    assert package["ModelPackageArn"] == get_champion(pipeline.clients.runs_table, DATASET).model_package_arn
    reason = pipeline.sagemaker.approval_descriptions[pipeline.run(first)["model_package_arn"]]
    assert reason.startswith(f"no longer champion of {DATASET}: {second} is")


def test_a_rollback_by_promote_approves_the_older_package_and_puts_the_newer_back(pipeline):
    first, second = champion_then_challenger(pipeline)
    pipeline.evaluation_ended(second)
    runs = RunsRepository(pipeline.clients.runs_table)

    done = promote(runs, pipeline.sagemaker, pipeline.settings.bucket, first, reason="rollback", by="ops")

    assert done.previous_run_id == second
    assert approvals(pipeline) == {first: "Approved", second: "PendingManualApproval"}
    assert recorded(pipeline, first) == "Approved" and recorded(pipeline, second) == "PendingManualApproval"
    assert noted(pipeline) == set()


def test_a_promotion_by_nobody_is_refused_before_anything_moves(pipeline):
    first, second = champion_then_challenger(pipeline)
    pipeline.evaluation_ended(second)
    before = approvals(pipeline)

    with pytest.raises(PromotionError, match="needs who makes it"):
        promote(RunsRepository(pipeline.clients.runs_table), pipeline.sagemaker, pipeline.settings.bucket, first,
                reason="rollback", by=" ")

    assert get_champion(pipeline.clients.runs_table, DATASET).run_id == second
    assert approvals(pipeline) == before


def test_a_promotion_s_long_reason_is_kept_shortened_so_the_champion_s_history_stays_within_an_item(pipeline):
    first, second = champion_then_challenger(pipeline)
    pipeline.evaluation_ended(second)
    runs = RunsRepository(pipeline.clients.runs_table)

    for run_id in (first, second, first, second):  # each promotion a history entry of the champion's one item
        done = promote(runs, pipeline.sagemaker, pipeline.settings.bucket, run_id, reason="x" * 120_000, by="ops")

    history = get_champion(pipeline.clients.runs_table, DATASET).history
    assert [entry["run_id"] for entry in history[-4:]] == [first, second, first, second]
    assert all(len(entry["why"]) <= len("promoted manually: ") + PERSON_REASON_MAX_CHARS for entry in history)
    assert history[-1]["why"].endswith("(reason shortened)")
    assert pipeline.run(second)["promoted"]["reason"] == history[-1]["why"].removeprefix("promoted manually: ")
    assert done.reason == pipeline.run(second)["promoted"]["reason"]  # what the command says it recorded


def test_a_withdrawal_refused_right_after_the_move_is_made_by_the_reconciler_s_next_pass(pipeline):
    first, second = champion_then_challenger(pipeline)
    # the challenger's own approval goes through; the withdrawal right after its transaction is throttled
    pipeline.sagemaker.fail["update_model_package"] = [None, "ThrottlingException"]
    pipeline.evaluation_ended(second)

    assert pipeline.run(second)["status"] == "SUCCEEDED"
    assert approvals(pipeline) == {first: "Approved", second: "Approved"}
    assert noted(pipeline) == {first}  # the pointer's move noted it: nothing is forgotten

    result = pipeline.reconcile()

    assert result["former_champions"] == 1 and "former_champions" not in result["errors"]
    assert approvals(pipeline) == {first: "PendingManualApproval", second: "Approved"}
    assert recorded(pipeline, first) == "PendingManualApproval"
    assert noted(pipeline) == set()
    assert pipeline.reconcile()["former_champions"] == 0


def _withdrawal_of_first_left_to_the_pass(pipeline: Pipeline) -> tuple[str, str, dict[str, str]]:
    """The second run replaces the first as champion, and SageMaker throttles the first's withdrawal: it is noted
    for the reconciler's pass. The two runs and their packages."""
    first, second = champion_then_challenger(pipeline)
    pipeline.sagemaker.fail["update_model_package"] = [None, "ThrottlingException"]
    pipeline.evaluation_ended(second)
    assert noted(pipeline) == {first}
    return first, second, {run_id: pipeline.run(run_id)["model_package_arn"] for run_id in (first, second)}


def _promoted_by_hand(pipeline: Pipeline, run_id: str, champion: str, arns: dict[str, str], set_approval) -> None:
    """A person promotes ``run_id`` over ``champion`` (`reviewtune promote`: the pointer moves, then the approval)."""
    promote_manually(pipeline.clients.runs_table, DATASET, run_id=run_id, accuracy=0.7412, test_rows=309,
                     test_split="sha256:x", reason="rollback", expected_run_id=champion, model_package_arn=arns[run_id])
    set_approval(pipeline.sagemaker, arns[run_id], registry.APPROVED, "promoted manually")


def test_a_promotion_back_while_a_pass_withdraws_the_package_ends_approved(pipeline, monkeypatch):
    """A person promotes the older run back between the pass's read of the pointer and its withdrawal (the promotion
    moves the pointer, then approves): the pass reads the pointer again and approves the package again; the newer
    run, replaced by the promotion, goes back to pending."""
    first, second, arns = _withdrawal_of_first_left_to_the_pass(pipeline)
    set_approval = registry.set_approval

    def promoted_meanwhile(sagemaker, arn, status, description=None):
        if arn == arns[first] and status == registry.PENDING and not promoted_meanwhile.done:
            promoted_meanwhile.done = True
            _promoted_by_hand(pipeline, first, second, arns, set_approval)
        return set_approval(sagemaker, arn, status, description)

    promoted_meanwhile.done = False
    monkeypatch.setattr(registry, "set_approval", promoted_meanwhile)
    pipeline.reconcile()

    assert get_champion(pipeline.clients.runs_table, DATASET).run_id == first
    assert approvals(pipeline)[first] == "Approved"
    assert pipeline.sagemaker.approval_descriptions[arns[first]] == former_champions.CHAMPION_APPROVED
    assert noted(pipeline) == {second}  # noted by the promotion's move; the next pass puts it back
    pipeline.reconcile()
    assert approvals(pipeline) == {first: "Approved", second: "PendingManualApproval"}
    assert noted(pipeline) == set()


def test_a_former_champion_promoted_back_and_replaced_again_while_a_pass_withdraws_it_keeps_its_new_entry(
    pipeline, monkeypatch
):
    """Right after the pass puts the former champion's package back to pending, a person promotes it back (approving
    it again) and then promotes the newer run again, which notes it anew: the pass forgets only the entry it settled,
    not the new one, so the next pass puts the package back and one package stays Approved."""
    first, second, arns = _withdrawal_of_first_left_to_the_pass(pipeline)
    set_approval = registry.set_approval

    def back_and_forth_after(sagemaker, arn, status, description=None):
        set_approval(sagemaker, arn, status, description)
        if arn == arns[first] and status == registry.PENDING and not back_and_forth_after.done:
            back_and_forth_after.done = True
            _promoted_by_hand(pipeline, first, second, arns, set_approval)
            _promoted_by_hand(pipeline, second, first, arns, set_approval)

    back_and_forth_after.done = False
    monkeypatch.setattr(registry, "set_approval", back_and_forth_after)
    pipeline.reconcile()
    monkeypatch.setattr(registry, "set_approval", set_approval)

    assert get_champion(pipeline.clients.runs_table, DATASET).run_id == second
    assert approvals(pipeline)[first] == "Approved" and first in noted(pipeline)  # its second promotion's entry kept
    pipeline.reconcile()
    assert approvals(pipeline) == {first: "PendingManualApproval", second: "Approved"} and noted(pipeline) == set()


def test_a_former_champion_whose_package_was_deleted_is_forgotten_and_its_record_says_so(pipeline):
    first, second = champion_then_challenger(pipeline)
    pipeline.sagemaker.fail["update_model_package"] = [None, "ThrottlingException"]
    pipeline.evaluation_ended(second)
    pipeline.sagemaker.delete_model_package(ModelPackageName=pipeline.run(first)["model_package_arn"])

    assert pipeline.reconcile()["former_champions"] == 0
    assert noted(pipeline) == set()
    assert pipeline.run(first)["registry"]["error"] == "the model package no longer exists"
    assert "approval" not in pipeline.run(first)["registry"]


def test_a_withdrawal_refused_for_good_is_tried_for_a_week_then_recorded_on_the_run(pipeline):
    first, second = champion_then_challenger(pipeline)
    pipeline.sagemaker.fail["update_model_package"] = [None, "AccessDeniedException"]
    pipeline.evaluation_ended(second)
    pipeline.sagemaker.fail["update_model_package"] = ["AccessDeniedException"]
    result = pipeline.reconcile(later(24))
    assert "former_champions" in result["errors"] and noted(pipeline) == {first}

    pipeline.sagemaker.fail["update_model_package"] = ["AccessDeniedException"]
    result = pipeline.reconcile(later(24) + timedelta(days=7))

    assert "former_champions" not in result["errors"] and noted(pipeline) == set()
    assert approvals(pipeline)[first] == "Approved"
    assert pipeline.run(first)["registry"]["error"].startswith(
        "approval failed: not set to PendingManualApproval, refused for 7 days: ")


def test_a_promotion_whose_withdrawal_is_refused_says_so_and_leaves_it_to_the_reconciler(pipeline):
    first, second = champion_then_challenger(pipeline)
    pipeline.evaluation_ended(second)
    pipeline.sagemaker.fail["update_model_package"] = [None, "ThrottlingException"]  # the approval, then the withdrawal

    done = promote(RunsRepository(pipeline.clients.runs_table), pipeline.sagemaker, pipeline.settings.bucket, first,
                   reason="rollback", by="ops")

    assert done.as_dict()["previous_champion_approval"] == "Approved"
    assert approvals(pipeline) == {first: "Approved", second: "Approved"} and noted(pipeline) == {second}
    pipeline.reconcile()
    assert approvals(pipeline) == {first: "Approved", second: "PendingManualApproval"} and noted(pipeline) == set()


def test_a_champion_whose_approval_was_refused_keeps_the_one_before_approved_until_a_pass_approves_it(pipeline):
    """record_results could not approve the new champion's package (recorded on the run): the one before stays
    Approved, so something approved still serves; a pass approves the champion's package, then puts the other back."""
    first, second = champion_then_challenger(pipeline)
    pipeline.sagemaker.fail["update_model_package"] = ["AccessDeniedException"]  # record_results' approval
    pipeline.evaluation_ended(second)

    assert get_champion(pipeline.clients.runs_table, DATASET).run_id == second
    assert pipeline.run(second)["registry"]["error"].startswith("approval failed: AccessDeniedException")
    assert approvals(pipeline) == {first: "Approved", second: "PendingManualApproval"} and noted(pipeline) == {first}

    result = pipeline.reconcile()

    assert result["former_champions"] == 2 and "former_champions" not in result["errors"]
    assert approvals(pipeline) == {first: "PendingManualApproval", second: "Approved"} and noted(pipeline) == set()
    assert recorded(pipeline, second) == "Approved" and recorded(pipeline, first) == "PendingManualApproval"


def test_a_champion_s_package_left_pending_by_a_pass_that_died_is_approved_by_the_next(pipeline, monkeypatch):
    """The pass put the package of a run promoted back meanwhile to pending, and died before approving it again (no
    entry is left for it in the pointer): the next pass's check of the champion's package approves it."""
    first, second = champion_then_challenger(pipeline)
    pipeline.evaluation_ended(second)
    runs = RunsRepository(pipeline.clients.runs_table)
    promote(runs, pipeline.sagemaker, pipeline.settings.bucket, first, reason="rollback", by="ops")
    assert noted(pipeline) == set()
    registry.set_approval(pipeline.sagemaker, pipeline.run(first)["model_package_arn"], registry.PENDING, "stale pass")

    pipeline.reconcile()

    assert approvals(pipeline) == {first: "Approved", second: "PendingManualApproval"}
    assert pipeline.sagemaker.approval_descriptions[pipeline.run(first)["model_package_arn"]] == (
        former_champions.CHAMPION_APPROVED)
    assert pipeline.reconcile()["former_champions"] == 0  # nothing more to do: one Describe per champion


def test_a_promotion_whose_approval_lands_after_another_moved_the_champion_puts_it_back_and_says_so(
    pipeline, monkeypatch
):
    first, second = champion_then_challenger(pipeline)
    pipeline.evaluation_ended(second)
    runs = RunsRepository(pipeline.clients.runs_table)
    arn = pipeline.run(first)["model_package_arn"]
    set_approval = registry.set_approval

    def other_promotion_first(sagemaker, package, status, description=None):
        if package == arn and status == registry.APPROVED and not other_promotion_first.done:
            other_promotion_first.done = True  # Bob promotes `second` back, and settles, before this approval lands
            promote(runs, pipeline.sagemaker, pipeline.settings.bucket, second, reason="back", by="bob")
        return set_approval(sagemaker, package, status, description)

    other_promotion_first.done = False
    monkeypatch.setattr(registry, "set_approval", other_promotion_first)
    with pytest.raises(PromotionError, match=f"changed to {second} while {first} was being promoted; its package is") as raised:
        promote(runs, pipeline.sagemaker, pipeline.settings.bucket, first, reason="rollback", by="alice")
    assert f"run `reviewtune champion --dataset {DATASET}` and decide again" in str(raised.value)

    assert get_champion(pipeline.clients.runs_table, DATASET).run_id == second
    assert approvals(pipeline) == {first: "PendingManualApproval", second: "Approved"}
    assert recorded_approvals(pipeline, first, second) == approvals(pipeline)  # as `runs show` says them


@pytest.mark.parametrize("lands", ["before the check", "after the check", "before a record write refused"])
def test_a_promotion_that_lands_around_another_s_last_check_leaves_each_run_s_record_as_its_package_is(
    pipeline, monkeypatch, lands
):
    """Bob's promotion lands between Alice's approval and her command's end: whether her check of the pointer sees
    it or not, her run's record says what its package is (pending), not the Approved she had set."""
    first, second = champion_then_challenger(pipeline)
    pipeline.evaluation_ended(second)
    runs = RunsRepository(pipeline.clients.runs_table)
    still_champion = promotion._still_champion
    landed: list[str] = []

    def bob_promotes(*args):
        if landed:  # Bob's own check
            return still_champion(*args)
        landed.append("bob")
        if lands == "after the check":
            still_champion(*args)
        promote(runs, pipeline.sagemaker, pipeline.settings.bucket, second, reason="back", by="bob")
        if lands != "after the check":
            still_champion(*args)
        return None

    monkeypatch.setattr(promotion, "_still_champion", bob_promotes)
    if lands == "before a record write refused":  # Alice's record is throttled: her check still runs
        update_if = runs.update_if

        def throttled(run_id, *args, **kwargs):
            if run_id == first and kwargs.get("promoted"):
                raise client_error("ThrottlingException", "slow down", "UpdateItem")
            return update_if(run_id, *args, **kwargs)

        monkeypatch.setattr(runs, "update_if", throttled)
    if lands != "after the check":
        with pytest.raises(PromotionError, match=f"changed to {second} while {first} was being promoted"):
            promote(runs, pipeline.sagemaker, pipeline.settings.bucket, first, reason="rollback", by="alice")
    else:
        promote(runs, pipeline.sagemaker, pipeline.settings.bucket, first, reason="rollback", by="alice")

    assert get_champion(pipeline.clients.runs_table, DATASET).run_id == second
    assert approvals(pipeline) == {first: "PendingManualApproval", second: "Approved"}
    assert recorded_approvals(pipeline, first, second) == approvals(pipeline)
    assert noted(pipeline) == set()  # nothing left for the reconciler


def recorded_approvals(pipeline, *run_ids: str) -> dict[str, str | None]:
    return {run_id: recorded(pipeline, run_id) for run_id in run_ids}


def test_a_late_approval_sagemaker_will_not_put_back_is_noted_for_the_reconciler(pipeline, monkeypatch):
    """As above, but SageMaker refuses putting the package back: the pointer notes it, and the reconciler's next pass
    puts it back to pending (one Approved package, the champion's)."""
    first, second = champion_then_challenger(pipeline)
    pipeline.evaluation_ended(second)
    runs = RunsRepository(pipeline.clients.runs_table)
    arn = pipeline.run(first)["model_package_arn"]
    set_approval = registry.set_approval
    state = {"landed": False, "refused": False}

    def racing(sagemaker, package, status, description=None):
        if package == arn and status == registry.APPROVED and not state["landed"]:
            promote(runs, pipeline.sagemaker, pipeline.settings.bucket, second, reason="back", by="bob")
            state["landed"] = True  # Alice's approval lands after Bob's promotion settled
        elif package == arn and status == registry.PENDING and state["landed"] and not state["refused"]:
            state["refused"] = True
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "UpdateModelPackage")
        return set_approval(sagemaker, package, status, description)

    monkeypatch.setattr(registry, "set_approval", racing)
    next_pass = "back to pending failed \\(AccessDeniedException: no\\): the reconciler's next pass does it"
    with pytest.raises(PromotionError, match=next_pass):
        promote(runs, pipeline.sagemaker, pipeline.settings.bucket, first, reason="rollback", by="alice")
    assert approvals(pipeline) == {first: "Approved", second: "Approved"} and noted(pipeline) == {first}

    pipeline.reconcile()

    assert approvals(pipeline) == {first: "PendingManualApproval", second: "Approved"} and noted(pipeline) == set()
    assert recorded(pipeline, first) == "PendingManualApproval"


def test_a_pass_that_approved_a_champion_replaced_meanwhile_puts_it_back(pipeline, monkeypatch):
    """The pass approves the champion's package (record_results could not), and before it reads the pointer again a
    person promotes the run before back: that package goes back to pending and the one promoted stays Approved."""
    first, second = champion_then_challenger(pipeline)
    pipeline.sagemaker.fail["update_model_package"] = ["AccessDeniedException"]  # record_results' approval
    pipeline.evaluation_ended(second)
    arns = {run_id: pipeline.run(run_id)["model_package_arn"] for run_id in (first, second)}
    set_approval = registry.set_approval

    def promoted_back_after(sagemaker, arn, status, description=None):
        set_approval(sagemaker, arn, status, description)
        if arn == arns[second] and status == registry.APPROVED and not promoted_back_after.done:
            promoted_back_after.done = True
            promote_manually(pipeline.clients.runs_table, DATASET, run_id=first, accuracy=0.7412, test_rows=309,
                             test_split="sha256:x", reason="rollback", expected_run_id=second,
                             model_package_arn=arns[first])
            set_approval(sagemaker, arns[first], registry.APPROVED, "promoted manually")

    promoted_back_after.done = False
    monkeypatch.setattr(registry, "set_approval", promoted_back_after)
    pipeline.reconcile()

    assert get_champion(pipeline.clients.runs_table, DATASET).run_id == first
    assert approvals(pipeline) == {first: "Approved", second: "PendingManualApproval"}
    assert recorded(pipeline, second) == "PendingManualApproval" and recorded(pipeline, first) == "Approved"
    pipeline.reconcile()
    assert approvals(pipeline) == {first: "Approved", second: "PendingManualApproval"} and noted(pipeline) == set()


@pytest.mark.parametrize("correction", ["throttled", "lands"])
def test_a_pass_that_approved_a_champion_whose_successor_settled_meanwhile_puts_it_back_even_if_refused_once(
    pipeline, monkeypatch, correction
):
    """The pass approves the champion's package (record_results could not); before that approval lands, a better
    run's record_results moves the pointer and settles (that package back to pending, its entry forgotten). The pass
    reads the pointer again and puts the package back to pending; when SageMaker throttles that one call, the package
    is noted on the pointer first, so a later pass puts it back: one Approved package, the new champion's."""
    first, second = champion_then_challenger(pipeline)
    pipeline.sagemaker.fail["update_model_package"] = ["AccessDeniedException"]  # second's approval by record_results
    pipeline.evaluation_ended(second)
    assert approvals(pipeline) == {first: "Approved", second: "PendingManualApproval"} and noted(pipeline) == {first}
    third = start(pipeline, body=good_file(seed=5))
    pipeline.finish_tuning_well(third)
    pipeline.tuning_ended(third)
    assert pipeline.processing_argument(third, "--champion-run-id") == second
    arn = pipeline.run(second)["model_package_arn"]
    set_approval = registry.set_approval
    landed = []

    def third_settles_first(sagemaker, package, status, description=None):
        if package == arn and status == registry.APPROVED and not landed:
            pipeline.sagemaker.finish_processing(f"{third}-eval", evaluation={
                **EVALUATION, "comparison": {"champion_run_id": second, **measured(0.95, 0.74)}})
            pipeline.evaluation_ended(third)  # the pointer moves to third, which settles second's package
            landed.append(status)
        elif package == arn and status == registry.PENDING and landed and correction == "throttled":
            raise client_error("ThrottlingException", "Rate exceeded", "UpdateModelPackage")
        return set_approval(sagemaker, package, status, description)

    monkeypatch.setattr(registry, "set_approval", third_settles_first)
    if correction == "throttled":
        with pytest.raises(ClientError, match="Throttling"):
            former_champions.settle(RunsRepository(pipeline.clients.runs_table), pipeline.sagemaker, DATASET)
        assert approvals(pipeline)[second] == "Approved" and second in noted(pipeline)
    else:
        former_champions.settle(RunsRepository(pipeline.clients.runs_table), pipeline.sagemaker, DATASET)
    monkeypatch.setattr(registry, "set_approval", set_approval)
    pipeline.reconcile()

    assert get_champion(pipeline.clients.runs_table, DATASET).run_id == third
    assert approvals(pipeline) == {first: "PendingManualApproval", second: "PendingManualApproval", third: "Approved"}
    assert recorded(pipeline, second) == "PendingManualApproval" and noted(pipeline) == set()


def test_a_champion_s_package_refused_for_good_is_recorded_after_a_week_and_the_one_before_keeps_serving(pipeline):
    first, second = champion_then_challenger(pipeline)
    pipeline.sagemaker.fail["update_model_package"] = ["AccessDeniedException"] * 2  # record_results', the pass's
    pipeline.evaluation_ended(second)
    assert "former_champions" in pipeline.reconcile(later(1))["errors"]  # within the week: an error every pass

    pipeline.sagemaker.fail["update_model_package"] = ["AccessDeniedException"]
    result = pipeline.reconcile(later(1) + timedelta(days=7))

    assert "former_champions" not in result["errors"]
    assert approvals(pipeline) == {first: "Approved", second: "PendingManualApproval"} and noted(pipeline) == {first}
    assert pipeline.run(second)["registry"]["error"].startswith(
        "approval failed: the champion's package could not be approved for 7 days: ")


def test_a_champion_promoted_back_over_one_without_a_package_has_its_own_entry_forgotten(pipeline):
    """The pointer moved to a run with no package (its registration failed) notes the champion it replaced, and keeps
    it Approved; promoted back, that run's own entry is all there is to settle: the next pass forgets it."""
    first, second = champion_then_challenger(pipeline)
    pipeline.evaluation_ended(second)
    runs = RunsRepository(pipeline.clients.runs_table)
    promote_manually(runs.table, DATASET, run_id="reviewtune-unregistered", accuracy=0.75, test_rows=309,
                     test_split="sha256:x", reason="by hand", expected_run_id=second, model_package_arn=None)
    pipeline.reconcile()
    assert noted(pipeline) == {second} and approvals(pipeline)[second] == "Approved"

    promote(runs, pipeline.sagemaker, pipeline.settings.bucket, second, reason="back", by="ops")
    assert noted(pipeline) == {second}
    pipeline.reconcile()

    assert noted(pipeline) == set()
    assert approvals(pipeline) == {first: "PendingManualApproval", second: "Approved"}


def test_the_week_before_giving_up_a_champion_s_approval_counts_from_the_first_refusal(pipeline):
    """A champion of long standing whose package was put back to pending (by hand, or a race) and whose approval
    SageMaker then refuses is tried for a week from that refusal (kept on the pointer), not given up at once; once
    approved, the pointer forgets the refusal."""
    first, second = champion_then_challenger(pipeline)
    pipeline.evaluation_ended(second)
    registry.set_approval(pipeline.sagemaker, pipeline.run(second)["model_package_arn"], registry.PENDING, "by hand")
    pipeline.sagemaker.fail["update_model_package"] = ["AccessDeniedException"]
    refused = later(24 * 30)

    assert "former_champions" in pipeline.reconcile(refused)["errors"]
    champion = get_champion(pipeline.clients.runs_table, DATASET)
    assert champion.approval_refused_since is not None and "error" not in pipeline.run(second)["registry"]

    pipeline.sagemaker.fail["update_model_package"] = ["AccessDeniedException"]
    assert "former_champions" in pipeline.reconcile(refused + timedelta(days=6))["errors"]
    pipeline.sagemaker.fail["update_model_package"] = ["AccessDeniedException"]
    assert "former_champions" not in pipeline.reconcile(refused + timedelta(days=7, minutes=1))["errors"]
    assert pipeline.run(second)["registry"]["error"].startswith(
        "approval failed: the champion's package could not be approved for 7 days: ")

    pipeline.reconcile(refused + timedelta(days=8))
    assert approvals(pipeline) == {first: "PendingManualApproval", second: "Approved"}
    assert get_champion(pipeline.clients.runs_table, DATASET).approval_refused_since is None
    assert "error" not in pipeline.run(second)["registry"]


def test_a_note_of_a_late_approval_survives_a_pass_that_read_the_pointer_before_it(pipeline):
    """``note`` adds one to the pointer's version: a pass that read the pointer before the note (and settled the same
    run meanwhile) fails to forget it, so the next pass puts the package back; the champion itself is never noted."""
    first, second = champion_then_challenger(pipeline)
    pipeline.evaluation_ended(second)
    table = pipeline.clients.runs_table
    arn = pipeline.run(first)["model_package_arn"]
    assert noted(pipeline) == set()
    before = get_champion(table, DATASET)

    assert former_champions.note(table, DATASET, first, arn) == "noted"  # an empty map: the map is written whole
    stale = dataclasses.replace(before, dethroned={first: {}})
    assert get_champion(table, DATASET).version == before.version + 1
    former_champions._forget(table, stale, [first])  # the pass read the pointer before the note: its forget fails
    assert noted(pipeline) == {first}
    assert former_champions.note(table, DATASET, first, arn) == "noted"  # noted again: the entry written anew
    assert former_champions.note(table, DATASET, second, pipeline.run(second)["model_package_arn"]) == "champion"
    assert noted(pipeline) == {first}

    registry.set_approval(pipeline.sagemaker, arn, registry.APPROVED, "a late approval")
    pipeline.reconcile()
    assert approvals(pipeline) == {first: "PendingManualApproval", second: "Approved"} and noted(pipeline) == set()


def reject_by_hand(pipeline: Pipeline, run_id: str, why: str = "bias found in the audit") -> None:
    """A person rejects the run's package in the registry (Studio, or UpdateModelPackage)."""
    registry.set_approval(pipeline.sagemaker, pipeline.run(run_id)["model_package_arn"], registry.REJECTED, why)


def test_a_champion_s_package_a_person_rejected_stays_rejected_and_the_next_success_takes_its_place(pipeline):
    first = start(pipeline)
    pipeline.succeed(first)
    reject_by_hand(pipeline, first)

    pipeline.reconcile()
    pipeline.reconcile(later(1))

    assert approvals(pipeline) == {first: "Rejected"} and recorded(pipeline, first) == "Rejected"
    marked = get_champion(pipeline.clients.runs_table, DATASET).package_rejected
    assert marked["description"] == "bias found in the audit" and marked["found_at"]
    # a challenger measured worse than the rejected champion still takes its place: the rejected one does not serve
    second = start(pipeline, body=good_file(seed=3))
    pipeline.finish_tuning_well(second)
    pipeline.tuning_ended(second)
    pipeline.sagemaker.finish_processing(f"{second}-eval", evaluation={
        **EVALUATION, "comparison": {"champion_run_id": first, **measured(0.60, 0.73)}})
    pipeline.evaluation_ended(second)

    champion = get_champion(pipeline.clients.runs_table, DATASET)
    assert champion.run_id == second and champion.package_rejected is None
    decision = pipeline.run(second)["champion"]
    assert decision["decision"] == "promoted"
    assert decision["reason"].startswith(f"new champion: the model package of champion {first} was Rejected in the "
                                         "Model Registry; challenger ")
    [told] = [m for m in pipeline.messages(second)]
    assert "was Rejected in the Model Registry" in told["Message"]
    pipeline.reconcile(later(2))
    assert approvals(pipeline) == {first: "Rejected", second: "Approved"}  # not put back to pending either
    assert recorded(pipeline, first) == "Rejected" and noted(pipeline) == set()


def test_a_rejected_champion_a_person_approves_again_keeps_its_place_and_loses_its_mark(pipeline):
    first = start(pipeline)
    pipeline.succeed(first)
    reject_by_hand(pipeline, first)
    pipeline.reconcile()
    assert get_champion(pipeline.clients.runs_table, DATASET).package_rejected is not None

    registry.set_approval(pipeline.sagemaker, pipeline.run(first)["model_package_arn"], registry.APPROVED, "audit ok")
    pipeline.reconcile(later(1))

    assert get_champion(pipeline.clients.runs_table, DATASET).package_rejected is None
    assert approvals(pipeline) == {first: "Approved"} and recorded(pipeline, first) == "Approved"


def test_a_former_champion_a_person_rejected_before_its_package_was_settled_stays_rejected(pipeline):
    first, second = champion_then_challenger(pipeline)
    pipeline.sagemaker.fail["update_model_package"] = [None, "ThrottlingException"]  # the move's settle: left to a pass
    pipeline.evaluation_ended(second)
    assert noted(pipeline) == {first}
    reject_by_hand(pipeline, first)

    pipeline.reconcile(later(1))

    assert approvals(pipeline) == {first: "Rejected", second: "Approved"} and noted(pipeline) == set()
    assert recorded(pipeline, first) == "Rejected"


def rejected_champion(pipeline: Pipeline, why: str | None = "bias found in the audit") -> str:
    """A champion whose package a person rejected, noted by a pass."""
    first = start(pipeline)
    pipeline.succeed(first)
    registry.set_approval(pipeline.sagemaker, pipeline.run(first)["model_package_arn"], registry.REJECTED, why)
    pipeline.reconcile()
    assert get_champion(pipeline.clients.runs_table, DATASET).package_rejected is not None
    return first


def challenger_measured(pipeline: Pipeline, champion: str, challenger: float, seed: int = 3) -> str:
    """A run measured ``challenger`` against the champion's 0.73 on the same reviews, its evaluation not yet handled."""
    run_id = start(pipeline, body=good_file(seed=seed))
    pipeline.finish_tuning_well(run_id)
    pipeline.tuning_ended(run_id)
    pipeline.sagemaker.finish_processing(f"{run_id}-eval", evaluation={
        **EVALUATION, "comparison": {"champion_run_id": champion, **measured(challenger, 0.73)}})
    return run_id


def test_a_challenger_without_a_package_of_its_own_is_compared_with_a_rejected_champion_as_usual(pipeline):
    first = rejected_champion(pipeline)
    unregistered = challenger_measured(pipeline, first, 0.60)
    pipeline.sagemaker.fail["create_model_package"] = ["AccessDeniedException"]

    pipeline.evaluation_ended(unregistered)

    assert pipeline.run(unregistered)["champion"]["decision"] == "kept"  # it could not serve in the champion's place
    champion = get_champion(pipeline.clients.runs_table, DATASET)
    assert champion.run_id == first and champion.package_rejected is not None
    registered = challenger_measured(pipeline, first, 0.60, seed=4)
    pipeline.evaluation_ended(registered)
    assert get_champion(pipeline.clients.runs_table, DATASET).run_id == registered


def test_promote_of_a_rejected_champion_approves_it_and_takes_the_note_off_at_once(pipeline):
    first = rejected_champion(pipeline)
    runs = RunsRepository(pipeline.clients.runs_table)

    done = promote(runs, pipeline.sagemaker, pipeline.settings.bucket, first, reason="audit was wrong", by="ops")

    assert done.already_champion and done.champion.package_rejected is None
    assert get_champion(pipeline.clients.runs_table, DATASET).package_rejected is None
    assert approvals(pipeline) == {first: "Approved"} and recorded(pipeline, first) == "Approved"
    # no pass between: a run that succeeds now is compared with the champion, and kept
    second = challenger_measured(pipeline, first, 0.60)
    pipeline.evaluation_ended(second)
    assert pipeline.run(second)["champion"]["decision"] == "kept"


def test_a_decision_resting_on_a_rejection_taken_back_meanwhile_is_made_again(pipeline):
    """record_results planned on the note; the package is approved again and the note taken off before its write:
    the write fails (ChampionChanged) instead of replacing a champion a person has just approved."""
    first = rejected_champion(pipeline)
    table = pipeline.clients.runs_table
    plan = plan_challenge(table, DATASET, run_id="reviewtune-challenger", accuracy=0.6, test_rows=309, comparison=None)
    assert plan.replaces_rejected and plan.moves
    former_champions.approved_again(table, get_champion(table, DATASET))

    with pytest.raises(ChampionChanged, match="no longer noted Rejected"):
        set_champion(table, DATASET, run_id="reviewtune-challenger", accuracy=0.6, test_rows=309, test_split="sha256:x",
                     why=plan.reason, expected_run_id=first, expect_rejected=plan.replaces_rejected)
    assert get_champion(table, DATASET).run_id == first


def test_a_rejection_without_a_description_of_its_own_does_not_show_reviewtune_s_approval_text(pipeline):
    first = rejected_champion(pipeline, why=None)

    marked = get_champion(pipeline.clients.runs_table, DATASET).package_rejected
    assert "description" not in marked and marked["found_at"]
    described = pipeline.sagemaker.describe_model_package(ModelPackageName=pipeline.run(first)["model_package_arn"])
    assert described["ApprovalDescription"].startswith("champion: first champion")  # what SageMaker still holds


def test_a_rejection_after_refused_approvals_takes_the_refusal_off(pipeline):
    first = start(pipeline)
    pipeline.succeed(first)
    arn = pipeline.run(first)["model_package_arn"]
    registry.set_approval(pipeline.sagemaker, arn, registry.PENDING, "by hand")
    pipeline.sagemaker.fail["update_model_package"] = ["AccessDeniedException"]
    pipeline.reconcile()
    assert get_champion(pipeline.clients.runs_table, DATASET).approval_refused_since is not None

    registry.set_approval(pipeline.sagemaker, arn, registry.REJECTED, "withdrawn")
    pipeline.reconcile(later(1))

    champion = get_champion(pipeline.clients.runs_table, DATASET)
    assert champion.approval_refused_since is None and champion.package_rejected["description"] == "withdrawn"


def test_a_rejected_champion_a_person_approved_again_before_the_next_pass_is_compared_as_usual(pipeline):
    first = rejected_champion(pipeline)
    registry.set_approval(pipeline.sagemaker, pipeline.run(first)["model_package_arn"], registry.APPROVED, "audit ok")
    second = challenger_measured(pipeline, first, 0.60)

    pipeline.evaluation_ended(second)  # no pass between: the note is still on the pointer

    assert pipeline.run(second)["champion"]["decision"] == "kept"
    champion = get_champion(pipeline.clients.runs_table, DATASET)
    assert champion.run_id == first and champion.package_rejected is None
    assert approvals(pipeline) == {first: "Approved", second: "PendingManualApproval"}
    assert recorded(pipeline, first) == "Approved"  # the run's record no longer says Rejected


def test_a_champion_rejected_since_the_last_pass_is_replaced_by_the_next_success_without_waiting_for_one(pipeline):
    first = start(pipeline)
    pipeline.succeed(first)
    pipeline.reconcile()
    reject_by_hand(pipeline, first)  # after the pass: no note on the pointer yet
    second = challenger_measured(pipeline, first, 0.60)

    pipeline.evaluation_ended(second)

    decision = pipeline.run(second)["champion"]
    assert decision["decision"] == "promoted"
    assert decision["reason"].startswith(f"new champion: the model package of champion {first} was Rejected")
    champion = get_champion(pipeline.clients.runs_table, DATASET)
    assert champion.run_id == second and champion.package_rejected is None
    assert approvals(pipeline) == {first: "Rejected", second: "Approved"} and recorded(pipeline, first) == "Rejected"


@pytest.mark.parametrize("status", ["Approved", "PendingManualApproval"])
def test_a_champion_not_rejected_is_kept_by_a_worse_challenger_and_nothing_is_noted(pipeline, status):
    first = start(pipeline)
    pipeline.succeed(first)
    registry.set_approval(pipeline.sagemaker, pipeline.run(first)["model_package_arn"], status, "by hand")
    second = challenger_measured(pipeline, first, 0.60)

    pipeline.evaluation_ended(second)

    assert pipeline.run(second)["champion"]["decision"] == "kept"
    champion = get_champion(pipeline.clients.runs_table, DATASET)
    assert champion.run_id == first and champion.package_rejected is None


def described(pipeline: Pipeline) -> int:
    return pipeline.sagemaker.calls.count("describe_model_package")


@pytest.mark.parametrize("error", ["AccessDeniedException", "ValidationException"])
def test_a_champion_package_record_results_cannot_read_leaves_the_comparison_to_decide(pipeline, error):
    first = start(pipeline)
    pipeline.succeed(first)
    reject_by_hand(pipeline, first)
    second = challenger_measured(pipeline, first, 0.60)
    pipeline.sagemaker.fail["describe_model_package"] = [error]
    before = described(pipeline)

    pipeline.evaluation_ended(second)

    assert described(pipeline) == before + 1 and not pipeline.sagemaker.fail["describe_model_package"]
    assert pipeline.run(second)["champion"]["decision"] == "kept"  # the next pass notes the rejection
    assert get_champion(pipeline.clients.runs_table, DATASET).package_rejected is None
    pipeline.reconcile(later(1))
    assert get_champion(pipeline.clients.runs_table, DATASET).package_rejected is not None


def test_a_champion_package_sagemaker_throttles_is_read_again_by_the_event_s_next_delivery(pipeline):
    first = start(pipeline)
    pipeline.succeed(first)
    reject_by_hand(pipeline, first)
    second = challenger_measured(pipeline, first, 0.60)
    pipeline.sagemaker.fail["describe_model_package"] = ["ThrottlingException"]

    with pytest.raises(Exception, match="ThrottlingException"):
        pipeline.evaluation_ended(second)  # Lambda delivers the event again
    assert pipeline.run(second)["status"] == "EVALUATING"
    pipeline.evaluation_ended(second)

    assert pipeline.run(second)["champion"]["decision"] == "promoted"
    assert get_champion(pipeline.clients.runs_table, DATASET).run_id == second


def test_a_champion_package_sagemaker_throttles_on_the_event_s_last_try_leaves_the_comparison_to_decide(
    pipeline, monkeypatch
):
    first = start(pipeline)
    pipeline.succeed(first)
    reject_by_hand(pipeline, first)
    second = challenger_measured(pipeline, first, 0.60)
    pipeline.sagemaker.fail["describe_model_package"] = ["ThrottlingException"]
    monkeypatch.setattr(registration, "retrying", lambda run, now=None: False)  # no retry of the event is left

    pipeline.evaluation_ended(second)

    assert pipeline.run(second)["champion"]["decision"] == "kept"  # as without the look; the next pass notes it


def test_a_rejection_record_results_cannot_note_leaves_the_comparison_to_decide(pipeline, monkeypatch):
    first = start(pipeline)
    pipeline.succeed(first)
    reject_by_hand(pipeline, first)
    second = challenger_measured(pipeline, first, 0.60)

    def refused(*args, **kwargs):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "UpdateItem")

    monkeypatch.setattr(former_champions, "_mark", refused)
    pipeline.evaluation_ended(second)

    assert pipeline.run(second)["champion"]["decision"] == "kept"  # as before; the next pass notes the rejection
    assert get_champion(pipeline.clients.runs_table, DATASET).run_id == first


def test_promote_of_the_champion_after_record_results_read_its_package_rejected_keeps_it(pipeline, monkeypatch):
    """A person rejects the champion's package, then promotes it back ("the audit was wrong") while a worse
    challenger's record_results has just read the package Rejected: the champion stays, its package Approved."""
    first = start(pipeline)
    pipeline.succeed(first)
    reject_by_hand(pipeline, first)
    second = challenger_measured(pipeline, first, 0.60)
    read = registry.approval
    promoted = []

    def read_then_promote(sagemaker, arn):
        answer = read(sagemaker, arn)
        if not promoted:  # once (promote reads the package too)
            promoted.append("under way")
            promoted[0] = promote(RunsRepository(pipeline.clients.runs_table), pipeline.sagemaker,
                                  pipeline.stack.bucket, first, reason="the audit was wrong", by="ops")
        return answer

    monkeypatch.setattr(registry, "approval", read_then_promote)
    pipeline.evaluation_ended(second)

    assert promoted[0].run_id == first and pipeline.run(second)["champion"]["decision"] == "kept"
    champion = get_champion(pipeline.clients.runs_table, DATASET)
    assert champion.run_id == first and champion.package_rejected is None
    assert approvals(pipeline) == {first: "Approved", second: "PendingManualApproval"}
    assert recorded(pipeline, first) == "Approved"


def test_a_noted_rejection_sagemaker_will_not_let_record_results_read_again_still_decides(pipeline):
    first = rejected_champion(pipeline)
    second = challenger_measured(pipeline, first, 0.60)
    pipeline.sagemaker.fail["describe_model_package"] = ["AccessDeniedException"]

    pipeline.evaluation_ended(second)

    assert pipeline.run(second)["champion"]["decision"] == "promoted"
    assert get_champion(pipeline.clients.runs_table, DATASET).run_id == second


def test_the_transaction_that_replaces_a_rejected_champion_fails_once_the_note_is_gone(pipeline, monkeypatch):
    """The note taken off (as promote of the champion or a pass does) between set_champion's read and its transaction:
    the transaction's own condition fails it as a changed champion, and the run is left as it was, to be decided
    again."""
    first = rejected_champion(pipeline)
    second = challenger_measured(pipeline, first, 0.60)
    table = pipeline.clients.runs_table
    stale = get_champion(table, DATASET)
    former_champions.approved_again(table, stale)
    monkeypatch.setattr(champion_module, "get_champion", lambda table, dataset: stale)
    runs = RunsRepository(table)

    with pytest.raises(ChampionChanged):
        set_champion(table, DATASET, run_id=second, accuracy=0.6, test_rows=309, test_split="sha256:x", why="x",
                     expected_run_id=first, expect_rejected=True,
                     run_update=runs.transition_request(second, RunStatus.EVALUATING, RunStatus.SUCCEEDED,
                                                        notice=("subject", "body")))

    monkeypatch.undo()
    assert get_champion(table, DATASET).run_id == first and pipeline.run(second)["status"] == "EVALUATING"


def test_promote_of_a_rejected_champion_puts_back_what_was_kept_approved_meanwhile(pipeline):
    first, second = champion_then_challenger(pipeline)
    pipeline.sagemaker.fail["update_model_package"] = [None, "ThrottlingException"]  # first stays Approved, noted
    pipeline.evaluation_ended(second)
    registry.set_approval(pipeline.sagemaker, pipeline.run(second)["model_package_arn"], registry.REJECTED, "no")
    pipeline.reconcile()
    assert approvals(pipeline) == {first: "Approved", second: "Rejected"} and noted(pipeline) == {first}

    promote(RunsRepository(pipeline.clients.runs_table), pipeline.sagemaker, pipeline.settings.bucket, second,
            reason="audit was wrong", by="ops")

    assert approvals(pipeline) == {first: "PendingManualApproval", second: "Approved"} and noted(pipeline) == set()


def test_a_pass_that_read_a_rejection_before_promote_took_the_note_off_does_not_put_it_back(pipeline):
    first = rejected_champion(pipeline)
    table = pipeline.clients.runs_table
    read_by_the_pass = get_champion(table, DATASET)
    former_champions.approved_again(table, read_by_the_pass)  # promote of the champion

    assert not former_champions._mark(table, read_by_the_pass, "package_rejected", {"found_at": "2026-12-06T08:00:00Z"})

    assert get_champion(table, DATASET).package_rejected is None and get_champion(table, DATASET).run_id == first


NEWLINE_KEY = "incoming/team/new\nline.tsv"  # S3 keys may hold line breaks; SageMaker's ApprovalDescription (".*") not


@pytest.mark.parametrize("line_break", ["\n", "\u2028", "\u2029"], ids=["newline", "line-separator", "paragraph-separator"])
def test_a_champion_of_a_dataset_named_with_a_line_break_goes_back_to_pending_when_replaced(pipeline, line_break):
    key = NEWLINE_KEY.replace("\n", line_break)  # none of them matches Java's '.', by which SageMaker reads ".*"
    first = start(pipeline, key=key)
    pipeline.succeed(first)
    second = start(pipeline, key=key, body=good_file(seed=3))
    pipeline.succeed(second, comparison=measured(0.90, 0.73))

    result = pipeline.reconcile()

    assert "former_champions" not in result["errors"]
    assert approvals(pipeline) == {first: "PendingManualApproval", second: "Approved"}
    [arn] = [p["ModelPackageArn"] for p in pipeline.sagemaker.packages()
             if p["CustomerMetadataProperties"]["run_id"] == first]
    assert "team/new line.tsv" in pipeline.sagemaker.approval_descriptions[arn]


def test_a_rollback_with_a_reason_on_two_lines_in_a_dataset_named_with_a_line_break_approves_one_package(pipeline):
    first = start(pipeline, key=NEWLINE_KEY)
    pipeline.succeed(first)
    second = start(pipeline, key=NEWLINE_KEY, body=good_file(seed=3))
    pipeline.succeed(second, comparison=measured(0.90, 0.73))

    promote(RunsRepository(pipeline.clients.runs_table), pipeline.sagemaker, pipeline.settings.bucket, first,
            reason="rollback:\nthe new one misreads sizes", by="ops")
    pipeline.reconcile()

    assert approvals(pipeline) == {first: "Approved", second: "PendingManualApproval"}


def test_promote_of_a_run_whose_package_was_deleted_is_refused_and_changes_nothing(pipeline):
    first = start(pipeline)
    pipeline.succeed(first)
    second = start(pipeline, body=good_file(seed=3))
    pipeline.succeed(second, comparison=measured(0.90, 0.73))
    pipeline.sagemaker.delete_model_package(ModelPackageName=pipeline.run(first)["model_package_arn"])
    before = get_champion(pipeline.clients.runs_table, DATASET)

    with pytest.raises(PromotionError, match="no longer exists in the Model Registry.*nothing was changed"):
        promote(RunsRepository(pipeline.clients.runs_table), pipeline.sagemaker, pipeline.settings.bucket, first,
                reason="rollback", by="ops")
    pipeline.reconcile()

    assert get_champion(pipeline.clients.runs_table, DATASET) == before
    assert approvals(pipeline) == {second: "Approved"} and "promoted" not in pipeline.run(first)


def _champion_and_kept(pipeline: Pipeline) -> tuple[str, str]:
    """The dataset's first run, champion, and a second measured worse on the same reviews: kept, its package pending."""
    first = start(pipeline)
    pipeline.succeed(first)
    second = start(pipeline, body=good_file(seed=3))
    pipeline.succeed(second, comparison=measured(0.70, 0.73))
    return first, second


def test_promote_run_again_after_its_approval_failed_records_who_promoted_the_run(pipeline):
    first, second = _champion_and_kept(pipeline)
    runs = RunsRepository(pipeline.clients.runs_table)
    pipeline.sagemaker.fail["update_model_package"] = ["ThrottlingException"]
    with pytest.raises(PromotionError, match="run the command again"):
        promote(runs, pipeline.sagemaker, pipeline.settings.bucket, second, reason="audit says so", by="arn:ops")
    assert "promoted" not in pipeline.run(second)

    promotion = promote(runs, pipeline.sagemaker, pipeline.settings.bucket, second, reason="audit says so",
                        by="arn:ops")

    assert promotion.already_champion and approvals(pipeline)[second] == "Approved"
    promoted = pipeline.run(second)["promoted"]
    assert (promoted["by"], promoted["reason"]) == ("arn:ops", "audit says so")
    assert promoted["at"] == get_champion(pipeline.clients.runs_table, DATASET).history[-1]["at"]
    promote(runs, pipeline.sagemaker, pipeline.settings.bucket, second, reason="again", by="someone else")
    assert pipeline.run(second)["promoted"] == promoted  # who made it champion, not who approved it again


def test_a_champion_whose_package_was_deleted_is_noted_and_replaced_by_the_next_success(pipeline):
    """A person deletes the champion's package in the console: like a rejection, the next pass notes it (on the
    pointer and the run), and the next run that succeeds with a package takes its place without a comparison."""
    first = start(pipeline)
    pipeline.succeed(first)
    pipeline.sagemaker.delete_model_package(ModelPackageName=pipeline.run(first)["model_package_arn"])

    pipeline.reconcile()

    note = get_champion(pipeline.clients.runs_table, DATASET).package_rejected
    assert note["deleted"] is True and note["found_at"]
    assert pipeline.run(first)["registry"]["error"] == former_champions.PACKAGE_GONE
    second = start(pipeline, body=good_file(seed=3))
    pipeline.succeed(second, comparison=measured(0.70, 0.73))  # worse on the same rows: it replaces it anyway
    champion = get_champion(pipeline.clients.runs_table, DATASET)
    assert champion.run_id == second and champion.package_rejected is None
    assert approvals(pipeline) == {second: "Approved"}
    assert "was deleted from the Model Registry" in pipeline.run(second)["champion"]["reason"]
    assert "deleted from the Model Registry" in pipeline.messages(second)[-1]["Message"]


def test_a_champion_whose_package_is_deleted_after_the_last_pass_is_replaced_by_the_next_success(pipeline):
    """No pass has seen the deletion yet: the challenger's record_results, about to keep the champion, reads the
    package gone, notes it and takes its place."""
    first = start(pipeline)
    pipeline.succeed(first)
    pipeline.sagemaker.delete_model_package(ModelPackageName=pipeline.run(first)["model_package_arn"])
    second = start(pipeline, body=good_file(seed=3))

    pipeline.succeed(second, comparison=measured(0.70, 0.73))

    assert get_champion(pipeline.clients.runs_table, DATASET).run_id == second
    assert approvals(pipeline) == {second: "Approved"}


def test_promote_of_a_champion_whose_package_was_deleted_is_refused_and_keeps_the_note(pipeline):
    first = start(pipeline)
    pipeline.succeed(first)
    pipeline.sagemaker.delete_model_package(ModelPackageName=pipeline.run(first)["model_package_arn"])
    pipeline.reconcile()

    with pytest.raises(PromotionError, match="no longer exists in the Model Registry"):
        promote(RunsRepository(pipeline.clients.runs_table), pipeline.sagemaker, pipeline.settings.bucket, first,
                reason="keep it", by="ops")

    assert get_champion(pipeline.clients.runs_table, DATASET).package_rejected["deleted"] is True


def test_a_rejected_champion_package_deleted_later_is_noted_deleted(pipeline):
    first = start(pipeline)
    pipeline.succeed(first)
    reject_by_hand(pipeline, first)
    pipeline.reconcile()
    pipeline.sagemaker.delete_model_package(ModelPackageName=pipeline.run(first)["model_package_arn"])

    pipeline.reconcile()

    note = get_champion(pipeline.clients.runs_table, DATASET).package_rejected
    assert note["deleted"] is True and note["description"] == "bias found in the audit"
    assert pipeline.run(first)["registry"]["error"] == former_champions.PACKAGE_GONE
    second = start(pipeline, body=good_file(seed=3))
    pipeline.succeed(second, comparison=measured(0.70, 0.73))
    assert "was deleted from the Model Registry" in pipeline.run(second)["champion"]["reason"]


def test_a_second_promotion_of_a_run_run_again_after_its_approval_failed_records_the_second_promoter(pipeline):
    first, second = _champion_and_kept(pipeline)
    runs = RunsRepository(pipeline.clients.runs_table)
    promote(runs, pipeline.sagemaker, pipeline.settings.bucket, second, reason="A's reason", by="arn:alice")
    promote(runs, pipeline.sagemaker, pipeline.settings.bucket, first, reason="rollback", by="arn:carol")
    pipeline.sagemaker.fail["update_model_package"] = ["ThrottlingException"]
    with pytest.raises(PromotionError, match="run the command again"):
        promote(runs, pipeline.sagemaker, pipeline.settings.bucket, second, reason="B's reason", by="arn:bob")

    promote(runs, pipeline.sagemaker, pipeline.settings.bucket, second, reason="B's reason", by="arn:bob")

    promoted = pipeline.run(second)["promoted"]
    assert (promoted["by"], promoted["reason"]) == ("arn:bob", "B's reason")
    assert promoted["at"] == get_champion(pipeline.clients.runs_table, DATASET).history[-1]["at"]


def test_a_package_deleted_while_it_is_promoted_is_told_as_deleted_not_to_be_tried_again(pipeline, monkeypatch):
    first, second = _champion_and_kept(pipeline)
    arn = pipeline.run(second)["model_package_arn"]
    update = pipeline.sagemaker.update_model_package

    def deleted_first(**request):
        if request["ModelPackageArn"] == arn:
            pipeline.sagemaker.delete_model_package(ModelPackageName=arn)
        return update(**request)

    monkeypatch.setattr(pipeline.sagemaker, "update_model_package", deleted_first)
    with pytest.raises(PromotionError, match="was deleted meanwhile .*the next run of the dataset that succeeds"):
        promote(RunsRepository(pipeline.clients.runs_table), pipeline.sagemaker, pipeline.settings.bucket, second,
                reason="rollforward", by="ops")
    monkeypatch.undo()
    pipeline.reconcile()
    assert get_champion(pipeline.clients.runs_table, DATASET).package_rejected["deleted"] is True


# ------------------------------------------------------------------------------- many datasets, a pass's time


class Killed(BaseException):
    """The invocation's end (its timeout): no except clause of the function's code sees it."""


class PassClock:
    """A reconciler pass's time left, spent by SageMaker's calls (a second each); a call made with none left ends the
    invocation there. Outside a pass (``left`` None) calls cost nothing."""

    def __init__(self, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch):
        self.pipeline = pipeline
        self.left: float | None = None
        fake = type(pipeline.sagemaker)
        original = fake._call

        def timed(sagemaker, operation, request=None):
            if self.left is not None:
                self.left -= 1
                if self.left < 0:
                    raise Killed(operation)
            return original(sagemaker, operation, request)

        monkeypatch.setattr(fake, "_call", timed)

    def reconcile(self, seconds: float, now=None) -> dict:
        """A pass given ``seconds``, as the reconcile function gives it its invocation's remaining time."""
        self.left = seconds
        try:
            return reconciler.reconcile(self.pipeline.settings, self.pipeline.clients, now,
                                        seconds_left=lambda: self.left)
        finally:
            self.left = None


def many_champions(pipeline: Pipeline, count: int, prefix: str = "team-b/reviews-") -> list[str]:
    """``count`` datasets with a champion each whose package is not Approved (an approval record_results had to give
    up on): settling one approves its package (a Describe and an approval: two SageMaker calls)."""
    fake = pipeline.sagemaker
    datasets = []
    with pipeline.clients.runs_table.batch_writer() as batch:
        for i in range(count):
            dataset, group = f"{prefix}{i:04d}.tsv", f"reviewtune-many-{''.join(filter(str.isalnum, prefix))[:8]}-{i:04d}"
            arn = fake.arn("model-package", f"{group}/1")
            fake.groups[group] = [{"ModelPackageGroupName": group, "ModelPackageArn": arn, "ClientToken": group,
                                   "ModelApprovalStatus": registry.PENDING,
                                   "CustomerMetadataProperties": {"run_id": f"{group}-run"}}]
            batch.put_item(Item=to_item({
                "run_id": champion_module.champion_key(dataset), "kind": champion_module.CHAMPION_KIND,
                "champion_of": dataset, "champion_run_id": f"{group}-run", "accuracy": 0.8, "test_rows": 300,
                "test_split": "s3://x/test", "changed_at": "2026-01-01T00:00:00Z", "version": 1,
                "model_package_arn": arn, "history": []}))
            datasets.append(dataset)
    return datasets


def approved(pipeline: Pipeline, datasets: list[str]) -> set[str]:
    """Those of ``datasets`` whose champion's package is Approved."""
    table = pipeline.clients.runs_table
    arns = {get_champion(table, dataset).model_package_arn: dataset for dataset in datasets}
    return {arns[p["ModelPackageArn"]] for p in pipeline.sagemaker.packages()
            if p["ModelPackageArn"] in arns and p["ModelApprovalStatus"] == registry.APPROVED}


def test_a_pass_short_of_time_settles_the_champions_it_has_time_for_and_the_next_passes_go_on_from_there(
        pipeline, monkeypatch):
    datasets = many_champions(pipeline, 60)
    clock = PassClock(pipeline, monkeypatch)
    given = reconciler.CHAMPIONS_SECONDS_RESERVED + 20  # time for about ten datasets after the rest of the pass
    seen: list[int] = []
    while len(seen) < 10 and len(approved(pipeline, datasets)) < len(datasets):
        result = clock.reconcile(given)  # a pass that outlasted its invocation would raise Killed
        assert "former_champions" not in result["errors"]
        seen.append(len(approved(pipeline, datasets)))
    assert approved(pipeline, datasets) == set(datasets)
    assert 5 <= len(seen) <= 7 and seen == sorted(set(seen))  # every pass went on from where the last one stopped

    # round again: a package put back to pending behind the rotation's place is approved once the rotation comes
    # round to it, within as many passes
    behind = datasets[0]
    registry.set_approval(pipeline.sagemaker, get_champion(pipeline.clients.runs_table, behind).model_package_arn,
                          registry.PENDING, "stale pass")
    for _ in range(7):
        clock.reconcile(given)
        if behind in approved(pipeline, datasets):
            break
    assert approved(pipeline, datasets) == set(datasets)


def test_a_pass_settles_at_most_its_share_of_champions_when_its_time_is_not_known(pipeline):
    datasets = many_champions(pipeline, former_champions.MAX_SETTLED_PER_PASS + 20)
    pipeline.sagemaker.calls.clear()
    first = pipeline.reconcile(later(0))  # a pass without a clock
    assert first["former_champions"] == former_champions.MAX_SETTLED_PER_PASS
    assert pipeline.sagemaker.calls.count("describe_model_package") == former_champions.MAX_SETTLED_PER_PASS
    assert pipeline.reconcile(later(0))["former_champions"] == 20
    assert approved(pipeline, datasets) == set(datasets)


def test_a_pass_whose_champions_would_outlast_it_still_frees_slots_starts_the_queue_and_restarts_claims(
        pipeline, monkeypatch):
    """A hundred datasets, two SageMaker calls each, in a pass with little more than a restart's time left: the
    slots leaked by runs that are gone are freed, the queued run starts, and the stale claims are restarted; the
    champions get what is left."""
    datasets = many_champions(pipeline, 100)
    table = pipeline.clients.runs_table
    _stale_claims(pipeline, 2)
    for holder in ("reviewtune-gone-1", "reviewtune-gone-2"):  # ended by a crash before they gave their slot back
        assert slots.acquire(table, holder, pipeline.settings.max_concurrent_runs)
    queued = pipeline.start_tuning(pipeline.drop_event("incoming/queued.tsv", good_file(9)))
    assert queued["status"] == "QUEUED"
    clock = PassClock(pipeline, monkeypatch)

    result = clock.reconcile(reconciler.RESTART_SECONDS_RESERVED + reconciler.CHAMPIONS_SECONDS_RESERVED + 30,
                             now=later(0.5))

    assert result["freed_slots"] == 2 and result["started"] >= 1
    assert pipeline.run(queued["run_id"])["status"] == "TUNING"
    assert sum(step.startswith("claim restarted") for step in result["steps"].values()) == 2
    assert 0 < len(approved(pipeline, datasets)) < len(datasets)


def test_a_replaced_champion_is_settled_by_the_next_pass_before_the_rotation_however_many_datasets(
        pipeline, monkeypatch):
    """record_results could not approve the new champion's package, so the one before stays Approved: the move
    marked the dataset, and the next pass settles it first, though hundreds of datasets come before it in the
    rotation and the pass has time for a few."""
    first, second = champion_then_challenger(pipeline)
    pipeline.sagemaker.fail["update_model_package"] = ["AccessDeniedException"]  # record_results' approval
    pipeline.evaluation_ended(second)
    before = {run_id: approval for run_id, approval in approvals(pipeline).items() if run_id in (first, second)}
    assert before == {first: "Approved", second: "PendingManualApproval"} and noted(pipeline) == {first}
    others = many_champions(pipeline, 300, prefix="aaa/reviews-")  # named before it: the rotation reaches it last
    clock = PassClock(pipeline, monkeypatch)

    result = clock.reconcile(reconciler.CHAMPIONS_SECONDS_RESERVED + 8)

    assert "former_champions" not in result["errors"] and result["former_champions"] >= 2
    after = {run_id: approval for run_id, approval in approvals(pipeline).items() if run_id in (first, second)}
    assert after == {first: "PendingManualApproval", second: "Approved"} and noted(pipeline) == set()
    assert len(approved(pipeline, others)) < 5


def test_a_settling_sagemaker_refuses_is_tried_first_by_the_next_pass(pipeline, monkeypatch):
    datasets = many_champions(pipeline, 40)
    throttled = datasets[-1]  # the rotation's last
    clock = PassClock(pipeline, monkeypatch)
    # the first pass's whole share; the last dataset's approval throttled
    pipeline.sagemaker.fail["update_model_package"] = [None] * (len(datasets) - 1) + ["ThrottlingException"]
    result = clock.reconcile(300)
    assert "ThrottlingException" in result["errors"]["former_champions"]
    assert approved(pipeline, datasets) == set(datasets) - {throttled}

    # the next pass, with time for a dataset or two, settles it first: its place would have it last again
    clock.reconcile(reconciler.CHAMPIONS_SECONDS_RESERVED + 3)
    assert approved(pipeline, datasets) == set(datasets)


def test_a_first_champion_whose_approval_record_results_gave_up_on_is_settled_by_the_next_pass(pipeline, monkeypatch):
    """A dataset's first champion (nothing replaced) whose approval record_results could not give is marked too, and
    approved by the next pass, however many datasets come before it in the rotation: else the dataset has no
    Approved package meanwhile."""
    first = start(pipeline)
    pipeline.sagemaker.fail["update_model_package"] = ["AccessDeniedException"]  # record_results' approval
    pipeline.succeed(first)
    assert get_champion(pipeline.clients.runs_table, DATASET).run_id == first
    assert approvals(pipeline) == {first: "PendingManualApproval"}
    assert list(champion_rotation.read(pipeline.clients.runs_table).marks) == [DATASET]
    many_champions(pipeline, 300, prefix="aaa/reviews-")  # before it in the rotation
    clock = PassClock(pipeline, monkeypatch)

    clock.reconcile(reconciler.CHAMPIONS_SECONDS_RESERVED + 8)

    assert approvals(pipeline)[first] == "Approved"


def test_a_marked_dataset_whose_settling_the_invocation_s_end_cut_keeps_its_mark(pipeline, monkeypatch):
    """A settle that outlasts CHAMPIONS_SECONDS_RESERVED (one SageMaker call retried with back-off, or a read
    timeout) ends the invocation there: the mark stays, and a later pass puts the replaced champion's package back
    to pending, not the rotation hundreds of passes away."""
    first, second = champion_then_challenger(pipeline)
    pipeline.sagemaker.fail["update_model_package"] = ["AccessDeniedException"]  # record_results' approval
    pipeline.evaluation_ended(second)
    assert noted(pipeline) == {first}
    assert DATASET in champion_rotation.read(pipeline.clients.runs_table).marks
    many_champions(pipeline, 300, prefix="aaa/reviews-")
    clock = PassClock(pipeline, monkeypatch)

    fake = type(pipeline.sagemaker)
    timed = fake._call
    slow = {"once": True}

    def stalled(sagemaker, operation, request=None):
        if clock.left is not None and operation == "describe_model_package" and slow["once"]:
            slow["once"] = False
            clock.left -= 30  # a throttled call retried with back-off, or a read timeout
        return timed(sagemaker, operation, request)

    monkeypatch.setattr(fake, "_call", stalled)
    with pytest.raises(Killed):  # the invocation ends in the champions' step
        clock.reconcile(reconciler.CHAMPIONS_SECONDS_RESERVED + 5)

    for _ in range(3):  # passes with time for a few datasets each
        clock.reconcile(reconciler.CHAMPIONS_SECONDS_RESERVED + 8)
    assert {k: v for k, v in approvals(pipeline).items() if k in (first, second)} == {
        first: "PendingManualApproval", second: "Approved"}


def test_a_pass_cut_in_the_champions_step_still_publishes_its_counts(pipeline, monkeypatch):
    """The handler publishes the pass's metrics (StuckRuns, ReconcileErrors, ...) in ``before_restarts``: before the
    champions' step, whose settling can outlast the invocation."""
    many_champions(pipeline, 5)
    clock = PassClock(pipeline, monkeypatch)
    fake = type(pipeline.sagemaker)
    timed = fake._call

    def stalled(sagemaker, operation, request=None):
        if clock.left is not None and operation == "describe_model_package":
            clock.left -= 30
        return timed(sagemaker, operation, request)

    monkeypatch.setattr(fake, "_call", stalled)
    published = []
    clock.left = reconciler.CHAMPIONS_SECONDS_RESERVED + 5
    try:
        with pytest.raises(Killed):
            reconciler.reconcile(pipeline.settings, pipeline.clients, seconds_left=lambda: clock.left,
                                 before_restarts=published.append)
    finally:
        clock.left = None
    assert published, "the pass's counts were never published"
