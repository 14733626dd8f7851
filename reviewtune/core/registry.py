"""SageMaker Model Registry for reviewtune: one model package group per dataset, one version per succeeded run.

The group name is derived from the stack's bucket and the dataset (``package_group_name``), so every run of a
dataset lands in the same group without a lookup table; a dataset whose champion is registered in a group named
otherwise (by the dataset alone, before the bucket was part of the name) goes on in its champion's group
(``registration.group_for``). Each registered version carries the run id in its
CustomerMetadataProperties and the run's evaluation.json as its ModelQuality statistics; registering the same
run twice returns the same version (the run id is the request's ClientToken). Approval status is
``PendingManualApproval`` until the champion logic (``reviewtune.core.champion``) or a person decides.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from reviewtune.core import aws_errors, names

GROUP_NAME_MAX = 63
GROUP_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
GROUP_HASH_LENGTH = 10
DEFAULT_GROUP_PREFIX = "reviewtune"
CLIENT_TOKEN_MAX = 36

APPROVED = "Approved"
REJECTED = "Rejected"
PENDING = "PendingManualApproval"
# the start of the run's registry.error when SageMaker refused a change of approval (registration.set_approval)
APPROVAL_FAILED = "approval failed"
# A change of approval SageMaker refuses for good (access, validation: not a throttle or a server error) is tried again
# by every reconciler pass for this long, then recorded on its run as not done (``APPROVAL_FAILED``) and left.
GIVE_UP_SECONDS = 7 * 86400
GIVE_UP_DAYS = GIVE_UP_SECONDS // 86400
APPROVAL_STATUSES = (APPROVED, REJECTED, PENDING)
# How the descriptions reviewtune gives an approval begin: a champion's (registration, promotion, former_champions,
# withdrawal), one put back to pending (former_champions.no_longer_champion, registration.set_approval,
# withdrawal.reason).
CHAMPION_DESCRIPTION_PREFIX = "champion: "
PROMOTED_DESCRIPTION_PREFIX = "promoted manually by "
DECISION_CHANGED = "the champion decision changed"
OWN_DESCRIPTIONS = re.compile("|".join([
    re.escape(CHAMPION_DESCRIPTION_PREFIX) + "(first champion|new champion|already champion|approved again|promoted by hand)",
    re.escape(PROMOTED_DESCRIPTION_PREFIX) + r"\S+: ", "no longer champion of ",
    re.escape(DECISION_CHANGED) + "$", r"run \S+ (succeeded without becoming champion$|ended [A-Z]+: )",
]))

RUN_ID_PROPERTY = "run_id"
DATASET_PROPERTY = "dataset"
JSON = "application/json"
CUSTOMER_METADATA_MAX = 50
CUSTOMER_METADATA_VALUE_MAX = 256


def package_group_name(dataset: str, prefix: str = DEFAULT_GROUP_PREFIX, scope: str = "") -> str:
    """A valid, stable model package group name for ``dataset``: ``<prefix>-<readable part>-<hash>``.

    The readable part is the dataset folded to ASCII letters, digits and single dashes (accents dropped,
    every other run of characters becomes one dash), cut so the whole name fits 63 characters. The hash
    (10 hex digits of the SHA-256 of ``scope``, a line break and the dataset; of the dataset alone without a scope)
    keeps datasets apart that fold to the same text, such as ``Team A/reviews.tsv`` and ``team-a/reviews.tsv``
    (group names are case-insensitive), and the same dataset of two scopes: the stack's data bucket
    (``registration.group_for``), so that two stacks in one account and Region, or a stack deployed again after
    its deletion, never share a group.
    """
    if not dataset:
        raise ValueError("the dataset name is empty")
    if not re.fullmatch(r"[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*", prefix or ""):
        raise ValueError(f"prefix {prefix!r} must be letters and digits joined by single dashes")
    hashed = f"{scope}\n{dataset}" if scope else dataset
    digest = hashlib.sha256(hashed.encode("utf-8")).hexdigest()[:GROUP_HASH_LENGTH]
    ascii_text = unicodedata.normalize("NFKD", dataset).encode("ascii", "ignore").decode("ascii")
    readable = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    room = GROUP_NAME_MAX - len(prefix) - len(digest) - 2
    readable = readable[: max(room, 0)].strip("-")
    name = "-".join(part for part in (prefix, readable, digest) if part)
    if len(name) > GROUP_NAME_MAX:
        raise ValueError(f"prefix {prefix!r} is too long for a model package group name")
    assert GROUP_NAME_PATTERN.match(name), name
    return name


def _is_already_exists(error: ClientError) -> bool:
    details = error.response.get("Error", {})
    return details.get("Code") in ("ValidationException", "ResourceInUse") and "already exists" in (
        details.get("Message") or ""
    )


def ensure_group(sagemaker: Any, name: str, description: str | None = None) -> str:
    """Create the model package group unless it exists; returns its ARN. Safe to call on every run."""
    request: dict[str, Any] = {"ModelPackageGroupName": name}
    if description:
        request["ModelPackageGroupDescription"] = names.sagemaker_description(description)
    try:
        return sagemaker.create_model_package_group(**request)["ModelPackageGroupArn"]
    except ClientError as error:
        if not _is_already_exists(error):
            raise
    return sagemaker.describe_model_package_group(ModelPackageGroupName=name)["ModelPackageGroupArn"]


def client_token(run_id: str) -> str:
    """The ClientToken of a run's registration (1-36 of ``[a-zA-Z0-9-]``), so a retry gets the same version."""
    token = re.sub(r"[^a-zA-Z0-9-]", "-", run_id).strip("-")
    if not token or len(token) > CLIENT_TOKEN_MAX:
        token = hashlib.sha256(run_id.encode("utf-8")).hexdigest()[:CLIENT_TOKEN_MAX]
    return token


