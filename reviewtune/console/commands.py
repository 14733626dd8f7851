"""``reviewtune runs list|show|trials|report|stop|retry``, ``reviewtune drop``, ``reviewtune champion``, ``reviewtune
promote`` and ``reviewtune dead-letters``: AWS or the local runtime, alike."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import webbrowser
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.text import Text

from reviewtune.console import arguments, audit, dead_letters, job_logs, overview, queries, views
from reviewtune.console.follow import Progress, wait_for_run
from reviewtune.console.target import Target, TargetError, resolve
from reviewtune.console.text import PipedConsole, plain, safe
from reviewtune.core import aws_errors, config, display, names, page, registry, states, stop_requests, tuning
from reviewtune.core.champion import CHAMPION_KEY_PREFIX, Champion, get_champion, is_champion_key
from reviewtune.core.promotion import PromotionError, promote
from reviewtune.core.retries import RetryError, refusal, retry_run
from reviewtune.core.runs import RunStatus, now_iso
from reviewtune.core.stop_requests import StopError, request_stop, stop_job_now

# Piped output (scripts, tests, `| less`) gets wide lines instead of rich's 80 columns.
console = PipedConsole(highlight=False, width=None if sys.stdout.isatty() else 250)
progress_console = PipedConsole(highlight=False, stderr=True, soft_wrap=True)  # a line per message, whatever the width


def _target(args: argparse.Namespace) -> Target:
    try:
        return resolve(args.target, Path(args.workdir), args.stack)
    except TargetError as error:
        raise SystemExit(f"error: {error}") from None


def _emit(args: argparse.Namespace, data: Any, renderable: Any) -> None:
    if args.json:
        print(json.dumps(queries.jsonable(data), indent=2, default=str))
    else:
        console.print(renderable, soft_wrap=isinstance(renderable, Text))  # a line of text: never cut mid-command


def _given(run_id: str) -> None:
    if not run_id.strip():
        raise SystemExit("error: an empty run id")


def _get(target: Target, run_id: str) -> dict[str, Any]:
    _given(run_id)
    if is_champion_key(run_id):  # the champion pointer shares the runs table but is no run
        dataset = run_id.removeprefix(CHAMPION_KEY_PREFIX)
        raise SystemExit(f"error: {run_id!r} is the champion pointer of dataset {dataset!r}, not a run: "
                         f"`reviewtune champion --dataset {page.shell_word(dataset)}` shows it")
    item = target.runs().get(run_id)
    if item is None:
        item = target.runs().get(_full_id(target, run_id))
    _refuse_own_item(target, run_id, item)
    if item is None:
        short = (f" (a prefix of a run's id needs {queries.PREFIX_MIN_CHARS} or more characters)"
                 if len(run_id) < queries.PREFIX_MIN_CHARS else "")
        raise SystemExit(f"error: no run {run_id!r} in {target.description}{short}")
    return item


def _refuse_own_item(target: Target, run_id: str, item: dict[str, Any] | None) -> None:
    """The slots, the prefixes, a content marker: reviewtune's own items of the runs table, which no command shows as
    a run."""
    if item is not None and "status" not in item:
        raise SystemExit(f"error: no run {run_id!r} in {target.description}: it is one of reviewtune's own items of "
                         "the runs table (such as the tuning slots, the prefixes used or a content marker), not a run")


def _full_id(target: Target, run_id: str) -> str:
    """The one recent run whose id starts with ``run_id`` (or whose digest does), for the commands that only read;
    ``run_id`` itself where none does. Several: an error that lists them."""
    if len(run_id) < queries.PREFIX_MIN_CHARS:
        return run_id
    matches = queries.runs_with_prefix(target.runs().table, run_id)
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (f" and {len(matches) - 5} more" if len(matches) > 5 else "")
        raise SystemExit(f"error: {run_id!r} starts {len(matches)} runs' ids: {shown}; type more of the one you mean")
    return matches[0] if matches else run_id


def cmd_list(args: argparse.Namespace) -> int:
    """Runs newest first; ``--dataset`` a dataset, or a folder (as `drop --dataset` takes it): the runs of every
    dataset under it."""
    target = _target(args)
    table = target.runs().table
    items = queries.list_runs(table, args.dataset, args.status, args.limit + 1)  # one more: are there more?
    which = f"{args.status} runs" if args.status else "Runs"
    title = f"{which}, newest first ({target.description})"
    # a dataset with runs, none in the status asked for: a dataset, not a folder, and nothing to explain but that
    other_runs = bool(args.dataset and args.status and not items and queries.list_runs(table, args.dataset, None, 1))
    folder = _folder_datasets(target, args.dataset) if args.dataset and not items and not other_runs else None
    if folder and folder[0]:
        datasets, more = folder
        items = queries.list_runs_of(table, datasets, args.status, args.limit + 1)
        some = f"the first {len(datasets)}" if more else f"the {len(datasets)}"
        title = (f"{which} of {some} dataset{'s' if len(datasets) > 1 else ''} under {args.dataset.strip('/')}/, "
                 f"newest first ({target.description})")
    items, cut = items[:args.limit], len(items) > args.limit
    _emit(args, items, views.runs_table(items, title))
    if cut:
        progress_console.print(plain(f"the newest {args.limit} shown; there are more: `--limit N` shows N"))
    if other_runs:
        progress_console.print(plain(f"no {args.status} runs of dataset {args.dataset!r}; `reviewtune runs list "
                                     f"--dataset {page.shell_word(args.dataset)}` lists its runs of every status"))
    elif not args.dataset and not items and args.status and queries.list_runs(table, None, None, 1):
        progress_console.print(plain(f"no {args.status} runs; `reviewtune runs list` lists the runs of every status"))
    elif not args.dataset and not items:
        progress_console.print(plain(
            "no runs yet: `reviewtune drop FILE --dataset NAME` tunes a file of reviews (`reviewtune sample-data FILE` "
            "writes one)"))
    elif args.dataset and not (folder and folder[0]) and not items:
        none_under = f", and no files under incoming/{args.dataset.strip('/')}/" if folder is not None else ""
        progress_console.print(plain(
            f"no runs of dataset {args.dataset!r}{none_under}: a dataset is a file's path below incoming/ (such as "
            f"'{args.dataset.strip('/')}/reviews.tsv'), or a folder of them; `reviewtune audit --dataset "
            f"{page.shell_word(args.dataset)}` lists every file of a folder with its run"))
    return 0


def _folder_datasets(target: Target, folder: str) -> tuple[list[str], bool] | None:
    """The datasets under ``folder`` (none: no files there), or None where S3 refused to list them (said here)."""
    try:
        datasets, more = queries.datasets_under(target.client("s3"), target.output("DataBucketName"), folder)
    except (ClientError, BotoCoreError) as error:
        progress_console.print(plain(f"could not list the files under incoming/{folder.strip('/')}/ to find its "
                                     f"datasets: {aws_errors.describe(error)}"))
        return None
    return datasets, more


def cmd_show(args: argparse.Namespace) -> int:
    """One run; with --follow, a run that has not ended is shown live until it ends (exit status 1 unless it
    SUCCEEDED, as `drop --follow`)."""
    target = _target(args)
    item = _get(target, args.run_id)
    if args.follow and not states.is_final(item["status"]):
        run_id = item["run_id"]
        live = progress_console if args.json else console  # with --json, stdout carries only the final JSON
        try:
            item = wait_for_run(live, target.runs(), Progress(live, target.client("sagemaker"), run_id), run_id,
                                args.timeout)
        except KeyboardInterrupt:
            raise SystemExit(_stopped_following(run_id)) from None
        except (TimeoutError, ClientError, BotoCoreError) as error:
            raise SystemExit(f"error: following run {run_id}: {safe(error)} (the run goes on; `reviewtune runs show "
                             f"{run_id} --follow` follows it again)") from None
    read, champion = _champion_of(target, item)
    _emit(args, item, views.run_view(item, champion_now=views.replaced_champion(item, champion)))
    if not args.json:
        console.print(plain(f"Logs: `reviewtune runs logs {item['run_id']}` (its jobs); "
                            + "; ".join(_logs(target, item))), soft_wrap=True)
        _next_step(target, item, champion, read)
    return 0 if not args.follow or item["status"] == RunStatus.SUCCEEDED else 1


def _show_ended(target: Target, item: dict[str, Any]) -> None:
    """A followed run once it ended (drop --follow, retry --follow), with what a person can do next."""
    read, champion = _champion_of(target, item)
    console.print(views.run_view(item, champion_now=views.replaced_champion(item, champion)))
    _next_step(target, item, champion, read)


def _next_step(target: Target, item: dict[str, Any], champion: Champion | None, read: bool) -> None:
    def retry_refused() -> str | None:
        """Why `runs retry` would refuse the run (retries.refusal), None when it would not or DynamoDB cannot say
        (the retry itself checks again); asked only where a retry would be named."""
        try:
            return refusal(target.runs(), item)
        except (ClientError, BotoCoreError):
            return None

    step = views.next_step(item, champion, champion_read=read, retry_refused=retry_refused)
    if step:
        console.print(plain(f"Next: {step}"), soft_wrap=True)


def _champion_of(target: Target, item: dict[str, Any]) -> tuple[bool, Champion | None]:
    """For a SUCCEEDED run, its dataset's champion pointer read now: (True, the champion or None when it has none), or
    (False, None) when the pointer cannot be read (the rest of the run is still shown); (True, None) for other runs."""
    if item.get("status") != RunStatus.SUCCEEDED:
        return True, None
    try:
        return True, get_champion(target.runs().table, item.get("dataset") or item["run_id"])
    except (ClientError, BotoCoreError):
        return False, None


def cmd_logs(args: argparse.Namespace) -> int:
    """The output of the run's jobs from CloudWatch Logs: each trial and the evaluation, or those ``--job`` names
    (jobs or functions), and with ``--functions`` every function's invocations on the run."""
    target = _target(args)
    item = _get(target, args.run_id)
    run_id = item["run_id"]
    logs, tail = target.client("logs"), max(args.tail, 0)
    named = args.job or []
    functions = _functions(target) if args.functions or named else {}
    # --job may name functions too: those alone are read then (all of them with --functions), and the run's jobs
    # only when --job names one of them as well
    asked = {label: [job for job in named if job_logs.names_function(job, label, functions.get(label, ""))]
             for label in FUNCTION_LABELS}
    missing = [label for label, naming in asked.items() if naming and label not in functions]
    if missing:
        raise SystemExit(f"error: {target.description}: the stack has no output naming its {' or '.join(missing)} "
                         f"({', '.join(label + 'Name' for label in missing)}), so its logs cannot be found")
    chosen = {label: name for label, name in functions.items() if args.functions or asked[label]}
    jobs = [job for job in named if not any(job in found for found in asked.values())]
    try:
        found = job_logs.run_logs(logs, run_id, tail, jobs) if jobs or not named else []
        if chosen:
            created = display.moment(item.get("created_at"))
            found += job_logs.function_logs(logs, run_id, chosen,
                                            int(created.timestamp() * 1000) if created else 0, tail)
    except (ClientError, BotoCoreError) as error:
        raise SystemExit(f"error: reading the logs of {run_id}: {aws_errors.describe(error)}") from None
    if args.json:
        print(json.dumps([entry.as_dict() for entry in found], indent=2))
    elif found:
        console.print(views.logs_view(found, run_id))
    if not found:
        what = f"job {', '.join(map(repr, named))} of run {run_id}" if named else f"run {run_id}"
        hint = _no_logs_hint(item, args) if jobs or not named else (
            f": no invocation of {' or '.join(chosen)} named it (searched from a minute before the run's record was "
            "made)")
        progress_console.print(plain(f"no log of {what} in CloudWatch Logs{hint}"))
        return 1
    return 0


