"""Mistakes a person makes at the command line get one line saying what is wrong, and the exit status says it failed:
numbers out of range (argparse names the option), empty ids and dataset names, paths that are folders or files where
the other was meant, and AWS refusing a call (a stack whose table is gone), never a Python traceback."""

from __future__ import annotations

import json
import os

import boto3
import pytest

from reviewtune.cli import main
from reviewtune.console import arguments
from tests.cli.test_runs_commands import STACK, deployed  # noqa: F401 - the fixture


@pytest.mark.parametrize(("argv", "said"), [
    (["run", "--max-jobs", "0"], "argument --max-jobs: expected 1 or more trials, got '0'"),
    (["run", "--parallel-jobs", "-2"], "argument --parallel-jobs: expected 1 or more trials, got '-2'"),
    (["run", "--epochs", "1.5"], "argument --epochs: expected a whole number of epochs, got '1.5'"),
    (["run", "--minutes", "nan"], "argument --minutes: expected more than zero minutes, got 'nan'"),
    (["run", "--minutes", "-5"], "argument --minutes: expected more than zero minutes, got '-5'"),
    (["run", "--minutes", "inf"], "argument --minutes: expected more than zero minutes, got 'inf'"),
    (["runs", "logs", "r", "--tail", "-5"], "argument --tail: expected 0 or more lines, got '-5'"),
    (["runs", "list", "--limit", "0"], "argument --limit: expected 1 or more runs, got '0'"),
    (["runs", "show", "r", "--follow", "--timeout", "-1"], "argument --timeout: expected zero or more seconds"),
    (["dead-letters", "--limit", "-1"], "argument --limit: expected 1 or more messages, got '-1'"),
    (["audit", "--days", "-1"], "argument --days: expected more than zero days, got '-1'"),
    # a window before any run, which datetime arithmetic cannot hold either (it raised OverflowError)
    (["audit", "--days", "1e6"], "argument --days: expected at most 36,500 days, got '1e6'"),
    (["overview", "--days", "1e9"], "argument --days: expected at most 36,500 days"),
    (["overview", "--days", "0"], "argument --days: expected more than zero days, got '0'"),
    (["audit", "--days", "0"], "argument --days: expected more than zero days, got '0'"),  # an empty window
    (["runs", "show", "r", "--follow", "--timeout", "1e12"], "argument --timeout: expected at most 3,153,600,000 seconds"),
    (["drop", "r.tsv", "--dataset", ""], "argument --dataset: expected a path below incoming/"),
    (["drop", "r.tsv", "--dataset", "team/../r.tsv"], "got 'team/../r.tsv'"),
    (["runs", "list", "--dataset", "/"], "argument --dataset: expected a path below incoming/"),
    (["champion", "--dataset", "a//b.tsv"], "argument --dataset: expected a path below incoming/"),
    (["audit", "--dataset", "./team"], "argument --dataset: expected a path below incoming/"),
])
def test_a_value_out_of_range_is_refused_by_argparse_naming_the_option(argv, said, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2 and said in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize(("value", "name"), [
    ("team-a", "team-a"), ("/team-a/", "team-a"), ("team-a/reviews.tsv", "team-a/reviews.tsv"),
    ("équipe/avis (mai).tsv", "équipe/avis (mai).tsv"),
])
def test_a_dataset_is_its_path_below_incoming_without_the_slashes_at_either_end(value, name):
    assert arguments.dataset(value) == name


@pytest.mark.parametrize("command", [["runs", "show", ""], ["runs", "trials", " "], ["runs", "logs", ""],
                                     ["runs", "report", ""], ["promote", "", "--reason", "x"]])
def test_an_empty_run_id_is_said_to_be_empty(deployed, command):  # noqa: F811
    with pytest.raises(SystemExit) as exited:
        main([*command, "--stack", STACK])
    assert exited.value.code == "error: an empty run id"


def test_aws_refusing_a_call_is_one_line_naming_aws_s_error(deployed, tmp_path):  # noqa: F811
    boto3.client("dynamodb").delete_table(TableName=deployed.runs_table)  # the stack's table is gone
    for command in (["runs", "list"], ["runs", "show", "reviewtune-5e7159cbd505a81a"], ["champion"]):
        with pytest.raises(SystemExit) as exited:
            main([*command, "--stack", STACK])
        assert str(exited.value.code).startswith("error: ResourceNotFoundException: "), exited.value.code
    boto3.resource("s3").Bucket(deployed.bucket).objects.all().delete()
    boto3.client("s3").delete_bucket(Bucket=deployed.bucket)
    reviews = tmp_path / "r.tsv"
    reviews.write_text("text\tsentiment\nfine\t1\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exited:
        main(["drop", str(reviews), "--dataset", "team-a", "--stack", STACK])
    assert str(exited.value.code).startswith("error: NoSuchBucket: ")


def test_a_folder_where_a_file_is_meant_and_a_file_where_a_folder_is_meant(tmp_path):
    with pytest.raises(SystemExit) as exited:
        main(["drop", str(tmp_path), "--dataset", "team-a", "--stack", STACK])
    assert exited.value.code == f"error: {tmp_path}: a folder, not a file"
    with pytest.raises(SystemExit) as exited:
        main(["run", "--data", str(tmp_path)])
    assert exited.value.code == f"DATA={tmp_path}: a folder, not a file"

    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(SystemExit) as exited:
        main(["--workdir", str(afile), "runs", "list", "--target", "local"])
    assert "cannot read" in str(exited.value.code) and "(--workdir names the local runtime's folder)" in str(
        exited.value.code)
    with pytest.raises(SystemExit) as exited:
        main(["--workdir", str(afile), "local", "down"])
    assert str(exited.value.code).startswith("error: [Errno 20] Not a directory")


@pytest.mark.parametrize("state", [[], {"pid": "abc"}, "text"])
def test_a_local_state_file_of_another_shape_is_said_to_be_so(tmp_path, state):
    (tmp_path / "local.json").write_text(json.dumps(state), encoding="utf-8")
    with pytest.raises(SystemExit) as exited:
        main(["--workdir", str(tmp_path), "runs", "list", "--target", "local"])
    assert "is not the local runtime's state (no process id in it)" in str(exited.value.code)


@pytest.mark.parametrize("command", [["run"], ["local", "up"]])
def test_outside_the_project_s_folder_the_missing_template_is_said_before_anything_is_planned(
    tmp_path, monkeypatch, capsys, command
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["--workdir", str(tmp_path / "state"), *command])
    assert exited.value.code == (f"error: template {tmp_path / 'template.yaml'} does not exist (run reviewtune from "
                                 "the project's folder, where template.yaml is, or from a folder inside it)")
    assert capsys.readouterr().out == ""  # no plan printed first


def test_from_a_folder_inside_the_project_the_commands_find_its_template_samconfig_and_state(tmp_path, monkeypatch):
    from reviewtune.console.target import default_stack_name
    from reviewtune.local.runtime import LocalRuntime, check_template
    from reviewtune.project import project_folder

    project = tmp_path / "reviewtune"
    (project / "training_code").mkdir(parents=True)
    (project / "training_code" / "train.py").write_text("")
    (project / "template.yaml").write_text("Resources: {}\n")
    (project / "samconfig.toml").write_text('[default.deploy.parameters]\nstack_name = "reviews-prod"\n')
    inside = project / "data" / "team-a"
    inside.mkdir(parents=True)
    monkeypatch.delenv("REVIEWTUNE_WORKDIR", raising=False)
    monkeypatch.chdir(inside)

    assert project_folder() == project.resolve()
    check_template()  # found: no error
    assert LocalRuntime().template == project.resolve() / "template.yaml"
    assert default_stack_name() == "reviews-prod"
    with pytest.raises(SystemExit) as exited:  # the project's state folder is where `local up` would have put it
        main(["runs", "list", "--target", "local"])
    assert str(project.resolve() / ".reviewtune" / "local.json") in str(exited.value.code)

    (project / "training_code" / "train.py").unlink()  # any SAM project's template is not reviewtune's
    assert project_folder() == inside.resolve()
    assert project_folder(tmp_path) == tmp_path.resolve()


@pytest.fixture
def another_stack(moto_account):
    """A stack that exists but is not reviewtune's: none of the outputs the commands read."""
    template = {"Resources": {"Marker": {"Type": "AWS::SNS::Topic"}}}
    boto3.client("cloudformation").create_stack(StackName="another", TemplateBody=json.dumps(template))


@pytest.mark.parametrize("argv", [["runs", "list"], ["runs", "show", "reviewtune-abc"], ["audit"], ["champion"]])
def test_a_stack_without_reviewtune_s_outputs_is_said_to_lack_them(another_stack, argv):
    with pytest.raises(SystemExit) as raised:
        main([*argv, "--stack", "another"])
    assert str(raised.value.code).startswith("error: stack another (us-east-1): the stack has no output '")


def test_what_the_local_run_cannot_do_is_said_before_anything_starts(tmp_path, monkeypatch):
    """A results folder that is a file, a file name that is not UTF-8, a file over the limit: refused before the
    local runtime starts (the first was found only after the run, its results lost; the others after the start)."""
    started = []
    monkeypatch.setattr("reviewtune.local.runtime.LocalRuntime.start", lambda self: started.append(self))
    good = tmp_path / "reviews.tsv"
    good.write_bytes(b"sentiment\treview_body\n1\tgood\n")
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(SystemExit) as exited:
        main(["run", "--data", str(good), "--out", str(afile)])
    assert exited.value.code == f"--out {afile}: a file, not a folder (the run's results are written into a folder)"

    latin = tmp_path.joinpath(os.fsdecode(b"caf\xe9.tsv"))
    latin.write_bytes(good.read_bytes())
    with pytest.raises(SystemExit) as exited:
        main(["run", "--data", str(latin)])
    assert exited.value.code == (f"DATA={tmp_path}/caf\\xe9.tsv: the file's name is not UTF-8, which S3 keys are: "
                                 "rename it")

    large = tmp_path / "large.tsv"
    with large.open("wb") as handle:  # sparse: its size is all that is read
        handle.truncate(300 * 1024 * 1024)
    with pytest.raises(SystemExit) as exited:
        main(["run", "--data", str(large)])
    assert exited.value.code == (f"DATA={large}: the file is 300 MiB (314,572,800 bytes); at most 256 MiB "
                                 "(268,435,456 bytes) are accepted: split it into smaller files")
    assert started == []


@pytest.mark.parametrize("printer", ["print", "cli.console.print", "commands.console.print"])
def test_output_whose_reader_stops_early_ends_quietly_as_sigpipe_would(printer):
    """`reviewtune runs list | head -1`: the reader closes the pipe; no "error: Broken pipe", status 141, whether
    the command writes with print (--json) or through rich (tables, the commands' text)."""
    import subprocess
    import sys

    loud = ("import sys; from reviewtune import cli; from reviewtune.console import commands; "
            f"cli.cmd_sample_data = lambda args: [{printer}('x' * 100) for _ in range(100_000)] and 0; "
            "sys.exit(cli.main(['sample-data', 'unused.tsv']))")
    writer = subprocess.Popen([sys.executable, "-c", loud], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    writer.stdout.readline()
    writer.stdout.close()  # as head does after its line
    stderr = writer.stderr.read().decode()
    assert writer.wait(timeout=60) == 141 and stderr == ""


def test_a_local_up_parameter_without_a_value_is_an_error_that_says_so(tmp_path):
    with pytest.raises(SystemExit, match=r"^error: --param needs KEY=VALUE, got 'MaxJobs'$"):
        main(["--workdir", str(tmp_path / "state"), "local", "up", "--param", "MaxJobs"])


def test_an_error_naming_a_file_with_control_characters_writes_them_as_escapes(tmp_path):
    odd = tmp_path / "bad\x1b[1m\u202ename.txt"
    odd.write_text("text\n")
    with pytest.raises(SystemExit) as raised:
        main(["drop", str(odd), "--stack", STACK])
    said = str(raised.value)
    assert "bad\\x1b[1m\\u202ename.txt" in said and said.isprintable(), said


def test_a_line_of_text_the_cli_prints_is_never_cut_inside_a_command(monkeypatch, capsys):
    from reviewtune.console import commands
    from reviewtune.console.text import plain

    monkeypatch.setattr(commands.console, "_width", 40)
    line = "dropped x.tsv; its run will be reviewtune-0123456789abcdef (`reviewtune runs show reviewtune-0123456789abcdef --follow`)"
    commands._emit(type("Args", (), {"json": False})(), {}, plain(line))
    assert capsys.readouterr().out == line + "\n"