def _metadata(run_id: str, dataset: str | None, extra: Mapping[str, Any] | None) -> dict[str, str]:
    properties = {RUN_ID_PROPERTY: run_id}
    if dataset:
        properties[DATASET_PROPERTY] = names.sagemaker_text(dataset, CUSTOMER_METADATA_VALUE_MAX)
    for key, value in (extra or {}).items():
        if value is None:
            continue
        text = (
            value
            if isinstance(value, str)
            else format(value, "g")
            if isinstance(value, float)
            else str(value)
        )
        if len(text) > CUSTOMER_METADATA_VALUE_MAX:
            raise ValueError(f"metadata {key!r} is longer than {CUSTOMER_METADATA_VALUE_MAX} characters")
        properties[key] = text
    if len(properties) > CUSTOMER_METADATA_MAX:
        raise ValueError(f"at most {CUSTOMER_METADATA_MAX} metadata properties, got {len(properties)}")
    return properties


def model_package_request(
    *,
    group_name: str,
    run_id: str,
    image_uri: str,
    model_data_url: str,
    evaluation_uri: str,
    approval_status: str = PENDING,
    dataset: str | None = None,
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The CreateModelPackage request of one run's best model (pure; ``register_model`` sends it)."""
    if approval_status not in APPROVAL_STATUSES:
        raise ValueError(f"approval status {approval_status!r} is not one of {APPROVAL_STATUSES}")
    for what, uri in (("model artifact", model_data_url), ("evaluation", evaluation_uri)):
        if not uri.startswith("s3://"):
            raise ValueError(f"the {what} must be an s3:// URI, got {uri!r}")
    return {
        "ModelPackageGroupName": group_name,
        "ModelPackageDescription": names.sagemaker_description(description or f"reviewtune run {run_id}"),
        "InferenceSpecification": {
            "Containers": [{"Image": image_uri, "ModelDataUrl": model_data_url}],
            "SupportedContentTypes": [JSON],
            "SupportedResponseMIMETypes": [JSON],
        },
        "ModelMetrics": {"ModelQuality": {"Statistics": {"ContentType": JSON, "S3Uri": evaluation_uri}}},
        "ModelApprovalStatus": approval_status,
        "CustomerMetadataProperties": _metadata(run_id, dataset, metadata),
        "ClientToken": client_token(run_id),
    }


def register_model(sagemaker: Any, **request_args: Any) -> str:
    """Register one run's best model as a new version of its group; returns the model package ARN.

    Takes ``model_package_request``'s arguments. The group must exist (``ensure_group``).
    """
    return sagemaker.create_model_package(**model_package_request(**request_args))["ModelPackageArn"]


def set_approval(sagemaker: Any, model_package_arn: str, status: str, description: str | None = None) -> None:
    """Approve or reject a version (or put it back to pending), with the reason people will read."""
    if status not in APPROVAL_STATUSES:
        raise ValueError(f"approval status {status!r} is not one of {APPROVAL_STATUSES}")
    request: dict[str, Any] = {"ModelPackageArn": model_package_arn, "ModelApprovalStatus": status}
    if description:  # it may quote a dataset's name or a person's reason: line breaks and all (names.py)
        request["ApprovalDescription"] = names.sagemaker_description(description)
    sagemaker.update_model_package(**request)


def back_to_pending(sagemaker: Any, model_package_arn: str, description: str) -> str:
    """Put a version back to PendingManualApproval, unless a person rejected it (reviewtune never does): that stays.
    Returns the approval it has now."""
    if approval_status(sagemaker, model_package_arn) == REJECTED:
        return REJECTED
    set_approval(sagemaker, model_package_arn, PENDING, description)
    return PENDING


def approve_unless_rejected(sagemaker: Any, model_package_arn: str, description: str) -> str:
    """Approve a version, unless a person rejected it (reviewtune never does): that stays. Returns the approval it
    has now."""
    if approval_status(sagemaker, model_package_arn) == REJECTED:
        return REJECTED
    set_approval(sagemaker, model_package_arn, APPROVED, description)
    return APPROVED


def approval_status(sagemaker: Any, model_package_arn: str) -> str:
    """A version's approval status now (DescribeModelPackage)."""
    return approval(sagemaker, model_package_arn)[0]


def written_by_reviewtune(description: str | None) -> bool:
    """Whether an ApprovalDescription is one reviewtune writes when it changes an approval (``OWN_DESCRIPTIONS``): a
    package rejected without a description of its own keeps the one before."""
    return bool(description) and OWN_DESCRIPTIONS.match(description) is not None


def approval(sagemaker: Any, model_package_arn: str) -> tuple[str, str | None]:
    """A version's approval status now and the reason recorded with it (DescribeModelPackage's
    ApprovalDescription; None when there is none)."""
    package = sagemaker.describe_model_package(ModelPackageName=model_package_arn)
    return package["ModelApprovalStatus"], package.get("ApprovalDescription") or None


def versions(sagemaker: Any, group_name: str, status: str | None = None) -> list[dict[str, Any]]:
    """Every version of a group, oldest first (ListModelPackages summaries), optionally of one status."""
    request: dict[str, Any] = {
        "ModelPackageGroupName": group_name,
        "ModelPackageType": "Versioned",  # the API's default is Unversioned
        "SortBy": "CreationTime",
        "SortOrder": "Ascending",
        "MaxResults": 100,
    }
    if status:
        request["ModelApprovalStatus"] = status
    out: list[dict[str, Any]] = []
    while True:
        page = sagemaker.list_model_packages(**request)
        out += page["ModelPackageSummaryList"]
        if not page.get("NextToken"):
            return out
        request["NextToken"] = page["NextToken"]


def package_gone(exc: ClientError) -> bool:
    """Whether SageMaker refused a call on a model package because it no longer exists (deleted): a
    ValidationException "ModelPackage <arn> does not exist." (or a ResourceNotFound)."""
    code, message = aws_errors.code(exc), aws_errors.text(exc).lower()
    return code == "ResourceNotFound" or (
        code == "ValidationException" and ("does not exist" in message or "not found" in message)
    )


def refused_for_good(exc: ClientError, since: datetime, now: datetime) -> bool:
    """Whether a change of approval SageMaker refused with ``exc`` is given up: a refusal that is not a passing one,
    tried since ``since`` for ``GIVE_UP_SECONDS``."""
    return not aws_errors.transient(exc) and now - since >= timedelta(seconds=GIVE_UP_SECONDS)


def without_approval_error(entry: dict[str, Any]) -> dict[str, Any]:
    """The run's ``registry`` field less an ``error`` that was a refused change of approval (``APPROVAL_FAILED``)."""
    return {k: v for k, v in entry.items() if k != "error" or not str(v).startswith(APPROVAL_FAILED)}
