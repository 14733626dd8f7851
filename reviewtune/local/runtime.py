"""The whole stack on one machine: moto, the local SageMaker service, the stack from template.yaml and the router.

``LocalRuntime`` starts them in that order and stops them in reverse; ``<workdir>/local.json`` tells other
processes (``reviewtune run``, ``reviewtune local down``) where the endpoints are and which process holds them.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reviewtune.local import ENDPOINT_KEYS, log_events
from reviewtune.local.moto_server import MotoServer
from reviewtune.local.processes import hold_lock, lock_held, lock_holder, process_alive
from reviewtune.local.router import Invocation, Router
from reviewtune.local.scheduler import LocalScheduler
from reviewtune.local.stack import DEFAULT_STACK_NAME, LocalStack, deploy_stack
from reviewtune.project import STATE_FOLDER, TEMPLATE, project_folder

logger = logging.getLogger(__name__)

STATE_FILE = "local.json"
# How often the local runtime fires the template's schedules (the reconciler); the cloud uses the template's rate.
LOCAL_SCHEDULE_PERIOD_S = 30.0
HOST = "127.0.0.1"
# The AWS services the moto server answers for, by the suffix of boto3's AWS_ENDPOINT_URL_<SERVICE> variable.
MOTO_SERVICES = (
    "s3",
    "dynamodb",
    "sns",
    "sqs",
    "eventbridge",
    "sts",
    "iam",
    "cloudformation",
    "cloudwatch_logs",
)
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


class LocalRuntimeError(RuntimeError):
    """The local runtime cannot be started or stopped."""


class NotRunningError(LocalRuntimeError):
    """No local runtime is running for this working directory."""


def default_template() -> Path:
    """The stack the local runtime deploys: the project's template.yaml (``project.project_folder``)."""
    return project_folder() / TEMPLATE


def check_template(template: Path | None = None) -> None:
    """Refuse to start without the stack's template (a command run outside the project's folder)."""
    template = template or default_template()
    if not template.is_file():
        raise LocalRuntimeError(f"template {template} does not exist (run reviewtune from the project's folder, "
                                "where template.yaml is, or from a folder inside it)")


def endpoint_variable(service: str) -> str:
    """boto3's endpoint variable of ``service`` (``AWS_ENDPOINT_URL_S3``...)."""
    return f"AWS_ENDPOINT_URL_{ENDPOINT_KEYS.get(service, service).upper()}"


def _recorded_pid(workdir: Path) -> int | None:
    try:
        pid = read_state(workdir).get("pid")
    except LocalRuntimeError:
        return None
    return pid if isinstance(pid, int) else None


def read_state(workdir: Path = Path(STATE_FOLDER)) -> dict[str, Any]:
    """The content of ``<workdir>/local.json`` written by a running ``LocalRuntime``."""
    path = Path(workdir) / STATE_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise NotRunningError(
            f"no local runtime is running: {path} does not exist (start one with `reviewtune local up`)"
        ) from None
    except ValueError as error:
        raise LocalRuntimeError(
            f"{path} is not valid JSON ({error}); remove it if no local runtime is running"
        ) from error


