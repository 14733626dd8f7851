"""Where the commands look: a deployed stack on AWS or the local runtime, behind one small interface.

- AWS: boto3's default credentials and region; the stack's outputs (RunsTableName, DataBucketName...) and
  parameters come from CloudFormation ``DescribeStacks`` of ``--stack`` (default: samconfig.toml's ``stack_name``).
- local: ``<workdir>/local.json``, written by ``reviewtune local up`` / ``reviewtune run``: its endpoints, fake
  credentials, region and the stack's outputs and parameters.

``auto`` (the default) means local when ``<workdir>/local.json`` exists and no ``--stack`` was given, else AWS.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from reviewtune.core.runs import RunsRepository
from reviewtune.local import ENDPOINT_KEYS
from reviewtune.local.processes import lock_held, process_alive
from reviewtune.project import SAMCONFIG, project_folder

STATE_FILE = "local.json"
DEFAULT_STACK = "reviewtune"


class TargetError(RuntimeError):
    """The stack or the local runtime cannot be found."""


@dataclass
class Target:
    """A place to read runs from: a boto3 session, per-service endpoints (local only), the stack's outputs and its
    parameters (as deployed: the values a command's defaults follow)."""

    description: str
    session: Any
    outputs: dict[str, str]
    endpoints: dict[str, str] = field(default_factory=dict)
    local_workdir: Path | None = None
    parameters: dict[str, str] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.endpoints.get(ENDPOINT_KEYS.get(service, service)))

    def output(self, name: str) -> str:
        try:
            return self.outputs[name]
        except KeyError:
            raise TargetError(f"{self.description}: the stack has no output {name!r}") from None

    def runs(self) -> RunsRepository:
        resource = self.session.resource("dynamodb", endpoint_url=self.endpoints.get("dynamodb"))
        return RunsRepository(resource.Table(self.output("RunsTableName")))


def default_stack_name(samconfig: Path | None = None) -> str:
    """samconfig.toml's stack_name (deploy, then global parameters; the project's samconfig.toml unless given), else
    ``reviewtune``."""
    samconfig = samconfig or project_folder() / SAMCONFIG
    try:
        config = tomllib.loads(samconfig.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return DEFAULT_STACK
    default = config.get("default", {})
    for section in ("deploy", "global"):
        name = default.get(section, {}).get("parameters", {}).get("stack_name")
        if name:
            return str(name)
    return DEFAULT_STACK


def local_target(workdir: Path) -> Target:
    path = Path(workdir) / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        raise TargetError(f"no local runtime: {path} does not exist (start one with `reviewtune local up`)") from None
    except ValueError as error:
        raise TargetError(f"{path} is not valid JSON ({error})") from error
    except OSError as error:  # the work folder is a file, the state file a folder...
        raise TargetError(f"cannot read {path}: {error.strerror or error} (--workdir names the local runtime's "
                          "folder)") from None
    try:
        pid = int(state.get("pid", 0))
    except (AttributeError, TypeError, ValueError):
        raise TargetError(f"{path} is not the local runtime's state (no process id in it): `reviewtune local down` "
                          "removes it") from None
    if not process_alive(pid) or not lock_held(Path(workdir)):
        raise TargetError(
            f"the local runtime recorded in {path} (pid {state.get('pid')}) is not running: start it with "
            "`reviewtune local up`, or remove the stale file with `reviewtune local down` (then --target auto reads "
            "the AWS stack), or pass --target aws / --stack NAME"
        )
    environment = state.get("environment", {})
    session = boto3.session.Session(
        aws_access_key_id=environment.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=environment.get("AWS_SECRET_ACCESS_KEY", "testing"),
        aws_session_token=environment.get("AWS_SESSION_TOKEN"),
        region_name=state.get("region", "us-east-1"),
    )
    endpoints = dict(state.get("endpoints", {}))
    moto = endpoints.get("s3")
    endpoints = {**{s: moto for s in ("s3", "dynamodb", "cloudformation", "sns", "sqs", "sts") if moto}, **endpoints}
    return Target(f"local runtime ({path})", session, dict(state.get("outputs", {})), endpoints, Path(workdir),
                  dict(state.get("parameters", {})))


def aws_target(stack: str, session: Any = None) -> Target:
    session = session or boto3.session.Session()
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
    except (ClientError, BotoCoreError) as error:  # BotoCoreError: no credentials or Region, no connection
        raise TargetError(f"cannot read the outputs of stack {stack!r}: {error}") from error
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stacks[0].get("Parameters", [])}
    return Target(f"stack {stack} ({session.region_name})", session, outputs, parameters=parameters)


def resolve(kind: str, workdir: Path, stack: str | None) -> Target:
    """``kind``: ``auto``, ``local`` or ``aws``."""
    if kind == "local" or (kind == "auto" and stack is None and (Path(workdir) / STATE_FILE).exists()):
        return local_target(workdir)
    try:
        return aws_target(stack or default_stack_name())
    except TargetError as error:
        if kind != "auto" or stack is not None:
            raise
        # the local runtime first: a person without AWS set up reads what concerns them before AWS's words
        raise TargetError(f"no local runtime is running here ({Path(workdir) / STATE_FILE}): `reviewtune local up` "
                          "starts one that these commands read (`make run`'s own runtime ends with its run; --workdir "
                          f"or REVIEWTUNE_WORKDIR names another one's folder); and {error}") from error
