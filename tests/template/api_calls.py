"""pytest plugin: record every AWS API call a Lambda handler makes while it runs (``-p tests.template.api_calls``).

Handlers loaded with ``tests.support.aws.load_handler`` are wrapped so that the calls made inside ``handler(...)``
(and only those: not the tests' own set-up or checks) are written, with the parameters that name a resource, to the
JSON file named by ``REVIEWTUNE_API_CALLS`` when the session ends.
"""

from __future__ import annotations

import contextvars
import functools
import json
import os

import botocore.client

import tests.support.aws as support

RESOURCE_PARAMETERS = ("Bucket", "Key", "TableName", "IndexName", "TopicArn")
_current = contextvars.ContextVar("handler", default=None)
_calls: list[dict] = []


def _recording_loader(load_handler):
    @functools.wraps(load_handler)
    def load(name: str):
        module = load_handler(name)
        handler = module.handler

        @functools.wraps(handler)
        def recorded(event, context):
            token = _current.set(name)
            try:
                return handler(event, context)
            finally:
                _current.reset(token)

        module.handler = recorded
        return module

    return load


def _copy_source(api_params: dict) -> dict:
    """CopyObject's source: its key, whether a version is named, and whether the tags are copied along."""
    source = api_params.get("CopySource")
    if source is None:
        return {}
    if isinstance(source, str):
        path, _, query = source.lstrip("/").partition("?")
        key, version = path.split("/", 1)[1], "versionId=" in query
    else:
        key, version = source["Key"], bool(source.get("VersionId"))
    return {
        "SourceKey": key,
        "source_version": version,
        "copies_tags": api_params.get("TaggingDirective", "COPY") == "COPY",
    }


def pytest_configure(config):
    support.load_handler = _recording_loader(support.load_handler)
    make_api_call = botocore.client.BaseClient._make_api_call

    def _make_api_call(self, operation_name, api_params):
        folder = _current.get()
        if folder is not None:
            _calls.append(
                {
                    "function": folder,
                    "service": self.meta.service_model.signing_name,
                    "operation": operation_name,
                    "tags": bool(api_params.get("Tags") or api_params.get("Tagging")),
                    "version": bool(api_params.get("VersionId")),
                    **{k: api_params[k] for k in RESOURCE_PARAMETERS if isinstance(api_params.get(k), str)},
                    **_copy_source(api_params),
                }
            )
        return make_api_call(self, operation_name, api_params)

    botocore.client.BaseClient._make_api_call = _make_api_call


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("REVIEWTUNE_API_CALLS")
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump({"exitstatus": int(exitstatus), "calls": _calls}, handle, indent=1)