def _made_no_tuning_job(item: dict[str, Any]) -> bool:
    """A run that never had a tuning job: rejected, a duplicate, queued, or ended before one was made."""
    status = item.get("status")
    return status in states.WITHOUT_TUNING_JOB or (states.is_final(status) and not item.get("tuning_job_arn"))


def _no_logs_hint(item: dict[str, Any], args: argparse.Namespace) -> str:
    """Why a run may have no log yet, and what to run instead."""
    run_id, status = item["run_id"], item.get("status")
    if _made_no_tuning_job(item):
        return f": it is {status} and made no job (`reviewtune runs show {run_id}` says why)"
    if args.job:
        return (f"; `reviewtune runs trials {run_id}` lists its trials (--job takes 'evaluation', a trial's number or "
                f"its suffix, or a function: {FUNCTION_WORDS})")
    functions = "" if args.functions else "; `--functions` adds what the functions logged about it"
    if not states.is_final(status):
        return (f": it is {status}, and a job writes its first lines a minute or two after it starts; try again, or "
                f"follow the run with `reviewtune runs show {run_id} --follow`{functions}")
    return f": its jobs' log streams are gone (deleted, or past a retention set on their log groups){functions}"


def _logs(target: Target, item: dict[str, Any]) -> list[str]:
    """Where the run's jobs and the functions wrote their logs: the local runtime's files, or CloudWatch Logs; only
    the jobs the run can have had (no trials before its tuning job, no evaluation before its evaluation job)."""
    run_id, status = item["run_id"], item.get("status")
    trials = status not in states.WITHOUT_TUNING_JOB
    evaluated = status in (RunStatus.EVALUATING, RunStatus.SUCCEEDED) or bool(item.get("evaluation_job_name"))
    if target.local_workdir is not None:
        jobs = Path(target.local_workdir) / "sagemaker"
        where = [f"trials {jobs / 'training' / (run_id + '-*')}/log.txt" if trials else None,
                 f"evaluation {jobs / 'processing' / (run_id + names.EVALUATION_SUFFIX)}/log.txt" if evaluated else None,
                 f"functions {Path(target.local_workdir) / 'logs'}/<Function>.log (grep {run_id})"]
    else:
        functions = " ".join(_functions(target).values()) or "<function>"
        where = [f"trials `aws logs tail {names.TRAINING_LOG_GROUP} --log-stream-name-prefix {run_id}`" if trials else None,
                 f"evaluation `aws logs tail {names.PROCESSING_LOG_GROUP} --log-stream-name-prefix {run_id}"
                 f"{names.EVALUATION_SUFFIX}`" if evaluated else None,
                 f"functions `aws logs tail /aws/lambda/NAME --filter-pattern '\"{run_id}\"'` for NAME in {functions}"]
    return [line for line in where if line]


