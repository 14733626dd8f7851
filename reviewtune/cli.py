"""The reviewtune command: run the pipeline locally, start / stop the local runtime, drop files and inspect runs
(on AWS or the local runtime)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from rich.table import Table
from rich.text import Text

from reviewtune import model_source
from reviewtune.budget import (
    PLAN_FILE,
    SAMPLE_BUDGET,
    TIME_BUDGET_MINUTES,
    Budget,
    Plan,
    fitted_to_model,
    plan_run,
    tokens_per_row,
)
from reviewtune.console import arguments, commands
from reviewtune.console.follow import Progress, wait_for_run
from reviewtune.console.text import BROKEN_PIPE_STATUS, PipedConsole, plain, quiet_after_broken_pipe, safe
from reviewtune.console.views import per_class_table
from reviewtune.core import aws_errors, display, names, tuning
from reviewtune.core.config import CLASS_BALANCE_MODES
from reviewtune.core.dataset import check_size
from reviewtune.core.errors import FileTooLargeError
from reviewtune.core.formats import accepted_formats_text, file_format
from reviewtune.core.metrics import OBJECTIVE_METRIC, printed_values
from reviewtune.core.runs import RunsRepository
from reviewtune.core.trial_facts import time_limited_share
from reviewtune.project import STATE_FOLDER, project_folder
from reviewtune.real_sample import PER_CLASS, SOURCE

console = PipedConsole(highlight=False, soft_wrap=True)
SUBSCRIBER_QUEUE = "reviewtune-cli-subscriber"


def _parse_params(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"error: --param needs KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def cmd_local_up(args: argparse.Namespace) -> int:
    from reviewtune.local.runtime import LocalRuntime

    overrides = _parse_params(args.param)
    runtime = LocalRuntime(workdir=Path(args.workdir), parameters={**Budget().parameters(), **overrides})
    # The handlers only set an event: the signals stay unblocked, so the jobs and handlers started from here (which
    # inherit the signal mask) can still be asked to stop with SIGTERM and save what they have.
    asked = threading.Event()
    with _stop_signals(lambda *_: asked.set()):
        try:
            runtime.start()
            for line in runtime.export_lines():
                print(line)
            for key, value in overrides.items():  # what replaces the local budget's or the template's values
                print(f"# parameter {key} = {value} (--param)")
            for key, value in runtime.stack.outputs.items():
                print(f"# {key} = {value}")
            print(f"# endpoints and outputs written to {runtime.state_file}; Ctrl-C or `reviewtune local down` stops",
                  flush=True)
            while not asked.wait(1):
                pass
        finally:
            _stop_uninterrupted(runtime)
    print("# local runtime stopped", flush=True)
    return 0


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # Ctrl-C, `local down` / kill, the terminal closed


@contextlib.contextmanager
def _stop_signals(handler: Callable[..., None]) -> Iterator[None]:
    """``handler`` for every stop signal while the block runs; the previous handlers after."""
    previous = {number: signal.signal(number, handler) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, earlier in previous.items():
            signal.signal(number, earlier)


def _stop_uninterrupted(runtime: Any) -> None:
    """Stop the runtime with the stop signals ignored: a second Ctrl-C must not leave jobs or local.json behind."""
    with _stop_signals(signal.SIG_IGN):
        runtime.stop()


def cmd_local_down(args: argparse.Namespace) -> int:
    from reviewtune.local.runtime import stop_running

    return 0 if stop_running(Path(args.workdir)) else 1


def _log_latest(runtime: Any) -> Callable[[str], tuple[int, float | None]]:
    """A trial's epochs and last validation accuracy from its log (the local SageMaker service's job folder)."""

    def latest(job: str) -> tuple[int, float | None]:
        log = Path(runtime.workdir) / "sagemaker" / "training" / job / "log.txt"
        try:
            values = printed_values(log.read_text(errors="replace"), OBJECTIVE_METRIC)
        except OSError:
            return 0, None
        return len(values), values[-1] if values else None

    return latest


def _wait_for_run(runtime: Any, run_id: str, timeout: float) -> dict[str, Any]:
    runs = RunsRepository(runtime.table(runtime.stack.outputs["RunsTableName"]))
    progress = Progress(console, runtime.client("sagemaker"), run_id, latest=_log_latest(runtime))
    return wait_for_run(console, runs, progress, run_id, timeout)


def _subscribe(runtime: Any) -> str:
    sqs, sns = runtime.client("sqs"), runtime.client("sns")
    url = sqs.create_queue(QueueName=SUBSCRIBER_QUEUE)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=runtime.stack.outputs["NotificationTopicArn"], Protocol="sqs", Endpoint=arn)
    return url


def _received(runtime: Any, url: str, wait: float = 10) -> list[dict[str, Any]]:
    sqs = runtime.client("sqs")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if messages:
            return [json.loads(m["Body"]) for m in messages]
    return []


def _download_results(runtime: Any, item: dict[str, Any], out: Path, plan: Plan | None = None) -> dict[str, Path]:
    s3 = runtime.client("s3")
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    results = item["results"]
    for name, field in (("evaluation.json", "evaluation_uri"), ("confusion_matrix.png", "confusion_matrix_uri"),
                        ("report.html", "report_uri")):
        if not results.get(field):  # no confusion matrix when the evaluation job could not draw it
            continue
        bucket, key = names.parse_s3_uri(results[field])
        target = out / name
        s3.download_file(bucket, key, str(target))
        files[name] = target
    (out / "run.json").write_text(json.dumps(item, indent=2, default=str))
    files["run.json"] = out / "run.json"
    if plan is not None:
        (out / PLAN_FILE).write_text(json.dumps(plan.record(), indent=2))
        files[PLAN_FILE] = out / PLAN_FILE
    else:
        (out / PLAN_FILE).unlink(missing_ok=True)  # an earlier run's plan is not this run's
    return files


def time_limit_notes(item: dict[str, Any]) -> list[str]:
    """A line for each trial whose time limit (train.py's max_train_seconds) ended its training before its plan."""
    notes = []
    for trial in item.get("tuning", {}).get("trials", []):
        share = time_limited_share(trial.get("planned_steps_pct"))
        if share is not None:
            notes.append(f"  {display.trial_suffix(trial['name'])}: its time limit (max_train_seconds) ended training "
                         f"at {display.share_done(share)} of the planned steps: this machine trained slower than planned")
    return notes


def _summary(item: dict[str, Any], files: dict[str, Path], message: dict[str, Any] | None, seconds: float, sample: bool,
             plan: Plan | None = None) -> None:
    best = item["tuning"]["best_training_job"]
    metrics = item["metrics"]
    console.rule("[bold]reviewtune run summary")
    if sample:
        console.print(f"Data: the embedded sample, {3 * PER_CLASS:,} real reviews from {SOURCE} (DATA=... for your own file)")
    rows = item["data"]["summary"]["rows"]
    console.print(plain(f"Run {item['run_id']}  dataset {item['dataset']}  rows train {rows['train']:,} / validation {rows['validation']:,} / test {rows['test']:,}"))
    trials = Table(title=f"Trials ({item['run_id']}-...)", show_lines=False)
    for column in ("trial", "status", "val acc %", "hyperparameters", "seconds"):
        trials.add_column(column)
    for trial in item["tuning"]["trials"]:
        mark = " *" if trial["name"] == best["name"] else ""
        hps = ", ".join(f"{k}={display.hyperparameter(v)}" for k, v in sorted(trial["tuned_hyperparameters"].items()))
        objective = display.percent(trial.get("objective"), scale=1, suffix=False, missing="-")
        seconds_trained = display.count(trial["training_seconds"]) if trial.get("training_seconds") else "-"
        trials.add_row(display.trial_suffix(trial["name"]) + mark, trial["status"], objective, hps, seconds_trained)
    console.print(trials)
    for note in time_limit_notes(item):
        console.print(plain(note))
    console.print(plain("Best hyperparameters: " + ", ".join(
        f"{k}={display.hyperparameter(v)}" for k, v in sorted(best["tuned_hyperparameters"].items()))))
    accuracy = metrics["accuracy"]
    interval = display.interval(accuracy.get("ci95"))
    console.print(Text.assemble("Validation accuracy (best trial): ", (display.percent(best.get("objective"), scale=1), "bold")))
    console.print(Text.assemble("Test accuracy (evaluation job):   ", (display.percent(accuracy.get("value")), "bold"),
                                f"  ({interval})" if interval else "",
                                f"   macro F1 {display.score(metrics.get('macro_f1', {}).get('value'))}"))
    console.print(per_class_table(metrics.get("per_class", {})))
    for name, path in files.items():
        console.print(plain(f"{name:<22} {path}"))
    if "report.html" in files:
        console.print(Text.assemble(("HTML report:", "bold"), f" {safe(files['report.html'])}"))
    if message:
        console.rule("SNS message as received by a subscriber")
        console.print(plain(f"Subject: {message.get('Subject')}"))
        console.print(plain(message.get("Message", "")))
    console.rule()
    console.print(finished_text(seconds, plan))


def finished_text(seconds: float, plan: Plan | None) -> str:
    """The run's last line: its wall time, beside the plan's estimate when there was one."""
    estimate = plan.estimated_minutes if plan is not None else None
    planned = f"; the plan estimated {estimate:.1f} of {plan.minutes:g} min" if estimate is not None else ""
    return f"Finished in {display.duration(seconds)} ({display.count(round(seconds))} s{planned})"


def split_rows(body: bytes, filename: str, class_balance: str, max_seq_length: int) -> tuple[dict[str, int], float | None] | None:
    """The split sizes start_tuning will make of the file (template defaults but ``class_balance``) and the mean
    tokens of its training rows at ``max_seq_length``; None for a file it will reject."""
    from reviewtune.core.dataset import split_reviews
    from reviewtune.core.errors import DatasetError

    try:
        split = split_reviews(body, filename, class_balance=class_balance)
    except DatasetError:
        return None
    return split.summary()["rows"], tokens_per_row((review.text for review in split.splits["train"]), max_seq_length)


def plan_for(args: argparse.Namespace, body: bytes, filename: str) -> tuple[Budget, Plan | None]:
    """The budget of this run: the sample's or real data's, the command line's overrides, fitted to the file."""
    budget = dataclasses.replace(SAMPLE_BUDGET if not args.data else Budget())
    for attr in ("max_jobs", "max_parallel_jobs", "epochs", "strategy", "early_stopping", "model", "class_balance"):
        value = getattr(args, attr)
        if value is not None:
            setattr(budget, attr, value)
    if args.model is not None:
        budget = fitted_to_model(budget)
    split = split_rows(body, filename, budget.class_balance, budget.max_seq_length)
    if split is None:
        return budget, None
    rows, tokens = split
    plan = plan_run(budget, rows, args.minutes, tokens)
    return plan.budget, plan


def cmd_run(args: argparse.Namespace) -> int:
    from reviewtune.local.runtime import LocalRuntime, check_template
    from reviewtune.real_sample import SAMPLE_KEY, sample_bytes

    check_template()  # before the plan is printed
    started = time.monotonic()
    sample = not args.data
    if sample:
        body, key = sample_bytes(), names.INCOMING_PREFIX + SAMPLE_KEY
    else:
        path = Path(args.data).expanduser()
        if not path.is_file():
            raise SystemExit(f"DATA={args.data}: {arguments.not_a_file(path)}")
        if file_format(path.name) is None:
            raise SystemExit(f"DATA={args.data}: only {accepted_formats_text()} files are accepted")
        try:
            path.name.encode("utf-8")
        except UnicodeEncodeError:  # bytes the file system keeps but no S3 key holds
            shown = os.fsencode(args.data).decode("utf-8", "backslashreplace")  # its bytes: caf\xe9.tsv
            raise SystemExit(f"DATA={shown}: the file's name is not UTF-8, which S3 keys are: rename it") from None
        try:
            check_size(path.stat().st_size)  # what the pipeline would reject, before anything is read or started
        except FileTooLargeError as error:
            raise SystemExit(f"DATA={args.data}: {error}") from None
        body, key = path.read_bytes(), names.INCOMING_PREFIX + path.name
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():  # found before the run, not after it, when its results would be lost
        raise SystemExit(f"--out {args.out}: a file, not a folder (the run's results are written into a folder)")
    if args.model is not None:
        try:
            model_from = model_source.describe(args.model)
        except model_source.ModelUnavailable as error:
            raise SystemExit(f"MODEL={args.model}: {error}") from None
    budget, plan = plan_for(args, body, key.rsplit("/", 1)[-1])
    if plan is None:
        console.print(Text.assemble(("reviewtune", "bold"), safe(f" local run: model {budget.model}, {budget.max_jobs} trials, {budget.max_parallel_jobs} at a time, {budget.epochs} epochs, {budget.strategy} search (the file will be rejected: see the run's message)")))
    else:
        lines = plan.lines()
        console.print(Text.assemble(("reviewtune", "bold"), f" local run: {safe(lines[0])}"))
        for line in lines[1:]:
            console.print(plain(f"  {line}"))
    if args.model is not None:
        console.print(plain(f"  model {args.model} from {model_from}"))
    runtime = LocalRuntime(workdir=Path(args.workdir), parameters=budget.parameters())

    def on_signal(*_: Any) -> None:
        raise KeyboardInterrupt

    with _stop_signals(on_signal):
        return _run_in(runtime, args, started, sample, body, key, plan)


RUN_WAIT_MIN_SECONDS = 3 * 3600


def run_wait_seconds(args: argparse.Namespace) -> float:
    """How long ``run`` waits for its run: ``--timeout``, else twice the time budget and an hour, at least 3 hours
    (a budget's jobs are stopped by their own limits well before)."""
    if args.timeout is not None:
        return args.timeout
    return max(RUN_WAIT_MIN_SECONDS, 2 * 60 * args.minutes + 3600)


def _run_in(runtime: Any, args: argparse.Namespace, started: float, sample: bool, body: bytes, key: str,
            plan: Plan | None) -> int:
    """Start the runtime, drop the file, follow its run to its end, stop the runtime (whatever happens)."""
    try:
        runtime.start()
        subscriber = _subscribe(runtime)
        bucket = runtime.stack.outputs["DataBucketName"]
        put = runtime.client("s3").put_object(Bucket=bucket, Key=key, Body=body)
        prefix = runtime.stack.parameters["JobNamePrefix"]
        run_id = tuning.run_id_of_upload(prefix, bucket, key, put.get("VersionId"), put.get("ETag"))
        console.print(plain(f"dropped {len(body):,} bytes at s3://{bucket}/{key} -> run {run_id}"))
        item = _wait_for_run(runtime, run_id, run_wait_seconds(args))
        runtime.router.wait_idle(60)  # let the last handler return before the runtime stops
        message = next(iter(_received(runtime, subscriber)), None)
        if item["status"] != "SUCCEEDED":
            console.print(Text.assemble((f"run {run_id} ended {item['status']}", "red"), f": {safe(item.get('failure_reason', ''))}"))
            if message:
                console.print(plain(message.get("Message", "")))
            return 1
        files = _download_results(runtime, item, Path(args.out), plan)
        _summary(item, files, message, time.monotonic() - started, sample, plan)
        return 0
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: stopping the local runtime[/]")
        return 130
    finally:
        _stop_uninterrupted(runtime)


def cmd_sample_data(args: argparse.Namespace) -> int:
    from reviewtune.real_sample import sample_bytes

    path, body = Path(args.path).expanduser(), sample_bytes()
    if _is_stdout(path):  # `sample-data /dev/stdout > f.tsv` (or >>, or | ...): written as the shell opened it
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
        commands.progress_console.print(plain(f"wrote the embedded sample dataset to {path}"))
        return 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A file of the person's is never replaced unasked: "x" creates the file or fails if anything holds the name
        # (no window between a check and the write). Written as asked: --force, a device or a pipe, an empty file
        # (nothing to lose).
        with path.open("wb" if args.force or _nothing_to_lose(path) else "xb") as out:
            out.write(body)
    except FileExistsError:
        if _holds(path, body):
            console.print(plain(f"{path} already holds the embedded sample dataset"))
            return 0
        raise SystemExit(f"error: {path} exists and is not the sample: nothing written (--force replaces it)") from None
    except OSError as error:
        raise SystemExit(f"error: cannot write {path}: {error.strerror or error}") from None
    console.print(plain(f"wrote the embedded sample dataset to {path}"))
    return 0


def _is_stdout(path: Path) -> bool:
    try:
        return os.path.samestat(path.stat(), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError, AttributeError):  # no such file, or a stdout without a descriptor (captured)
        return False


def _nothing_to_lose(path: Path) -> bool:
    try:
        info = path.stat()
    except OSError:  # not there (or a dangling link): "x" tells
        return False
    return not stat.S_ISREG(info.st_mode) or info.st_size == 0


def _holds(path: Path, body: bytes) -> bool:
    try:
        return path.is_file() and path.stat().st_size == len(body) and path.read_bytes() == body
    except OSError:
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reviewtune", description=__doc__)
    parser.add_argument("--workdir", default=os.environ.get("REVIEWTUNE_WORKDIR") or str(project_folder() / STATE_FOLDER),
                        help="local runtime state folder (default: .reviewtune in the project's folder, found from the "
                             "working folder up)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the whole pipeline locally on a file (default: the embedded sample dataset)")
    run.add_argument("--data", help="a .tsv/.csv review file (text + sentiment -1/0/1 or rating 1-5)")
    run.add_argument("--max-jobs", type=arguments.count("trials"))
    run.add_argument("--parallel-jobs", dest="max_parallel_jobs", type=arguments.count("trials"))
    run.add_argument("--epochs", type=arguments.count("epochs"))
    run.add_argument("--strategy", choices=("Random", "Bayesian", "Hyperband", "Grid"))
    run.add_argument("--early-stopping", choices=("Off", "Auto"))
    run.add_argument("--model", help="model_name_or_path (default: all-mpnet-base-v2 for a file, all-MiniLM-L6-v2 for the sample)")
    run.add_argument("--class-balance", choices=CLASS_BALANCE_MODES,
                     help="downsample (default): each class cut to the smallest, as in the cloud; none: every row kept")
    run.add_argument("--minutes", type=arguments.span("minutes", positive=True), default=TIME_BUDGET_MINUTES, help="time budget of the whole run; epochs are cut to fit it")
    run.add_argument("--out", default="out", help="where evaluation.json, confusion_matrix.png and report.html are copied")
    run.add_argument("--timeout", type=arguments.span("seconds"), default=None,
                     help="seconds to wait for the run (default: twice --minutes and an hour, at least 3 hours)")
    run.set_defaults(func=cmd_run)

    local = sub.add_parser("local", help="the local runtime (moto + local SageMaker)")
    local_sub = local.add_subparsers(dest="local_command", required=True)
    up = local_sub.add_parser("up", help="start it and keep it running until Ctrl-C")
    up.add_argument("--param", action="append", default=[], help="template parameter override KEY=VALUE")
    up.set_defaults(func=cmd_local_up)
    down = local_sub.add_parser("down", help="stop a running one")
    down.set_defaults(func=cmd_local_down)

    commands.register(sub)

    sample = sub.add_parser("sample-data", help="write the embedded sample dataset")
    sample.add_argument("path", help="the file to write (.tsv); an existing file is left as it is")
    sample.add_argument("--force", action="store_true", help="replace the file if it exists")
    sample.set_defaults(func=cmd_sample_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except SystemExit as exit_:
        # one place for every error's words: a name or an id with a control character (an ESC, a bidi override)
        # is written as its escape, as the tables write it, never sent to the terminal as it is
        if isinstance(exit_.code, str) and not exit_.code.isprintable():
            raise SystemExit(safe(exit_.code)) from None
        raise


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:  # Ctrl-C before a command's own handling (a local run's plan, reading a file)
        return 130
    except (ClientError, BotoCoreError) as error:  # AWS (or the local runtime's moto) refused or could not be reached
        raise SystemExit(f"error: {aws_errors.describe(error)}") from None
    except BrokenPipeError:  # the output's reader stopped (`| head`): as a command killed by SIGPIPE, quietly
        quiet_after_broken_pipe()
        return BROKEN_PIPE_STATUS
    except OSError as error:  # a path that is not what the command needs (a file for a folder, no permission...)
        raise SystemExit(f"error: {error}") from None
    except RuntimeError as error:  # the local runtime's refusals (already running, no template, a bad parameter...),
        # a stack without the outputs a command needs (another application's, one still being made)
        from reviewtune.console.target import TargetError
        from reviewtune.local.runtime import LocalRuntimeError
        from reviewtune.local.stack import StackError

        if isinstance(error, LocalRuntimeError | StackError | TargetError):
            raise SystemExit(f"error: {error}") from None
        raise


if __name__ == "__main__":
    sys.exit(main())
