"""`reviewtune champion` and `reviewtune promote` against moto (the stack found through CloudFormation outputs as
on AWS, SageMaker's Model Registry in moto): tables by default, --json parsed back, clear errors.

GIVEN runs of two datasets with their model packages and champions, WHEN a person lists the champions or promotes
a run, THEN the pointer, its history and the package's approval say what happened.
"""

from __future__ import annotations

import unicodedata

import boto3
import pytest

from reviewtune.cli import main
from reviewtune.core import champion as champion_module
from reviewtune.core import display, registry
from reviewtune.core.champion import Comparison, get_champion
from reviewtune.core.runs import RunsRepository
from tests.cli.test_runs_commands import STACK, deployed, put_run, run_json  # noqa: F401  (deployed: a fixture)
from tests.support.champion import challenge

A, B = "team-a/r.tsv", "team-b/r.tsv"


def table(stack):
    return boto3.resource("dynamodb").Table(stack.runs_table)


def registered(stack, run_id: str, dataset: str, minutes: int, accuracy: float, status: str = "SUCCEEDED") -> str:
    """A succeeded run whose model is a PendingManualApproval version of its dataset's group."""
    sagemaker = boto3.client("sagemaker")
    group = registry.package_group_name(dataset)
    registry.ensure_group(sagemaker, group)
    arn = registry.register_model(
        sagemaker, group_name=group, run_id=run_id, image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/i:1",
        model_data_url=f"s3://{stack.bucket}/runs/{run_id}/models/m/output/model.tar.gz",
        evaluation_uri=f"s3://{stack.bucket}/runs/{run_id}/evaluation/evaluation.json", dataset=dataset,
    )
    put_run(stack, run_id, dataset, status, minutes, accuracy)
    RunsRepository(table(stack)).update(
        run_id, model_package_arn=arn, results={"test_accuracy": accuracy},
        data={"summary": {"rows": {"train": 90, "validation": 5, "test": 5}}, "sha256": {"test": f"t-{run_id}"}},
    )
    return arn


def decided(stack, run_id: str, dataset: str, comparison: Comparison | None = None) -> None:
    """record_results' champion step for the run, with the outcome written to its item as record_results does."""
    item = RunsRepository(table(stack)).get(run_id)
    outcome = challenge(table(stack), dataset, run_id=run_id, accuracy=item["results"]["test_accuracy"], test_rows=5,
                        test_split=f"sha256:t-{run_id}", comparison=comparison,
                        model_package_arn=item["model_package_arn"])
    RunsRepository(table(stack)).update(run_id, champion={
        "decision": outcome.label, "reason": outcome.reason, "champion_run_id": outcome.champion_run_id,
        **({"comparison": comparison.as_dict()} if comparison else {})})
    if outcome.champion_run_id == run_id:
        registry.set_approval(boto3.client("sagemaker"), item["model_package_arn"], registry.APPROVED, outcome.reason)


def approval(arn: str) -> dict:
    return boto3.client("sagemaker").describe_model_package(ModelPackageName=arn)


@pytest.fixture
def lifecycle(deployed):  # noqa: F811
    """team-a: a1 champion, a2 kept (measured against a1 on the same 40 reviews); team-b: b1 champion."""
    arns = {
        "reviewtune-a1": registered(deployed, "reviewtune-a1", A, 1, 0.70),
        "reviewtune-a2": registered(deployed, "reviewtune-a2", A, 2, 0.72),
        "reviewtune-b1": registered(deployed, "reviewtune-b1", B, 3, 0.66),
    }
    decided(deployed, "reviewtune-a1", A)
    decided(deployed, "reviewtune-a2", A, Comparison("reviewtune-a1", 40, 1, True, 0.75, 0.75))
    decided(deployed, "reviewtune-b1", B)
    return deployed, arns


def test_champion_lists_each_dataset_s_champion(lifecycle, capsys):
    stack, arns = lifecycle

    listed = run_json(capsys, "champion")

    assert [(c["dataset"], c["run_id"], c["accuracy"]) for c in listed] == [
        (A, "reviewtune-a1", 0.70), (B, "reviewtune-b1", 0.66)]
    assert listed[0]["model_package_arn"] == arns["reviewtune-a1"] and listed[0]["version"] == 1
    assert listed[0]["changed_at"] == listed[0]["history"][0]["at"]
    assert main(["champion", "--stack", STACK]) == 0
    text = capsys.readouterr().out
    assert "Champions by dataset" in text and "reviewtune-b1" in text and "70.00" in text