# The stack's functions by logical id; the output naming each deployed function is the id and "Name".
FUNCTION_LABELS = ("StartTuningFunction", "StartEvaluationFunction", "RecordResultsFunction", "ReconcileFunction")
# As `--job` takes them (job_logs.names_function): start_tuning, start_evaluation, record_results, reconcile
FUNCTION_WORDS = ", ".join(re.sub(r"(?<!^)(?=[A-Z])", "_", label.removesuffix("Function")).lower()
                           for label in FUNCTION_LABELS)


def _functions(target: Target) -> dict[str, str]:
    """The stack's functions' names by their logical id (``StartTuningFunction``), from its outputs."""
    return {label: target.outputs[label + "Name"] for label in FUNCTION_LABELS if label + "Name" in target.outputs}


def cmd_trials(args: argparse.Namespace) -> int:
    _given(args.run_id)
    target = _target(args)
    item = target.runs().get(args.run_id)
    _refuse_own_item(target, args.run_id, item)
    if item is None:
        args.run_id = _full_id(target, args.run_id)
    try:
        rows = queries.trial_rows(target.client("sagemaker"), args.run_id)
    except ClientError as error:
        item = target.runs().get(args.run_id)
        if item is not None and _made_no_tuning_job(item):
            raise SystemExit(f"error: run {args.run_id} is {item.get('status')}: it has no tuning job, so no trials "
                             f"(`reviewtune runs show {args.run_id}` says why)") from None
        raise SystemExit(f"error: tuning job {args.run_id}: {error.response['Error'].get('Message', error)}") from None
    _emit(args, rows, views.trials_table(rows, f"Trials of {args.run_id}"))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    target = _target(args)
    item = _get(target, args.run_id)
    try:
        path = queries.fetch_report(target.client("s3"), item, target.output("DataBucketName"), Path(args.out))
    except ClientError as error:
        bucket, key = queries.report_location(item, target.output("DataBucketName"))
        why = ("" if item.get("status") == RunStatus.SUCCEEDED else
               ": its evaluation job writes the report, and this run did not get that far"
               f" (`reviewtune runs show {item['run_id']}` says what happened)")
        raise SystemExit(f"error: no report at s3://{bucket}/{key} ({error.response['Error']['Code']}); run status "
                         f"{item['status']}{why}") from None
    if args.json:
        print(json.dumps({"run_id": item["run_id"], "path": str(path)}))
    else:
        console.print(plain(f"report of {item['run_id']}: {path}"), soft_wrap=True)
    if args.open:
        webbrowser.open(path.resolve().as_uri())
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    """For each run: record the request, stop its running job now; the reconciler (or the job's end) ends the run
    STOPPED. A run that cannot be stopped is reported and the others are still stopped (exit status 1)."""
    target = _target(args)
    by = queries.caller(target.client("sts"))
    runs, sagemaker = target.runs(), target.client("sagemaker")
    done: list[dict[str, Any]] = []
    for run_id in dict.fromkeys(args.run_ids):  # each once, in the order given
        try:
            if not run_id.strip():
                raise StopError("an empty run id")
            asked_at = datetime.now(UTC)
            item = request_stop(runs, run_id, why=args.reason, by=by, now=asked_at)
        except (StopError, ClientError, BotoCoreError) as error:  # reported; the other runs are still stopped
            text = str(error) if isinstance(error, StopError) else f"run {run_id}: {aws_errors.describe(error)}"
            done.append({"run_id": run_id, "error": text})
            progress_console.print(plain(f"error: {text}"))
            continue
        outcome, answer = stop_job_now(sagemaker, item)
        done.append({"run_id": item["run_id"], "status": item["status"], "stop_request": item["stop_request"],
                     "job": outcome, "job_answer": answer})
        if not args.json:
            # the run keeps the first request: another one (anyone's, even one made a moment before this) when the
            # request it holds is not the one this command wrote
            ours = (item["stop_request"].get("at"), item["stop_request"].get("by")) == (now_iso(asked_at), by)
            console.print(plain(_stopping_text(item, outcome, answer, asked_before=not ours)), soft_wrap=True)
    if args.json:
        print(json.dumps(queries.jsonable(done), indent=2, default=str))
    return 1 if any("error" in entry for entry in done) else 0


