"""The SageMaker Model Registry: model package groups and the model packages (versions) inside them.

A versioned model package is created with ``ModelPackageGroupName``: it gets the next ``ModelPackageVersion``
of its group (1, 2, ...) and the ARN ``arn:aws:sagemaker:<region>:<account>:model-package/<group>/<version>``;
its approval status is ``PendingManualApproval`` unless the request says otherwise. A request repeated
with the same ``ClientToken`` returns the package the first one created. An unversioned package is
created with ``ModelPackageName`` and has no approval status. Packages are ``Completed`` at once (nothing is
validated or scanned locally). Every creation and every update publishes "SageMaker Model Package State
Change", whose detail mirrors DescribeModelPackage, as SageMaker does.

Errors follow SageMaker: a second group with the same name is a ``ValidationException`` "Model Package Group
already exists: <arn>"; a missing group or package is a ``ValidationException`` "... does not exist.".
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from typing import Any

from .context import ServiceContext, drop_none, now
from .errors import ValidationError
from .events import times_to_epoch_ms
from .listing import filter_times, paginate, sort

MODEL_PACKAGE_STATE_CHANGE = "SageMaker Model Package State Change"
PENDING_MANUAL_APPROVAL = "PendingManualApproval"
COMPLETED = "Completed"
VERSIONED = "Versioned"
UNVERSIONED = "Unversioned"
BOTH = "Both"

# What a CreateModelPackage request may carry that DescribeModelPackage returns unchanged.
_STORED_AS_GIVEN = (
    "ModelPackageDescription",
    "InferenceSpecification",
    "SourceAlgorithmSpecification",
    "ValidationSpecification",
    "CertifyForMarketplace",
    "MetadataProperties",
    "ModelMetrics",
    "Domain",
    "Task",
    "SamplePayloadUrl",
    "CustomerMetadataProperties",
    "DriftCheckBaselines",
    "AdditionalInferenceSpecifications",
    "SkipModelValidation",
    "SourceUri",
    "ModelCard",
    "ModelLifeCycle",
)


def _name_from(value: str, resource: str) -> str:
    """``value`` is a name or an ARN ``arn:...:<resource>/<name>``; returns the name (or ``name/version``)."""
    marker = f":{resource}/"
    if value.startswith("arn:") and marker in value:
        return value.split(marker, 1)[1]
    return value


@dataclass
class ModelPackageGroup:
    name: str
    arn: str
    description: str | None
    creation_time: float
    last_version: int = 0

    def describe(self) -> dict[str, Any]:
        return drop_none(
            {
                "ModelPackageGroupName": self.name,
                "ModelPackageGroupArn": self.arn,
                "ModelPackageGroupDescription": self.description,
                "CreationTime": self.creation_time,
                "ModelPackageGroupStatus": COMPLETED,
            }
        )


@dataclass
class ModelPackage:
    name: str
    arn: str
    group: str | None
    version: int | None
    creation_time: float
    approval_status: str | None
    fields: dict[str, Any] = field(default_factory=dict)
    approval_description: str | None = None
    last_modified_time: float | None = None

    @property
    def key(self) -> str:
        return (f"{self.group}/{self.version}" if self.version is not None else self.name).lower()

    def describe(self) -> dict[str, Any]:
        response = {
            "ModelPackageName": self.name,
            "ModelPackageGroupName": self.group,
            "ModelPackageVersion": self.version,
            "ModelPackageArn": self.arn,
            "CreationTime": self.creation_time,
            "ModelPackageStatus": COMPLETED,
            "ModelPackageStatusDetails": {"ValidationStatuses": [], "ImageScanStatuses": []},
            "ModelApprovalStatus": self.approval_status,
            "ApprovalDescription": self.approval_description,
            "LastModifiedTime": self.last_modified_time,
            **copy.deepcopy(self.fields),
        }
        return drop_none(response)

    def summary(self) -> dict[str, Any]:
        return drop_none(
            {
                "ModelPackageName": self.name,
                "ModelPackageGroupName": self.group,
                "ModelPackageVersion": self.version,
                "ModelPackageArn": self.arn,
                "ModelPackageDescription": self.fields.get("ModelPackageDescription"),
                "CreationTime": self.creation_time,
                "ModelPackageStatus": COMPLETED,
                "ModelApprovalStatus": self.approval_status,
            }
        )


class ModelRegistry:
    """Model package groups and model packages of one service; one lock guards both."""

    def __init__(self, context: ServiceContext) -> None:
        self.context = context
        self._groups: dict[str, ModelPackageGroup] = {}
        self._packages: dict[str, ModelPackage] = {}
        self._client_tokens: dict[str, str] = {}
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- groups

    def create_group(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["ModelPackageGroupName"]
        arn = self.context.arn("model-package-group", name)
        with self._lock:
            if name.lower() in self._groups:
                raise ValidationError(f"Model Package Group already exists: {arn}")
            self._groups[name.lower()] = ModelPackageGroup(
                name=name,
                arn=arn,
                description=params.get("ModelPackageGroupDescription"),
                creation_time=now(),
            )
        self.context.tags.register(arn, params.get("Tags"))
        return {"ModelPackageGroupArn": arn}

    def _group(self, name_or_arn: str) -> ModelPackageGroup:
        name = _name_from(name_or_arn, "model-package-group")
        group = self._groups.get(name.lower())
        if group is None:
            raise ValidationError(
                f"ModelPackageGroup {self.context.arn('model-package-group', name)} does not exist."
            )
        return group

    def describe_group(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return self._group(params["ModelPackageGroupName"]).describe()

    def list_groups(self, params: dict[str, Any]) -> dict[str, Any]:
        contains = (params.get("NameContains") or "").lower()
        with self._lock:
            items = [g.describe() for g in self._groups.values() if contains in g.name.lower()]
        items = filter_times(items, params)
        keys = {"Name": "ModelPackageGroupName", "CreationTime": "CreationTime"}
        return paginate(sort(items, params, keys, "CreationTime"), params, "ModelPackageGroupSummaryList")

    # ----------------------------------------------------------------- packages

    def create_package(self, params: dict[str, Any]) -> dict[str, Any]:
        group_name, name = params.get("ModelPackageGroupName"), params.get("ModelPackageName")
        if group_name and name:
            raise ValidationError(
                "Both ModelPackageName and ModelPackageGroupName are provided in the input. Cannot determine "
                "which one to use."
            )
        if not group_name and not name:
            raise ValidationError(
                "Missing ARN: give ModelPackageGroupName (a versioned model package) or ModelPackageName "
                "(an unversioned one)."
            )
        if name and params.get("ModelApprovalStatus"):
            raise ValidationError(
                "ModelApprovalStatus applies only to versioned model packages (created with "
                "ModelPackageGroupName), not to the unversioned model package "
                f"{name}."
            )
        fields = {key: copy.deepcopy(params[key]) for key in _STORED_AS_GIVEN if params.get(key) is not None}
        token = params.get("ClientToken")
        with self._lock:
            if token and token in self._client_tokens:  # a retried request: the package it created
                return {"ModelPackageArn": self._client_tokens[token]}
            if group_name:
                group = self._group(group_name)
                group.last_version += 1
                package = ModelPackage(
                    name=group.name,
                    arn=self.context.arn("model-package", f"{group.name}/{group.last_version}"),
                    group=group.name,
                    version=group.last_version,
                    creation_time=now(),
                    approval_status=params.get("ModelApprovalStatus") or PENDING_MANUAL_APPROVAL,
                    fields=fields,
                )
            else:
                assert name is not None
                package = ModelPackage(
                    name=name,
                    arn=self.context.arn("model-package", name),
                    group=None,
                    version=None,
                    creation_time=now(),
                    approval_status=None,
                    fields=fields,
                )
                if package.key in self._packages:
                    raise ValidationError(f"Model Package already exists: {package.arn}")
            self._packages[package.key] = package
            if token:
                self._client_tokens[token] = package.arn
            described = package.describe()
        self.context.tags.register(package.arn, params.get("Tags"))
        self._publish(described)
        return {"ModelPackageArn": package.arn}

    def _package(self, name_or_arn: str) -> ModelPackage:
        key = _name_from(name_or_arn, "model-package").lower()
        package = self._packages.get(key)
        if package is None:
            raise ValidationError(f"ModelPackage {self.context.arn('model-package', key)} does not exist.")
        return package

    def describe_package(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return self._package(params["ModelPackageName"]).describe()

    def list_packages(self, params: dict[str, Any]) -> dict[str, Any]:
        group_name = params.get("ModelPackageGroupName")
        wanted_type = params.get("ModelPackageType") or (VERSIONED if group_name else UNVERSIONED)
        group_key = _name_from(group_name, "model-package-group").lower() if group_name else None
        status = params.get("ModelApprovalStatus")
        contains = (params.get("NameContains") or "").lower()
        with self._lock:
            packages = list(self._packages.values())
        items = []
        for package in packages:
            versioned = package.version is not None
            if wanted_type != BOTH and versioned != (wanted_type == VERSIONED):
                continue
            if group_key is not None and (package.group or "").lower() != group_key:
                continue
            if status is not None and package.approval_status != status:
                continue
            if contains not in package.name.lower():
                continue
            items.append(package.summary())
        items = filter_times(items, params)
        keys = {"Name": "ModelPackageName", "CreationTime": "CreationTime"}
        return paginate(sort(items, params, keys, "CreationTime"), params, "ModelPackageSummaryList")

    def update_package(self, params: dict[str, Any]) -> dict[str, Any]:
        added = params.get("CustomerMetadataProperties") or {}
        removed = params.get("CustomerMetadataPropertiesToRemove") or []
        both = sorted(set(added) & set(removed))
        if both:
            raise ValidationError(
                f"The keys {both} are in both CustomerMetadataProperties and CustomerMetadataPropertiesToRemove; "
                "a key can be set or removed in one request, not both."
            )
        with self._lock:
            package = self._package(params["ModelPackageArn"])
            status = params.get("ModelApprovalStatus")
            if status is not None:
                if package.version is None:
                    raise ValidationError(
                        f"ModelApprovalStatus applies only to versioned model packages; {package.arn} is unversioned."
                    )
                package.approval_status = status
            if params.get("ApprovalDescription") is not None:
                package.approval_description = params["ApprovalDescription"]
            metadata = dict(package.fields.get("CustomerMetadataProperties") or {})
            metadata.update(added)
            for key in removed:
                metadata.pop(key, None)
            if metadata:
                package.fields["CustomerMetadataProperties"] = metadata
            else:
                package.fields.pop("CustomerMetadataProperties", None)
            for key in ("InferenceSpecification", "SourceUri", "ModelCard", "ModelLifeCycle"):
                if params.get(key) is not None:
                    package.fields[key] = copy.deepcopy(params[key])
            if params.get("AdditionalInferenceSpecificationsToAdd"):
                package.fields.setdefault("AdditionalInferenceSpecifications", []).extend(
                    copy.deepcopy(params["AdditionalInferenceSpecificationsToAdd"])
                )
            package.last_modified_time = now()
            described = package.describe()
        self._publish(described)
        return {"ModelPackageArn": package.arn}

    def delete_package(self, params: dict[str, Any]) -> dict[str, Any]:
        """DeleteModelPackage: gone for every later call (ValidationException "... does not exist."); its group
        never numbers that version again (``last_version`` stays)."""
        with self._lock:
            package = self._package(params["ModelPackageName"])
            del self._packages[package.key]
            self._client_tokens = {token: arn for token, arn in self._client_tokens.items() if arn != package.arn}
        return {}

    def _publish(self, described: dict[str, Any]) -> None:
        detail = times_to_epoch_ms(described)
        detail["Tags"] = self.context.tags.as_dict(described["ModelPackageArn"])
        self.context.events.publish(MODEL_PACKAGE_STATE_CHANGE, described["ModelPackageArn"], detail)
