"""The default job images: AWS's Hugging Face Deep Learning Containers, whose ECR account depends on the Region.

Most commercial Regions serve them from account 763104351884; opt-in Regions, China, GovCloud and the isolated
Regions each have their own. A job image is pulled from the job's own Region, so a stack in eu-south-1 must name
692866216735.dkr.ecr.eu-south-1.amazonaws.com/... The tables below are the SageMaker Python SDK's
(``sagemaker/image_uri_config/huggingface.json``, for exactly the versions below; a test compares them) and
template.yaml's ``DeepLearningContainerRegistries`` mapping and its Rules are these tables (another test).
"""

from __future__ import annotations

from typing import Literal

from reviewtune.core.errors import ConfigError

Kind = Literal["training", "processing"]

# <repository>:<tag>; TRAINING for the tuning job's trials (GPU), PROCESSING for the evaluation job (CPU) and the
# model packages registered in the Model Registry.
TRAINING_REPOSITORY = "huggingface-pytorch-training:2.8.0-transformers4.56.2-gpu-py312-cu129-ubuntu22.04"
PROCESSING_REPOSITORY = "huggingface-pytorch-inference:2.6.0-transformers4.51.3-cpu-py312-ubuntu22.04"
# the versions the tables are the SDK's for: (framework version, transformers version) per kind
SDK_VERSIONS: dict[Kind, tuple[str, str]] = {
    "training": ("pytorch2.8.0", "4.56.2"),
    "processing": ("pytorch2.6.0", "4.51.3"),
}

_DEFAULT_ACCOUNT = "763104351884"
_OWN_ACCOUNTS = {
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-northeast-3": "364406365360",
    "ap-southeast-3": "907027046896",
    "ca-west-1": "204538143572",
    "cn-north-1": "727897471807",
    "cn-northwest-1": "727897471807",
    "eu-south-1": "692866216735",
    "il-central-1": "780543022126",
    "me-central-1": "914824155844",
    "me-south-1": "217643126080",
    "us-gov-east-1": "446045086412",
    "us-gov-west-1": "442386744353",
    "us-iso-east-1": "886529160074",
    "us-isob-east-1": "094389454867",
}
_SHARED_ACCOUNT_REGIONS = (
    "ap-northeast-1", "ap-northeast-2", "ap-south-1", "ap-southeast-1", "ap-southeast-2", "ca-central-1",
    "eu-central-1", "eu-north-1", "eu-west-1", "eu-west-2", "eu-west-3", "sa-east-1", "us-east-1", "us-east-2",
    "us-west-1", "us-west-2",
)  # fmt: skip
# Regions with the inference (CPU) container but no training container of this version
_PROCESSING_ONLY = {
    "ap-south-2": "772153158452",
    "ap-southeast-4": "457447274322",
    "eu-central-2": "380420809688",
    "eu-south-2": "503227376785",
}

REGISTRIES: dict[Kind, dict[str, str]] = {
    "training": {**dict.fromkeys(_SHARED_ACCOUNT_REGIONS, _DEFAULT_ACCOUNT), **_OWN_ACCOUNTS},
    "processing": {
        **dict.fromkeys(_SHARED_ACCOUNT_REGIONS, _DEFAULT_ACCOUNT),
        **_OWN_ACCOUNTS,
        **_PROCESSING_ONLY,
    },
}
_REPOSITORIES: dict[Kind, str] = {"training": TRAINING_REPOSITORY, "processing": PROCESSING_REPOSITORY}
_PARAMETERS: dict[Kind, str] = {"training": "TrainingImageUri", "processing": "ProcessingImageUri"}


def url_suffix(region: str) -> str:
    """The domain of the Region's endpoints (CloudFormation's AWS::URLSuffix)."""
    if region.startswith("cn-"):
        return "amazonaws.com.cn"
    if region.startswith("us-isob-"):
        return "sc2s.sgov.gov"
    if region.startswith("us-iso-"):
        return "c2s.ic.gov"
    return "amazonaws.com"


def default_image_uri(kind: Kind, region: str) -> str:
    """The Hugging Face container of ``kind`` in ``region``; a ConfigError where the Region has none."""
    account = REGISTRIES[kind].get(region)
    if account is None:
        raise ConfigError(
            f"there is no default {kind} image (Hugging Face Deep Learning Container) in Region {region!r}: "
            f"set the stack's {_PARAMETERS[kind]} to an image in that Region"
        )
    return f"{account}.dkr.ecr.{region}.{url_suffix(region)}/{_REPOSITORIES[kind]}"