def _stopping_text(item: dict[str, Any], outcome: str, answer: str | None, *, asked_before: bool = False) -> str:
    job = "evaluation job" if item["status"] == RunStatus.EVALUATING else "tuning job"
    then = {
        stop_requests.NO_JOB: "no tuning job started: the reconciler's next pass ends it STOPPED"
        + (" (REJECTED or DUPLICATE instead if its start, under way, finds the file so first)"
           if item["status"] == RunStatus.CLAIMED else ""),
        stop_requests.STOPPING: f"its {job} is stopping; the run ends STOPPED when SageMaker says it has stopped",
        stop_requests.NOT_RUNNING: f"its {job} is not running ({answer}); the run ends at its next step: STOPPED, "
        "or FAILED if the job failed on its own",
        stop_requests.FAILED: f"stopping its {job} failed ({answer}); the reconciler's next pass stops it",
    }[outcome]
    request = item["stop_request"]
    asked = (f"{request['reason']!r} by {request['by']} at {display.utc_time(request['at'])}")
    if asked_before:  # the first request holds: its reason, not this one's
        return f"a stop of {item['run_id']} ({item['status']}) was asked already: {asked}, which holds; {then}"
    return f"stop of {item['run_id']} ({item['status']}) recorded: {asked}; {then}"