def test_champion_of_a_folder_lists_the_champions_of_its_datasets(lifecycle, capsys):
    folder = A.split("/")[0]  # as `drop --dataset` and `runs list --dataset` take one

    for typed in (folder, f"{folder}/"):
        listed = run_json(capsys, "champion", "--dataset", typed)
        assert listed["folder"] == f"{folder}/"
        assert [(c["dataset"], c["run_id"]) for c in listed["champions"]] == [(A, "reviewtune-a1")]
    assert main(["champion", "--dataset", folder, "--stack", STACK]) == 0
    assert f"Champions of the datasets under {folder}/" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit, match=f"dataset '{folder[:-1]}' has no champion"):  # not a folder: a prefix
        main(["champion", "--dataset", folder[:-1], "--stack", STACK])


def test_champion_of_one_dataset_shows_its_history_and_the_decisions(lifecycle, capsys):
    shown = run_json(capsys, "champion", "--dataset", A)

    assert shown["run_id"] == "reviewtune-a1" and shown["dataset"] == A
    assert shown["model_package_arn"].endswith("/1")  # what a deployment takes (README: Registry, by hand)
    assert [h["run_id"] for h in shown["history"]] == ["reviewtune-a1"]
    assert shown["history"][0]["why"] == "first champion: challenger 70.00 % on 5 test reviews"
    assert [(d["run_id"], d["decision"]) for d in shown["decisions"]] == [
        ("reviewtune-a2", "kept"), ("reviewtune-a1", "first champion")]
    assert shown["decisions"][0]["reason"] == (
        "champion kept: challenger 75.00 % vs champion 75.00 % on the same 40 test reviews (+0.00 points, margin 0.5 points)")
    assert shown["decisions"][0]["comparison"]["rows_left_out"] == 1

    assert main(["champion", "--dataset", A, "--stack", STACK]) == 0
    text = capsys.readouterr().out
    for expected in ("Champions, oldest first", "Decisions of the newest runs", "champion kept: challenger 75.00 % vs champion 75.00 %"):
        assert expected in text
    with pytest.raises(SystemExit, match="dataset 'team-c/r.tsv' has no champion"):
        main(["champion", "--dataset", "team-c/r.tsv", "--stack", STACK])


def test_a_dataset_typed_with_decomposed_accents_shows_its_champion(deployed, capsys):  # noqa: F811
    dataset = "équipe/r.tsv"  # as the runs record it: composed (NFC)
    registered(deployed, "reviewtune-e1", dataset, 1, 0.70)
    decided(deployed, "reviewtune-e1", dataset)
    shown = run_json(capsys, "champion", "--dataset", unicodedata.normalize("NFD", dataset))
    assert shown["run_id"] == "reviewtune-e1" and shown["dataset"] == dataset


