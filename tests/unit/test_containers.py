"""reviewtune.core.containers: the default job images by Region, against the SageMaker SDK's own table."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from reviewtune.core import config, containers
from reviewtune.core.errors import ConfigError

ENV = {
    "BUCKET_NAME": "b",
    "RUNS_TABLE_NAME": "t",
    "TOPIC_ARN": "arn:aws:sns:us-east-1:1:t",
    "SAGEMAKER_ROLE_ARN": "r",
}


def _sdk_registries(kind: containers.Kind) -> dict[str, str]:
    package = importlib.util.find_spec("sagemaker")  # its tables ship as JSON files beside its modules
    assert package is not None and package.origin is not None, "the SageMaker SDK is a dev dependency"
    table = json.loads((Path(package.origin).parent / "image_uri_config" / "huggingface.json").read_text())
    framework, transformers = containers.SDK_VERSIONS[kind]
    scope = "training" if kind == "training" else "inference"
    versions = table[scope]["versions"][transformers][framework]
    image = containers.TRAINING_REPOSITORY if kind == "training" else containers.PROCESSING_REPOSITORY
    repository, tag = image.split(":")
    assert versions["repository"] == repository
    assert tag.startswith(f"{framework.removeprefix('pytorch')}-transformers{transformers}-")
    return versions["registries"]


@pytest.mark.parametrize("kind", ["training", "processing"])
def test_the_registries_are_the_sagemaker_sdk_s_for_those_container_versions(kind):
    assert containers.REGISTRIES[kind] == _sdk_registries(kind)


@pytest.mark.parametrize(
    ("kind", "region", "uri"),
    [
        (
            "training",
            "us-east-1",
            "763104351884.dkr.ecr.us-east-1.amazonaws.com/" + containers.TRAINING_REPOSITORY,
        ),
        (
            "training",
            "eu-south-1",
            "692866216735.dkr.ecr.eu-south-1.amazonaws.com/" + containers.TRAINING_REPOSITORY,
        ),
        (
            "processing",
            "af-south-1",
            "626614931356.dkr.ecr.af-south-1.amazonaws.com/" + containers.PROCESSING_REPOSITORY,
        ),
        (
            "processing",
            "ap-south-2",
            "772153158452.dkr.ecr.ap-south-2.amazonaws.com/" + containers.PROCESSING_REPOSITORY,
        ),
        (
            "training",
            "cn-north-1",
            "727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/" + containers.TRAINING_REPOSITORY,
        ),
        (
            "training",
            "us-iso-east-1",
            "886529160074.dkr.ecr.us-iso-east-1.c2s.ic.gov/" + containers.TRAINING_REPOSITORY,
        ),
    ],
)
def test_a_default_image_is_pulled_from_its_region_s_own_registry(kind, region, uri):
    assert containers.default_image_uri(kind, region) == uri


@pytest.mark.parametrize(("kind", "region"), [("training", "ap-south-2"), ("processing", "xx-nowhere-9")])
def test_a_region_without_that_container_is_a_config_error_naming_the_parameter_to_set(kind, region):
    with pytest.raises(
        ConfigError,
        match=rf"Region '{region}'.*{'TrainingImageUri' if kind == 'training' else 'ProcessingImageUri'}",
    ):
        containers.default_image_uri(kind, region)


def test_settings_without_image_variables_take_the_functions_region_s_containers():
    settings = config.Settings.from_env({**ENV, "AWS_REGION": "me-south-1"})
    assert settings.training_image_uri == containers.default_image_uri("training", "me-south-1")
    assert settings.training_image_uri.startswith("217643126080.dkr.ecr.me-south-1.")
    assert settings.processing_image_uri == settings.inference_image_uri
    assert settings.processing_image_uri == containers.default_image_uri("processing", "me-south-1")


def test_settings_keep_the_images_the_stack_names():
    own = "111122223333.dkr.ecr.ap-south-2.amazonaws.com/team/train:1"
    settings = config.Settings.from_env({**ENV, "AWS_REGION": "ap-south-2", "TRAINING_IMAGE_URI": own})
    assert settings.training_image_uri == own
    assert settings.processing_image_uri.startswith("772153158452.dkr.ecr.ap-south-2.")
    with pytest.raises(ConfigError, match="TrainingImageUri"):
        config.Settings.from_env({**ENV, "AWS_REGION": "ap-south-2"})