def cmd_retry(args: argparse.Namespace) -> int:
    """For each run: copy its file's version onto its key, so that a new run tunes it (retries.py). A run that cannot
    be retried is reported and the others are still retried (exit status 1). With --follow (one run), the new run is
    shown live until it ends."""
    run_ids = list(dict.fromkeys(args.run_ids))  # each once, in the order given
    if args.follow and len(run_ids) > 1:
        raise SystemExit("error: --follow follows one run; retry one run at a time to follow it")
    target = _target(args)
    by = queries.caller(target.client("sts"))
    runs, s3 = target.runs(), target.client("s3")
    prefix = target.parameters.get("JobNamePrefix") or None  # the stack's: it names the new runs
    retried_now: dict[tuple[str, str], Any] = {}
    sweep_days = audit.stack_defaults(target.parameters)[1]  # the stack's MissedDropWindowDays
    done: list[dict[str, Any]] = []
    for run_id in run_ids:
        try:
            retry = retry_run(runs, s3, run_id, why=args.reason, by=by, prefix=prefix, retried_now=retried_now,
                              sweep_days=sweep_days)
        except (RetryError, ClientError, BotoCoreError) as error:  # reported; the other runs are still retried
            text = str(error) if isinstance(error, RetryError) else f"run {run_id}: {aws_errors.describe(error)}"
            done.append({"run_id": run_id, "error": text})
            progress_console.print(plain(f"error: {text}"))
            continue
        done.append(retry.as_dict())
        if not args.json:
            console.print(plain(f"retry of {run_id}: its file copied onto s3://{retry.bucket}/"
                                f"{page.one_line(retry.key)} as a new object version {retry.version_id}; its run is "
                                f"{retry.new_run_id} (`reviewtune runs show {retry.new_run_id}`)"), soft_wrap=True)
    if args.follow and "error" not in done[0]:
        retry = done[0]
        live = progress_console if args.json else console
        dropped = {"bucket": retry["bucket"], "key": retry["key"], "version_id": retry["version_id"],
                   "etag": retry["etag"]}
        item = _follow(target, live, names.dataset_name(retry["key"]), dropped, args.timeout)
        done[0]["outcome"] = item
        if not args.json:
            _show_ended(target, item)
    if args.json:
        print(json.dumps(queries.jsonable(done), indent=2, default=str))
    if any("error" in entry for entry in done):
        return 1
    return 0 if not args.follow or done[0]["outcome"]["status"] == RunStatus.SUCCEEDED else 1


def _run_of_drop(target: Target, dropped: dict[str, Any]) -> str | None:
    """The id start_tuning gives the run of an uploaded version (tuning.run_id_of: the stack's prefix and the
    object's bucket, key, version and ETag); None without a version id (a bucket without versioning names a second
    upload of the same bytes otherwise) or without the prefix."""
    version, prefix = names.object_version(dropped.get("version_id")), target.parameters.get("JobNamePrefix")
    if version is None or not prefix:  # a stack whose parameters do not say its prefix: not guessed
        return None
    return tuning.run_id_of_upload(prefix, dropped["bucket"], dropped["key"], version, dropped.get("etag"))


