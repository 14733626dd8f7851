"""Local runtime: moto server, the stack from template.yaml, the event router and the local SageMaker service.

Importing this package is cheap: the names below are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# boto3 service names whose endpoint (AWS_ENDPOINT_URL_<KEY>, and local.json's "endpoints") has another name.
ENDPOINT_KEYS = {"events": "eventbridge", "logs": "cloudwatch_logs"}

if TYPE_CHECKING:
    from reviewtune.local.moto_server import MotoServer, start_moto_server
    from reviewtune.local.router import Invocation, Outcome, Router
    from reviewtune.local.runtime import (
        LocalRuntime,
        LocalRuntimeError,
        NotRunningError,
        read_state,
        stop_running,
    )
    from reviewtune.local.stack import FunctionSpec, LocalStack, StackError, deploy_stack

_EXPORTS = {
    "MotoServer": "moto_server",
    "start_moto_server": "moto_server",
    "Invocation": "router",
    "Outcome": "router",
    "Router": "router",
    "LocalRuntime": "runtime",
    "LocalRuntimeError": "runtime",
    "NotRunningError": "runtime",
    "read_state": "runtime",
    "stop_running": "runtime",
    "FunctionSpec": "stack",
    "LocalStack": "stack",
    "StackError": "stack",
    "deploy_stack": "stack",
}

__all__ = [
    "deploy_stack",
    "FunctionSpec",
    "Invocation",
    "LocalRuntime",
    "LocalRuntimeError",
    "LocalStack",
    "MotoServer",
    "NotRunningError",
    "Outcome",
    "read_state",
    "Router",
    "StackError",
    "start_moto_server",
    "stop_running",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