def test_promote_approves_the_package_and_moves_the_pointer_with_the_reason_and_who(lifecycle, capsys):
    stack, arns = lifecycle
    assert approval(arns["reviewtune-a2"])["ModelApprovalStatus"] == "PendingManualApproval"

    done = run_json(capsys, "promote", "reviewtune-a2", "--reason", "a1 misreads sizing complaints")

    assert done["run_id"] == "reviewtune-a2" and done["previous_champion"] == "reviewtune-a1"
    assert done["already_champion"] is False and done["approval"] == "Approved"
    package = approval(arns["reviewtune-a2"])
    assert package["ModelApprovalStatus"] == "Approved"
    who = boto3.client("sts").get_caller_identity()["Arn"]
    assert package["ApprovalDescription"] == f"promoted manually by {who}: a1 misreads sizing complaints"
    # one Approved package per dataset: the champion replaced goes back to pending
    assert done["previous_champion_approval"] == "PendingManualApproval"
    assert approval(arns["reviewtune-a1"])["ModelApprovalStatus"] == "PendingManualApproval"
    assert run_json(capsys, "runs", "show", "reviewtune-a1")["registry"]["approval"] == "PendingManualApproval"
    champion = get_champion(table(stack), A)
    assert champion.run_id == "reviewtune-a2" and champion.version == 2
    assert champion.model_package_arn == arns["reviewtune-a2"] and champion.accuracy == 0.72
    assert champion.history[-1]["why"] == "promoted manually: a1 misreads sizing complaints"
    assert champion.history[-1]["by"] == who and champion.history[-1]["at"] == champion.changed_at
    shown_champion = run_json(capsys, "champion", "--dataset", A)
    assert shown_champion["history"][-1]["by"] == who
    assert {d["run_id"]: d["promoted"] for d in shown_champion["decisions"]} == {
        "reviewtune-a2": True, "reviewtune-a1": False}
    assert get_champion(table(stack), B).run_id == "reviewtune-b1"
    # the run's own record says it too: `runs show` has the package Approved and who promoted it, when and why
    shown = run_json(capsys, "runs", "show", "reviewtune-a2")
    assert shown["registry"]["approval"] == "Approved"
    assert shown["promoted"]["by"] == who and shown["promoted"]["reason"] == "a1 misreads sizing complaints"
    assert main(["runs", "show", "reviewtune-a2", "--stack", STACK]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"{arns['reviewtune-a2']} (Approved)" in text and f"by {who}: a1 misreads sizing complaints" in text

    again = run_json(capsys, "promote", "reviewtune-a2", "--reason", "again")
    assert again["already_champion"] is True
    # the pointer's version goes up (a decision read before the approval fails its write), nothing else changes
    fenced = get_champion(table(stack), A)
    assert fenced.version == 3 and fenced.history == champion.history and fenced.run_id == "reviewtune-a2"
    assert run_json(capsys, "runs", "show", "reviewtune-a2")["promoted"] == shown["promoted"]  # not promoted again

    assert main(["promote", "reviewtune-a1", "--reason", "back", "--stack", STACK]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "reviewtune-a1 is now champion of team-a/r.tsv (was reviewtune-a2)" in out
    assert "reviewtune-a2's package back to PendingManualApproval" in out
    assert approval(arns["reviewtune-a1"])["ModelApprovalStatus"] == "Approved"  # a rollback approves it again
    assert approval(arns["reviewtune-a2"])["ModelApprovalStatus"] == "PendingManualApproval"
    # the run champion before says it no longer is, and which run is, since when; the champion says nothing of it
    since = display.utc_time(get_champion(table(stack), A).changed_at)
    assert main(["runs", "show", "reviewtune-a2", "--stack", STACK]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"champion now no longer: reviewtune-a1 since {since}" in out
    assert main(["runs", "show", "reviewtune-a1", "--stack", STACK]) == 0
    assert "champion now" not in capsys.readouterr().out
    assert main(["runs", "show", "reviewtune-b1", "--stack", STACK]) == 0  # another dataset's champion
    assert "champion now" not in capsys.readouterr().out


def test_promote_refuses_what_cannot_be_champion_with_clear_errors(lifecycle, capsys):
    stack, _ = lifecycle
    put_run(stack, "reviewtune-a3", A, "FAILED", 4)
    put_run(stack, "reviewtune-a4", A, "SUCCEEDED", 5, 0.9)  # evaluated, but its registration failed
    RunsRepository(table(stack)).update("reviewtune-a4", registry={"error": "AccessDeniedException: no"})
    table(stack).put_item(Item={"run_id": "#slots", "holders": {"reviewtune-a3"}})

    for run_id, error in (
        ("reviewtune-zz", "no run 'reviewtune-zz'"),
        ("champion#team-a/r.tsv", "no run 'champion#team-a/r.tsv'"),
        ("#slots", "no run '#slots'"),  # reviewtune's own item of the table, not "run #slots is None"
        ("reviewtune-a3", "run reviewtune-a3 is FAILED: only a SUCCEEDED run"),
        ("reviewtune-a4", r"run reviewtune-a4 has no model package in the Model Registry \(AccessDeniedException: no\)"),
    ):
        with pytest.raises(SystemExit, match=error):
            main(["promote", run_id, "--reason", "try", "--stack", STACK])
    with pytest.raises(SystemExit, match="needs a reason"):
        main(["promote", "reviewtune-a2", "--reason", "  ", "--stack", STACK])
    with pytest.raises(SystemExit):  # argparse: --reason is required
        main(["promote", "reviewtune-a2", "--stack", STACK])
    assert get_champion(table(stack), A).run_id == "reviewtune-a1"


def test_promote_while_someone_else_changes_the_champion_changes_nothing(lifecycle, capsys, monkeypatch):
    stack, arns = lifecycle
    real_get = champion_module.get_champion

    def read_then_b_is_promoted_elsewhere(table_, dataset):
        seen = real_get(table_, dataset)
        if seen is not None and seen.run_id == "reviewtune-a1":  # the write below names a1 and must fail
            table_.update_item(Key={"run_id": f"champion#{dataset}"},
                               UpdateExpression="SET champion_run_id = :r, version = version + :one",
                               ExpressionAttributeValues={":r": "reviewtune-a9", ":one": 1})
        return seen

    with monkeypatch.context() as patched, pytest.raises(
        SystemExit, match="changed while reviewtune-a2 was being promoted.*nothing was changed"
    ):
        patched.setattr(champion_module, "get_champion", read_then_b_is_promoted_elsewhere)
        main(["promote", "reviewtune-a2", "--reason", "mine", "--stack", STACK])

    assert get_champion(table(stack), A).run_id == "reviewtune-a9"
    assert approval(arns["reviewtune-a2"])["ModelApprovalStatus"] == "PendingManualApproval"


def test_a_dataset_whose_succeeded_runs_were_not_made_champion_says_why_not_that_none_succeeded(deployed):  # noqa: F811
    dataset = "team-g/r.tsv"
    registered(deployed, "reviewtune-g1", dataset, 1, 0.30)
    reason = ("not champion: challenger 30.00 % on 5 test reviews is no better than always answering negative "
              "(40.00 % of the test reviews); the dataset has no champion yet")
    RunsRepository(table(deployed)).update("reviewtune-g1", champion={
        "decision": champion_module.GUESSING, "reason": reason, "champion_run_id": None})

    with pytest.raises(SystemExit) as raised:
        main(["champion", "--dataset", dataset, "--stack", STACK])
    assert str(raised.value) == (
        f"error: dataset 'team-g/r.tsv' has no champion in stack {STACK} (us-east-1): no run of it that succeeded was made one; "
        f"the newest, reviewtune-g1: {reason}; `reviewtune promote reviewtune-g1 --reason TEXT` makes it champion by hand")


def test_show_names_promote_as_the_next_step_of_a_succeeded_run_that_is_not_champion(lifecycle, capsys):
    stack, _ = lifecycle
    assert main(["runs", "show", "reviewtune-a2", "--stack", STACK]) == 0
    assert ("Next: it is not champion (kept); a person can make it so: `reviewtune promote reviewtune-a2 --reason TEXT`"
            in capsys.readouterr().out)
    assert main(["runs", "show", "reviewtune-a1", "--stack", STACK]) == 0  # the champion: nothing to do
    assert "Next:" not in capsys.readouterr().out
    assert main(["promote", "reviewtune-a2", "--reason", "a2 reads the new catalogue", "--stack", STACK]) == 0
    capsys.readouterr()
    assert main(["runs", "show", "reviewtune-a1", "--stack", STACK]) == 0  # replaced by hand: it can come back
    assert "Next: to make it its dataset's champion again: `reviewtune promote reviewtune-a1 --reason TEXT`" in capsys.readouterr().out


def test_a_dataset_whose_succeeded_run_has_no_model_package_is_not_told_to_promote_it(deployed):  # noqa: F811
    put_run(deployed, "reviewtune-h1", "team-h/r.tsv", "SUCCEEDED", 1, 0.7)  # its registration failed: no package
    RunsRepository(table(deployed)).update("reviewtune-h1", champion={"decision": "not decided", "error": "throttled"})
    with pytest.raises(SystemExit) as raised:
        main(["champion", "--dataset", "team-h/r.tsv", "--stack", STACK])
    assert str(raised.value).endswith("the newest, reviewtune-h1: not decided; it has no model package to make champion "
                                      "(`reviewtune runs show reviewtune-h1` says why)")