class LocalRuntime:
    """moto + local SageMaker + the stack of ``template`` + the event router, on 127.0.0.1.

    Use as a context manager or call ``start()`` / ``stop()``. ``parameters`` override the template's parameter
    defaults (the local budget: ModelName, MaxJobs, Epochs...). ``start()`` points this process's boto3 clients at
    the local endpoints (``AWS_ENDPOINT_URL_<SERVICE>``, fake credentials, region); ``stop()`` restores them.
    """

    def __init__(
        self,
        *,
        workdir: Path = Path(STATE_FOLDER),
        template: Path | None = None,
        parameters: Mapping[str, object] | None = None,
        region: str = "us-east-1",
        total_cpus: int | None = None,
        stack_name: str = DEFAULT_STACK_NAME,
        on_invocation: Callable[[Invocation], None] | None = None,
        retry_delay_s: float = 1.0,
        sagemaker_factory: Callable[..., Any] | None = None,
        schedule_period_s: float | None = LOCAL_SCHEDULE_PERIOD_S,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.template = Path(template) if template is not None else default_template()
        self.parameters = dict(parameters or {})
        self.region = region
        self.total_cpus = total_cpus
        self.stack_name = stack_name
        self.on_invocation = on_invocation
        self.retry_delay_s = retry_delay_s
        self._sagemaker_factory = sagemaker_factory
        self.schedule_period_s = schedule_period_s
        self.stack: LocalStack | None = None
        self.router: Router | None = None
        self.scheduler: LocalScheduler | None = None
        self._moto: MotoServer | None = None
        self._sagemaker: Any = None
        self._endpoints: dict[str, str] = {}
        self._saved_environment: dict[str, str | None] = {}
        self._state_lock = threading.Lock()
        self._lock: Any = None  # the folder's runtime lock, held from start to stop (processes.hold_lock)
        self._started = False
        self._stopping = False

    # -- properties -----------------------------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.workdir / STATE_FILE

    @property
    def endpoints(self) -> dict[str, str]:
        """Endpoint URL by service (``s3``, ``dynamodb``, ``sns``, ``sqs``, ``eventbridge``, ``sagemaker``...)."""
        return dict(self._endpoints)

    @property
    def outputs(self) -> dict[str, str]:
        """The stack outputs (DataBucketName, RunsTableName, ...)."""
        if self.stack is None:
            raise LocalRuntimeError("the local runtime is not started")
        return dict(self.stack.outputs)

    def environment(self) -> dict[str, str]:
        """The variables that point boto3 at this runtime: endpoints, fake credentials and region."""
        variables = {endpoint_variable(service): url for service, url in self._endpoints.items()}
        variables.update(FAKE_CREDENTIALS)
        variables["AWS_DEFAULT_REGION"] = self.region
        variables["AWS_REGION"] = self.region
        return variables

    def export_lines(self) -> list[str]:
        """``export NAME=value`` lines for a shell (``eval "$(...)"``) to use this runtime with the AWS CLI / SDKs."""
        return [f"export {name}={value}" for name, value in self.environment().items()]

    def _session(self) -> Any:
        import boto3

        return boto3.session.Session(
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
            region_name=self.region,
        )

    def _endpoint(self, service: str) -> str:
        endpoint = self._endpoints.get(ENDPOINT_KEYS.get(service, service)) or self._endpoints.get("s3")
        if endpoint is None:
            raise LocalRuntimeError("the local runtime is not started")
        return endpoint

    def client(self, service: str, table_name: str | None = None, **kwargs: Any) -> Any:
        """A boto3 client of ``service`` on this runtime's endpoint; ``client("dynamodb_table", name)`` is the
        same as ``table(name)``."""
        if service == "dynamodb_table":
            if table_name is None:
                raise TypeError('client("dynamodb_table", ...) needs the table name')
            return self.table(table_name)
        return self._session().client(service, endpoint_url=self._endpoint(service), **kwargs)

    def _stack_client(self, service: str) -> Any:
        """Clients for creating the stack: moto makes it within one CreateStack request, which may take minutes on
        a busy machine, so CloudFormation gets a long read timeout and no retry (a retry would find it made)."""
        if service != "cloudformation":
            return self.client(service)
        from botocore.config import Config

        return self.client(service, config=Config(read_timeout=900, retries={"total_max_attempts": 1}))

    def resource(self, service: str, **kwargs: Any) -> Any:
        """A boto3 resource of ``service`` on this runtime's endpoint."""
        return self._session().resource(service, endpoint_url=self._endpoint(service), **kwargs)

    def table(self, name: str) -> Any:
        """The boto3 DynamoDB ``Table`` resource ``name``."""
        return self.resource("dynamodb").Table(name)

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> LocalRuntime:
        if self._started:
            raise LocalRuntimeError("this local runtime was already started")
        check_template(self.template)
        self._lock = hold_lock(self.workdir)
        if self._lock is None:
            pid = _recorded_pid(self.workdir)
            raise LocalRuntimeError(
                f"a local runtime is already running for {self.workdir}"
                + (f" (pid {pid})" if pid else " (starting)") + "; stop it with `reviewtune local down`"
            )
        self._check_not_running()
        self._started = True
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _check_not_running(self) -> None:
        """With the folder's lock held, a local.json there is a stale one, left by a process that died: removed, so
        that `local down` meanwhile waits for this start instead of reading it."""
        try:
            state = read_state(self.workdir)
        except NotRunningError:
            return
        except LocalRuntimeError:
            logger.warning("replacing unreadable %s", self.state_file)
        else:
            logger.info("replacing stale %s (pid %s holds no runtime)", self.state_file, state.get("pid"))
        self.state_file.unlink(missing_ok=True)

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._moto = MotoServer(HOST, 0)
        moto_url = self._moto.start()
        self._endpoints = dict.fromkeys(MOTO_SERVICES, moto_url)
        self._apply_environment()
        account_id = self.client("sts").get_caller_identity()["Account"]

        factory = self._sagemaker_factory
        if factory is None:
            from reviewtune.local.sagemaker import LocalSageMaker

            factory = LocalSageMaker
        self._sagemaker = factory(
            workdir=self.workdir / "sagemaker",
            region=self.region,
            account_id=account_id,
            s3_client=self.client("s3"),
            events_client=self.client("events"),
            total_cpus=self.total_cpus,
        )
        self._endpoints["sagemaker"] = self._sagemaker.start(HOST, 0)
        self._apply_environment()

        self.stack = deploy_stack(
            self.template,
            clients=self._stack_client,
            parameters=self.parameters,
            region=self.region,
            stack_name=self.stack_name,
        )
        self.router = Router(
            self.stack.functions,
            sqs_client=self.client("sqs"),
            environment=self.environment(),
            log_dir=self.workdir / "logs",
            on_invocation=self.on_invocation,
            logs_client=self.client("logs", config=log_events.CLIENT_CONFIG),
            retry_delay_s=self.retry_delay_s,
        )
        self.router.start()
        self.scheduler = LocalScheduler(
            self.stack.functions, sqs_client=self.client("sqs"), period_s=self.schedule_period_s
        ).start()
        self._write_state()
        logger.info("local runtime up: %s", ", ".join(f"{k}={v}" for k, v in sorted(self._endpoints.items())))

    def _apply_environment(self) -> None:
        for name, value in self.environment().items():
            if name not in self._saved_environment:
                self._saved_environment[name] = os.environ.get(name)
            os.environ[name] = value

    def _restore_environment(self) -> None:
        saved, self._saved_environment = self._saved_environment, {}
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def _write_state(self) -> None:
        assert self.stack is not None
        state = {
            "endpoints": self.endpoints,
            "outputs": self.stack.outputs,
            "parameters": self.stack.parameters,
            "environment": self.environment(),
            "functions": [spec.logical_id for spec in self.stack.functions],
            "region": self.region,
            "stack_name": self.stack.stack_name,
            "pid": os.getpid(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        temporary = self.state_file.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(state, indent=2) + "\n")
        temporary.replace(self.state_file)

    def stop(self) -> None:
        """Stop the router, the SageMaker service (its running jobs end), moto; restore the environment and remove
        local.json. Safe to call twice, from a signal handler, or after a failed start."""
        if not self._state_lock.acquire(blocking=False):
            return  # another call is stopping it (a signal handler must never wait here)
        try:
            if self._stopping or not self._started:
                return
            self._stopping = True
        finally:
            self._state_lock.release()
        scheduler, self.scheduler = self.scheduler, None
        router, self.router = self.router, None
        sagemaker, self._sagemaker = self._sagemaker, None
        moto, self._moto = self._moto, None
        steps: list[tuple[str, Callable[[], object] | None]] = [
            ("scheduler", scheduler.stop if scheduler else None),
            ("router", router.stop if router else None),
            ("SageMaker service", sagemaker.stop if sagemaker else None),
            ("moto server", moto.stop if moto else None),
            ("state file", self._remove_state),
            ("environment", self._restore_environment),
            ("folder lock", self._release_lock),
        ]
        for name, step in steps:
            if step is None:
                continue
            started = time.monotonic()
            try:
                step()
                logger.debug("stopped the %s in %.2f s", name, time.monotonic() - started)
            except Exception:  # noqa: BLE001 - stop everything else even if one part fails
                logger.exception("stopping the %s failed", name)
        self._endpoints = {}

    def _release_lock(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()

    def _remove_state(self) -> None:
        try:
            state = json.loads(self.state_file.read_text())
        except (FileNotFoundError, ValueError):
            return
        if state.get("pid") == os.getpid():
            self.state_file.unlink(missing_ok=True)

    def __enter__(self) -> LocalRuntime:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _print_to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _state_once_started(workdir: Path, deadline: float) -> dict[str, Any] | None:
    """The state of the runtime starting in ``workdir`` (its lock held, no local.json of its own yet) once it is
    written; None when the start ended without it (failed, or interrupted). A local.json the lock's holder did not
    write (a killed runtime's, which the start removes) is not its."""
    while lock_held(workdir):
        try:
            state = read_state(workdir)
        except NotRunningError:
            state = None
        holder = lock_holder(workdir)
        if state is not None and (holder is None or state.get("pid") == holder):
            return state
        if time.monotonic() > deadline:
            raise LocalRuntimeError(f"a local runtime is starting in {workdir} (its lock is held) and did not "
                                    "serve in time to be stopped; try again")
        time.sleep(0.2)
    return None


def stop_running(
    workdir: Path = Path(STATE_FOLDER),
    *,
    timeout: float = 60.0,
    report: Callable[[str], None] = _print_to_stderr,
) -> int | None:
    """Stop the local runtime recorded in ``<workdir>/local.json`` (SIGTERM) and wait until its process ended.

    Returns the pid of the stopped process, or None (after ``report``-ing why) when nothing is running; a stale
    local.json is removed. Raises ``LocalRuntimeError`` when the process outlives ``timeout``."""
    state_file = Path(workdir) / STATE_FILE
    deadline = time.monotonic() + timeout
    try:
        state = read_state(workdir)
    except NotRunningError as error:
        if not lock_held(workdir):
            report(str(error))
            return None
        state = None
    holder = lock_holder(workdir)
    if state is None or (holder is not None and state.get("pid") != holder):
        # a runtime starting (over a killed one's local.json, maybe): it writes its own once it serves
        state = _state_once_started(workdir, deadline)
        if state is None:
            report(f"no local runtime is running: the one starting in {workdir} ended before it served")
            return None
    pid = state.get("pid")
    if not isinstance(pid, int) or not process_alive(pid) or not lock_held(workdir):
        state_file.unlink(missing_ok=True)
        report(f"no local runtime is running: process {pid} of {state_file} is gone or is no runtime (removed the "
               "stale file)")
        return None
    if pid == os.getpid():
        raise LocalRuntimeError(
            f"{state_file} names this very process ({pid}); call LocalRuntime.stop() instead"
        )
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while process_alive(pid):
        if time.monotonic() > deadline:
            raise LocalRuntimeError(
                f"the local runtime (pid {pid}) did not stop within {timeout:.0f} s; `kill -9 {pid}`"
            )
        time.sleep(0.1)
    state_file.unlink(missing_ok=True)
    report(f"stopped the local runtime (pid {pid})")
    return pid
