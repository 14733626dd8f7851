from __future__ import annotations

import pytest

from reviewtune.core.config import Settings
from reviewtune.core.errors import ConfigError, RangesError
from reviewtune.core.ranges import parameter_ranges

BASE_ENV = {"BUCKET_NAME": "b", "RUNS_TABLE_NAME": "t", "TOPIC_ARN": "arn:aws:sns:us-east-1:1:t", "SAGEMAKER_ROLE_ARN": "arn:aws:iam::1:role/r"}


def test_shorthand_becomes_sagemaker_ranges():
    ranges = parameter_ranges(
        {
            "learning_rate": {"min": 1e-5, "max": 5e-5, "scaling": "Logarithmic"},
            "train_batch_size": [128, 256],
            "epochs": {"min": 1, "max": 4, "type": "Integer"},
        }
    )
    assert ranges == {
        "ContinuousParameterRanges": [{"Name": "learning_rate", "ScalingType": "Logarithmic", "MinValue": "1e-05", "MaxValue": "5e-05"}],
        "IntegerParameterRanges": [{"Name": "epochs", "ScalingType": "Auto", "MinValue": "1", "MaxValue": "4"}],
        "CategoricalParameterRanges": [{"Name": "train_batch_size", "Values": ["128", "256"]}],
    }


@pytest.mark.parametrize(
    "spec",
    [{"lr": {"min": 2, "max": 1}}, {"lr": {"min": 0, "max": 1, "scaling": "Logarithmic"}}, {"lr": []}, {"lr": "x"}, {"lr": {"min": "a", "max": 1}}],
)
def test_bad_ranges_are_refused(spec):
    with pytest.raises(RangesError, match="lr"):
        parameter_ranges(spec)


def test_settings_defaults_and_overrides():
    settings = Settings.from_env(BASE_ENV)
    assert (settings.model_name, settings.strategy, settings.max_jobs) == ("roberta-base", "Bayesian", 4)
    custom = Settings.from_env({**BASE_ENV, "STRATEGY": "random", "MAX_JOBS": "6", "HYPERPARAMETER_RANGES": '{"x": [1, 2]}'})
    assert (custom.strategy, custom.max_jobs, custom.hyperparameter_ranges) == ("Random", 6, {"x": [1, 2]})


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"BUCKET_NAME": ""}, "BUCKET_NAME"),
        ({"MAX_JOBS": "many"}, "MAX_JOBS must be an integer"),
        ({"STRATEGY": "Genetic"}, "STRATEGY must be one of"),
        ({"HYPERPARAMETER_RANGES": "{bad"}, "not valid JSON"),
        ({"MAX_JOBS": "2", "MAX_PARALLEL_JOBS": "3"}, "cannot exceed"),
        ({"STRATEGY": "Hyperband", "EARLY_STOPPING": "Auto"}, "Hyperband"),
        ({"JOB_NAME_PREFIX": "Bad_Prefix"}, "JOB_NAME_PREFIX"),
        ({"TRAINING_INSTANCE_COUNT": "2"}, "TRAINING_INSTANCE_COUNT must be <= 1"),  # train.py trains on one
    ],
)
def test_bad_configuration_is_explained(extra, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({**BASE_ENV, **extra})


def test_sagemaker_s_limits_on_the_number_of_hyperparameters():
    from reviewtune.core.tuning import check_hyperparameter_counts

    static = {f"s{i}": "1" for i in range(97)}
    check_hyperparameter_counts(static, {"a", "b"})  # 97 + 2 + SageMaker's _tuning_objective_metric: 100
    with pytest.raises(ConfigError, match=r"a tuning job would have 101 hyperparameters \(97 static.*3 tuned, and "
                                          r"SageMaker's 1\); SageMaker allows at most 100"):
        check_hyperparameter_counts(static, {"a", "b", "c"})
    check_hyperparameter_counts({}, {f"h{i}" for i in range(30)})
    with pytest.raises(ConfigError, match="HYPERPARAMETER_RANGES names 31 hyperparameters; SageMaker tunes at most 30"):
        check_hyperparameter_counts({}, {f"h{i}" for i in range(31)})