def cmd_drop(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise SystemExit(f"error: {path}: {arguments.not_a_file(path)}")
    try:
        key = queries.drop_key(path, args.dataset)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    target = _target(args)
    dataset = names.dataset_name(key)
    # the runs there before: without versioning, the same bytes dropped before have a run of the same key and ETag
    before = _runs_before(target, dataset) if args.follow else frozenset()
    dropped = queries.upload(target.client("s3"), target.output("DataBucketName"), path, key)
    if not args.follow:
        run_id = _run_of_drop(target, dropped)
        if run_id:
            dropped["run_id"] = run_id
        then = f"; its run will be {run_id} (`reviewtune runs show {run_id} --follow`)" if run_id else ""
        _emit(args, dropped, plain(f"dropped {path} at s3://{dropped['bucket']}/{page.one_line(key)} "
                                   f"({dropped['content_type']}); dataset {page.one_line(dataset)}{then}"))
        return 0
    live = progress_console if args.json else console  # with --json, stdout carries only the final JSON
    live.print(plain(f"dropped {path} at s3://{dropped['bucket']}/{page.one_line(key)}; waiting for its run"))
    item = _follow(target, live, dataset, dropped, args.timeout, before)
    if args.json:
        print(json.dumps(queries.jsonable(item), indent=2, default=str))
    else:
        _show_ended(target, item)
    return 0 if item["status"] == RunStatus.SUCCEEDED else 1


def _runs_before(target: Target, dataset: str) -> frozenset[str]:
    """The dataset's newest runs before a drop (``queries.run_ids``); none when DynamoDB will not say (the file is
    dropped all the same; without versioning, --follow may then take a run of the same bytes dropped moments before)."""
    try:
        return queries.run_ids(target.runs().table, dataset)
    except (ClientError, BotoCoreError) as error:
        progress_console.print(plain(f"warning: the runs of {dataset} could not be read before the drop ({error})"))
        return frozenset()


def _follow(target: Target, live: Console, dataset: str, dropped: dict[str, Any], timeout: float,
            before: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The dropped object's run once it ends; ``timeout`` covers finding the run and following it. The file is in
    S3 whatever happens here: an error says so, and how to go on following (``runs show``)."""
    where = safe(page.one_line(f"s3://{dropped['bucket']}/{dropped['key']}"))
    ends = time.monotonic() + timeout
    runs = target.runs()
    run_id = None
    try:
        item = queries.find_run(runs.table, dataset, dropped, timeout=timeout, before=before)
        if item is None:
            raise SystemExit(f"error: no run of {where} appeared within {timeout:.0f} s (the file is uploaded; "
                             "`reviewtune runs list` shows its run once it has one)")
        run_id = item["run_id"]
        progress = Progress(live, target.client("sagemaker"), run_id)
        return wait_for_run(live, runs, progress, run_id, max(0.0, ends - time.monotonic()))
    except KeyboardInterrupt:
        if run_id:
            raise SystemExit(_stopped_following(run_id)) from None
        raise SystemExit(f"stopped waiting for the run of {where} (the file is uploaded; `reviewtune runs list` shows "
                         "its run once it has one)") from None
    except (TimeoutError, ClientError, BotoCoreError) as error:
        goes_on = f"`reviewtune runs show {run_id} --follow` follows it" if run_id else "`reviewtune runs list` shows it"
        # the time given covers finding the run too: said as given, not as what was left of it once found
        why = f"run {run_id} did not finish within {timeout:.0f} s" if isinstance(error, TimeoutError) else safe(error)
        raise SystemExit(f"error: following the run of {where}: {why} (the file is uploaded and its run goes "
                         f"on; {goes_on})") from None


def _stopped_following(run_id: str) -> str:
    """What Ctrl-C on a followed run says: only the following stopped."""
    return (f"stopped following run {run_id}; the run goes on (`reviewtune runs show {run_id} --follow` follows it "
            f"again, `reviewtune runs stop {run_id}` stops it)")


def _no_champion(runs: Any, dataset: str, where: str) -> str:
    """Why a dataset has no champion: none of its runs succeeded yet (or the name differs), or those that did were
    not made champion (no better than always answering one class), the newest one's decision said."""
    decided = next((item for item in runs.by_dataset(names.normalize_dataset(dataset), limit=50)
                    if item.get("status") == states.RunStatus.SUCCEEDED and isinstance(item.get("champion"), dict)),
                   None)
    if decided is None:
        return (f"error: dataset {dataset!r} has no champion in {where} (no run of it has succeeded yet, or the name "
                "differs: it is the path below incoming/)")
    why = decided["champion"].get("reason") or decided["champion"].get("decision") or "not decided"
    then = (f"`reviewtune promote {decided['run_id']} --reason TEXT` makes it champion by hand"
            if views.promotable(decided) else
            f"it has no model package to make champion (`reviewtune runs show {decided['run_id']}` says why)")
    return (f"error: dataset {dataset!r} has no champion in {where}: no run of it that succeeded was made one; the "
            f"newest, {decided['run_id']}: {safe(why)}; {then}")


def cmd_champion(args: argparse.Namespace) -> int:
    target = _target(args)
    runs = target.runs()
    if args.dataset is None:
        champions = queries.champions(runs.table)
        _emit(args, champions, views.champions_table(champions, f"Champions by dataset ({target.description})"))
        if not champions:
            progress_console.print(plain(
                "no dataset has a champion yet: a dataset's first SUCCEEDED run becomes its champion when its test "
                "accuracy beats answering the test split's most common class; `reviewtune runs list --status "
                "SUCCEEDED` lists the runs `reviewtune promote RUN_ID --reason TEXT` can make champion"))
        return 0
    champion = queries.champion_of(runs, args.dataset)
    folder = names.normalize_dataset(args.dataset).strip("/") + "/"
    under = [] if champion is not None else [
        c for c in queries.champions(runs.table) if str(c.get("dataset", "")).startswith(folder)]
    if under:  # a folder, as `drop --dataset` and `runs list --dataset` take one: the champions of its datasets
        # an object as a dataset's is (a script reads .champions of a folder, .run_id of a dataset)
        _emit(args, {"folder": folder, "champions": under},
              views.champions_table(under, f"Champions of the datasets under {folder} ({target.description})"))
        return 0
    if champion is None:
        raise SystemExit(_no_champion(runs, args.dataset, target.description))
    _emit(args, champion, views.champion_view(champion))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    _given(args.run_id)
    target = _target(args)
    by = queries.caller(target.client("sts"))
    try:
        done = promote(
            target.runs(), target.client("sagemaker"), target.output("DataBucketName"), args.run_id,
            reason=args.reason, by=by,
        )
    except PromotionError as error:
        raise SystemExit(f"error: {error}") from None
    if done.already_champion:
        text = f"{done.run_id} is champion of {done.dataset} already; its model package {done.model_package_arn} is Approved"
    else:
        text = (f"{done.run_id} is now champion of {done.dataset} (was {done.previous_run_id or 'nobody'}); "
                f"model package {done.model_package_arn} Approved; recorded: {done.reason!r} by {by}")
        if done.previous_approval == registry.PENDING:
            text += f"; {done.previous_run_id}'s package back to PendingManualApproval"
        elif done.previous_approval == registry.APPROVED:
            text += (f"; {done.previous_run_id}'s package is still Approved: SageMaker refused putting it back, "
                     "the reconciler's next pass does it")
        elif done.previous_approval:
            text += f"; {done.previous_run_id}'s package: {done.previous_approval}"
    _emit(args, done.as_dict(), plain(text))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """Every file version under incoming/ with its run and whether its outcome was told; exit status 1 when something
    is owed for over the grace, an hour by default (a run, an outcome message, the end of a run past its deadline)."""
    target = _target(args)
    grace, days = audit.stack_defaults(target.parameters)  # the stack's own sweep's, unless given
    grace = grace if args.grace_minutes is None else args.grace_minutes * 60
    days = days if args.days is None else args.days
    rows = audit.audit(target.client("s3"), target.runs(), target.output("DataBucketName"), args.dataset, days,
                       grace_seconds=grace)
    title = (f"Files under incoming/ of the last {days:g} day{'' if days == 1 else 's'} ({target.description}): "
             f"{audit.summary(rows, grace)}")
    _emit(args, rows, audit.table(rows, title))
    return 1 if any(row["problem"] for row in rows) else 0


def cmd_overview(args: argparse.Namespace) -> int:
    """One HTML page of the datasets and runs of the last days: what needs attention, each dataset's champion and
    latest run, the runs."""
    target = _target(args)
    data = overview.collect(target, args.days)
    if args.json:
        print(json.dumps(queries.jsonable(data), indent=2, default=str))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / OVERVIEW_FILE
    path.write_text(overview.render(data), encoding="utf-8")
    runs, owed = len(data["runs"]), len(data["owed"])
    console.print(plain(f"overview of {target.description}: {path} ({runs:,} run{'' if runs == 1 else 's'} in the "
                        f"last {args.days:g} day{'' if args.days == 1 else 's'}; {owed:,} file{'' if owed == 1 else 's'} "
                        "owed an outcome)"), soft_wrap=True)
    if args.open:
        webbrowser.open(path.resolve().as_uri())
    return 0


def cmd_dead_letters(args: argparse.Namespace) -> int:
    """Each dead-letter queue's count and messages, each beside its run now; exit status 1 while any queue still holds
    a message (visible, or being read: the reconciler takes StartTuning's back), as `audit` exits 1 while something is
    owed."""
    target = _target(args)
    states = dead_letters.read_all(target, args.limit, delete_settled=args.delete_settled)
    title = (f"Dead-letter queues ({target.description}); StartTuning's start events are taken back by the "
             "reconciler every pass; an event whose run has ended and told its outcome is settled")
    if args.delete_settled:
        deleted = dead_letters.deleted(states)
        title += f": {deleted} settled message{'' if deleted == 1 else 's'} deleted"
    _emit(args, dead_letters.as_data(states), dead_letters.table(states, title))
    return 1 if dead_letters.left(states) else 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", choices=("auto", "local", "aws"), default="auto",
                        help="auto (default): the local runtime when <workdir>/local.json exists and no --stack is given, else AWS")
    parser.add_argument("--stack", help="the CloudFormation stack on AWS (default: samconfig.toml's stack_name)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


OVERVIEW_FILE = "overview.html"
OVERVIEW_DAYS = 7.0

PREFIX_HELP = (f"the run's id, or its first {queries.PREFIX_MIN_CHARS}+ characters (or its digest's) where one recent "
               "run's id starts so")


def register(sub: Any) -> None:
    """Add the ``runs``, ``drop``, ``champion``, ``promote``, ``audit``, ``overview`` and ``dead-letters`` commands to
    the top-level subparsers."""
    runs = sub.add_parser("runs", help="list, inspect, stop and retry runs (AWS or the local runtime)")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)

    listing = runs_sub.add_parser("list", help="runs, newest first")
    listing.add_argument("--dataset", type=arguments.dataset,
                         help="only this dataset (its path below incoming/), or the datasets of a folder (as `drop "
                              "--dataset` takes it)")
    listing.add_argument("--status", choices=[s.value for s in RunStatus], help="only runs in this status")
    listing.add_argument("--limit", type=arguments.count("runs"), default=20,
                         help="runs shown at most, newest first (default 20; it says when there are more)")
    listing.set_defaults(func=cmd_list)

    show = runs_sub.add_parser("show", help="one run: status, timeline, data, best trial, metrics, artifacts")
    show.add_argument("run_id", help=PREFIX_HELP)
    show.add_argument("--follow", action="store_true", help="a run not ended yet: show it live until it ends")
    show.add_argument("--timeout", type=arguments.span("seconds"), default=3 * 3600,
                      help="seconds to follow it (default 3 hours)")
    show.set_defaults(func=cmd_show)

    trials = runs_sub.add_parser("trials", help="one row per trial (as the SageMaker SDK's tuning analytics)")
    trials.add_argument("run_id", help=PREFIX_HELP)
    trials.set_defaults(func=cmd_trials)

    logs = runs_sub.add_parser("logs", help="the output of the run's jobs (each trial, the evaluation), from CloudWatch "
                               "Logs (the local runtime's too)")
    logs.add_argument("run_id", help=PREFIX_HELP)
    logs.add_argument("--job", action="append",
                      help="only this job (again for more): 'evaluation', a trial by its number (2) or suffix "
                           f"(002-6221c9f6), or a function ({FUNCTION_WORDS}: its invocations that name the run)")
    logs.add_argument("--tail", type=arguments.count("lines", minimum=0), default=40, help="the last N lines of each job (default 40; 0: all)")
    logs.add_argument("--functions", action="store_true",
                      help="also each function invocation that names the run, START to REPORT "
                           "(/aws/lambda/<function>)")
    logs.set_defaults(func=cmd_logs)

    report = runs_sub.add_parser("report", help="download the run's HTML report")
    report.add_argument("run_id", help=PREFIX_HELP)
    report.add_argument("--out", default="out", help="folder to write <run_id>.html into (default: out)")
    report.add_argument("--open", action="store_true", help="open it in the web browser")
    report.set_defaults(func=cmd_report)
    stop = runs_sub.add_parser(
        "stop", help="stop runs that have not ended: their jobs are stopped, they end STOPPED with your reason"
    )
    stop.add_argument("run_ids", nargs="+", metavar="RUN_ID",
                      help="a run not ended yet (`runs list` shows them); several at once")
    stop.add_argument("--reason", required=True, help="why (in the run's record and its STOPPED message)")
    stop.set_defaults(func=cmd_stop)
    retry = runs_sub.add_parser(
        "retry", help="tune the file of runs that ended FAILED, STOPPED or DUPLICATE again: a new run each"
    )
    retry.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="a run that ended without a result; several at once")
    retry.add_argument("--reason", required=True, help="why (recorded on the run retried)")
    retry.add_argument("--follow", action="store_true", help="show the new run live until it ends (one run)")
    retry.add_argument("--timeout", type=arguments.span("seconds"), default=3 * 3600,
                       help="seconds to follow the new run (default 3 hours)")
    retry.set_defaults(func=cmd_retry)
    for parser in (listing, show, trials, logs, report, stop, retry):
        _common(parser)

    drop = sub.add_parser("drop", help="upload a review file to incoming/ (starts a run)")
    drop.add_argument("file", help="a .tsv, .csv, .tsv.gz or .csv.gz review file")
    drop.add_argument("--dataset", type=arguments.dataset,
                      help="dataset name: a path below incoming/ (default: the file name)")
    drop.add_argument("--follow", action="store_true", help="show the run live until it ends")
    drop.add_argument("--timeout", type=arguments.span("seconds"), default=3 * 3600,
                      help="seconds to find and follow the run (default 3 hours)")
    _common(drop)
    drop.set_defaults(func=cmd_drop)

    champion = sub.add_parser("champion", help="each dataset's champion model, or one dataset's with its history")
    champion.add_argument("--dataset", type=arguments.dataset, help="one dataset (its path below incoming/): champion, history, decisions")
    _common(champion)
    champion.set_defaults(func=cmd_champion)

    promote_parser = sub.add_parser(
        "promote", help="make a succeeded run its dataset's champion: approve its model package, move the pointer"
    )
    promote_parser.add_argument("run_id", help="a SUCCEEDED run's whole id")
    promote_parser.add_argument("--reason", required=True, help="why (recorded in the champion's history)")
    _common(promote_parser)
    promote_parser.set_defaults(func=cmd_promote)

    audit_parser = sub.add_parser(
        "audit", help="every file version under incoming/ beside its run and its outcome message; exit 1 when a "
        "run, an outcome message or a run's end is owed for over the stack's grace (an hour unless set)"
    )
    audit_parser.add_argument("--dataset", type=arguments.dataset, help="only this dataset or folder (its path below incoming/)")
    audit_parser.add_argument(
        "--days", type=arguments.span("days", positive=True),
        help=f"versions written within this many days (default: the stack's {audit.WINDOW_PARAMETER}, "
        f"{config.MISSED_DROP_WINDOW_DAYS} unless set: the days the reconciler looks back for versions without a run)")
    audit_parser.add_argument(
        "--grace-minutes", type=arguments.span("minutes"),
        help="how long a version may wait for its run, an ended run for its message sent and a run past its deadline "
        f"for its end before it is a problem (default: the stack's {audit.GRACE_PARAMETER}, "
        f"{config.MISSED_DROP_GRACE_MINUTES} unless set: the reconciler claims a version without a run after as long)")
    _common(audit_parser)
    audit_parser.set_defaults(func=cmd_audit)

    overview_parser = sub.add_parser(
        "overview", help="one HTML page of the last days: what needs attention (files owed an outcome, runs that "
        "failed or were rejected, champions whose package was rejected), each dataset's champion and latest run, "
        "the runs")
    overview_parser.add_argument("--days", type=arguments.span("days", positive=True), default=OVERVIEW_DAYS,
                                 help=f"runs and files of this many days (default {OVERVIEW_DAYS:g})")
    overview_parser.add_argument("--out", default="out", help=f"folder to write {OVERVIEW_FILE} into (default: out)")
    overview_parser.add_argument("--open", action="store_true", help="open the page in the default browser")
    _common(overview_parser)
    overview_parser.set_defaults(func=cmd_overview)

    letters = sub.add_parser(
        "dead-letters", help="the events each function's dead-letter queue holds, with their errors and their runs "
        "now (left in place, unless --delete-settled)"
    )
    letters.add_argument("--limit", type=arguments.count("messages"), default=20, help="messages shown per queue (default 20)")
    letters.add_argument(
        "--delete-settled", action="store_true",
        help="delete the messages shown whose run has ended and told its outcome (nothing is left for them to do); "
        "every other message stays")
    _common(letters)
    letters.set_defaults(func=cmd_dead_letters)
