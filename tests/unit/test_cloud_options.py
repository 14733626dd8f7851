"""The documented cloud option: all-mpnet-base-v2 with mean pooling and its learning-rate range, end to the request."""

from __future__ import annotations

from reviewtune.cfn_yaml import load_template
from reviewtune.cloud_options import MPNET_PARAMETERS, parameter_overrides
from reviewtune.core.code_bundle import CodeBundle
from reviewtune.core.config import Settings
from reviewtune.core.tuning import tuning_job_request
from tests.support.aws import ROOT

BASE_ENV = {"BUCKET_NAME": "b", "RUNS_TABLE_NAME": "t", "TOPIC_ARN": "arn:aws:sns:us-east-1:1:t", "SAGEMAKER_ROLE_ARN": "arn:aws:iam::1:role/r"}


def _environment_from_parameters(parameters: dict[str, str]) -> dict[str, str]:
    """The functions' variables that are plain ``!Ref <Parameter>`` in template.yaml, for these parameter values."""
    template = load_template(ROOT / "template.yaml")
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    return {
        name: parameters[value["Ref"]]
        for name, value in variables.items()
        if isinstance(value, dict) and value.get("Ref") in parameters
    }


def test_the_mpnet_option_reaches_the_tuning_request_with_mean_pooling_and_its_range() -> None:
    environment = _environment_from_parameters(MPNET_PARAMETERS)
    assert set(environment) == {"MODEL_NAME", "HYPERPARAMETER_RANGES", "STATIC_HYPERPARAMETERS"}
    settings = Settings.from_env({**BASE_ENV, **environment})
    code = CodeBundle("0" * 64, "s3://b/code/x/sourcedir.tar.gz", "s3://b/code/x/src/")
    request = tuning_job_request(settings, "reviewtune-0123456789abcdef", "team/reviews.tsv", code)

    static = request["TrainingJobDefinition"]["StaticHyperParameters"]
    assert static["model_name_or_path"] == "sentence-transformers/all-mpnet-base-v2"
    assert static["pooling"] == "mean"
    ranges = request["HyperParameterTuningJobConfig"]["ParameterRanges"]
    assert ranges["ContinuousParameterRanges"] == [
        {"Name": "learning_rate", "ScalingType": "Logarithmic", "MinValue": "2e-05", "MaxValue": "8e-05"}
    ]
    assert ranges["CategoricalParameterRanges"] == [{"Name": "train_batch_size", "Values": ["32", "64"]}]


def test_readme_and_template_document_the_option_as_the_code_defines_it() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert parameter_overrides(MPNET_PARAMETERS) in readme
    description = load_template(ROOT / "template.yaml")["Parameters"]["ModelName"]["Description"]
    assert "sentence-transformers/all-mpnet-base-v2" in description and "mean" in description
