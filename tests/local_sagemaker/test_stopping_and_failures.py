"""Trials stopped early, by request or by their runtime limit, and trials that fail."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from reviewtune.local.processes import process_alive
from reviewtune.local.sagemaker import ScriptedRun, ScriptedRunner

from .conftest import IMAGE, ROLE_ARN, tar_gz, wait_for


def pid_of(world, training_job: str) -> int:
    log = (world.workdir / "training" / training_job / "log.txt").read_text()
    return int(re.search(r"pid=(\d+)", log).group(1))


def all_started(world, trials: list[dict], count: int) -> bool:
    logs = [world.workdir / "training" / t["TrainingJobName"] / "log.txt" for t in trials]
    return len(trials) == count and all(log.exists() and "pid=" in log.read_text() for log in logs)


def process_gone(pid: int, within: float = 15.0) -> bool:
    """Whether the process has ended (gone, or a zombie not yet reaped by its new parent) within ``within`` s."""
    deadline = time.monotonic() + within
    while process_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_early_stopping_auto_stops_a_trial_below_the_median(world):
    # Trials run one after the other; the third reports 10 % accuracy, far below the median of the
    # running averages of the first two, so the median rule stops it after its first epoch.
    request = world.tuning_request(
        "early",
        max_jobs=3,
        max_parallel=1,
        early_stopping="Auto",
        static={"bad_trial": "3", "epochs": "4", "sleep": "0.15"},
    )
    world.sm.create_hyper_parameter_tuning_job(**request)

    described = world.wait_tuning("early", timeout=60)
    trials = sorted(world.trials("early"), key=lambda t: t["TrainingJobName"])

    assert [t["TrainingJobStatus"] for t in trials] == ["Completed", "Completed", "Stopped"]
    stopped = trials[2]
    assert stopped["ObjectiveStatus"] == "Succeeded"  # stopped early, but it emitted its objective
    assert stopped["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == 10.0
    job = world.sm.describe_training_job(TrainingJobName=stopped["TrainingJobName"])
    assert job["SecondaryStatus"] == "Stopped"
    assert [m["Value"] for m in job["FinalMetricDataList"] if m["MetricName"] == "validation:accuracy"] == [
        10.0
    ]
    log = (world.workdir / "training" / stopped["TrainingJobName"] / "log.txt").read_text()
    assert log.count("val_acc") < 4
    assert described["HyperParameterTuningJobStatus"] == "Completed"
    assert described["TrainingJobStatusCounters"]["Stopped"] == 1
    assert described["TrainingJobStatusCounters"]["Completed"] == 2
    assert described["BestTrainingJob"]["TrainingJobName"] != stopped["TrainingJobName"]


def test_stop_tuning_job_stops_running_trials_and_their_processes(world):
    request = world.tuning_request(
        "stopme", max_jobs=4, max_parallel=2, static={"epochs": "300", "sleep": "0.1"}
    )
    world.sm.create_hyper_parameter_tuning_job(**request)
    running = wait_for(
        lambda: world.trials("stopme"), lambda trials: all_started(world, trials, 2), timeout=20
    )
    pids = [pid_of(world, t["TrainingJobName"]) for t in running]

    world.sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="stopme")
    stopping = world.sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="stopme")
    described = world.wait_tuning("stopme", timeout=20)

    assert stopping["HyperParameterTuningJobStatus"] in ("Stopping", "Stopped")
    assert described["HyperParameterTuningJobStatus"] == "Stopped"
    trials = world.trials("stopme")
    assert len(trials) == 2  # nothing new was launched
    assert {t["TrainingJobStatus"] for t in trials} == {"Stopped"}
    assert described["TrainingJobStatusCounters"]["Stopped"] == 2
    assert all(process_gone(pid) for pid in pids)


def test_a_failing_script_fails_its_trials_and_then_the_tuning_job(world):
    request = world.tuning_request("failing", max_jobs=2, max_parallel=2, static={"fail": "yes"})
    world.sm.create_hyper_parameter_tuning_job(**request)

    described = world.wait_tuning("failing")
    trials = world.trials("failing")

    assert described["HyperParameterTuningJobStatus"] == "Failed"
    assert described["FailureReason"] == (
        "No training job succeeded after 2 attempts. Please take a look at the training job failures to get "
        "more details."
    )
    assert "BestTrainingJob" not in described
    assert described["TrainingJobStatusCounters"]["NonRetryableError"] == 2
    assert described["ObjectiveStatusCounters"] == {"Succeeded": 0, "Pending": 0, "Failed": 2}
    job = world.sm.describe_training_job(TrainingJobName=trials[0]["TrainingJobName"])
    assert job["TrainingJobStatus"] == "Failed" and job["SecondaryStatus"] == "Failed"
    assert job["FailureReason"].startswith("AlgorithmError: ")
    assert "synthetic failure after training" in job["FailureReason"]
    assert job["FailureReason"].endswith(", exit code: 1")
    # the artifact's location is named, as SageMaker names it for every job, and nothing is there
    location = job["ModelArtifacts"]["S3ModelArtifacts"]
    assert location.endswith(f"/{trials[0]['TrainingJobName']}/output/model.tar.gz")
    bucket, key = location.removeprefix("s3://").split("/", 1)
    assert world.s3.list_objects_v2(Bucket=bucket, Prefix=key)["KeyCount"] == 0


def test_training_job_past_its_max_runtime_is_stopped(world):
    world.sm.create_training_job(
        TrainingJobName="too-slow",
        HyperParameters={
            "sagemaker_program": "train.py",
            "sagemaker_submit_directory": world.code_uri,
            "epochs": "500",
            "sleep": "0.1",
        },
        AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        RoleArn=ROLE_ARN,
        InputDataConfig=[
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"{world.data_uri}/train"}
                },
            }
        ],
        OutputDataConfig={"S3OutputPath": f"s3://{world.bucket}/models"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
        StoppingCondition={"MaxRuntimeInSeconds": 1},
    )

    job = wait_for(
        lambda: world.sm.describe_training_job(TrainingJobName="too-slow"),
        lambda d: d["TrainingJobStatus"] in ("Completed", "Failed", "Stopped"),
        timeout=20,
    )

    assert job["TrainingJobStatus"] == "Stopped"
    assert job["SecondaryStatus"] == "MaxRuntimeExceeded"
    assert "MaxRuntimeInSeconds (1 s)" in job["FailureReason"]
    assert process_gone(pid_of(world, "too-slow"))
    assert [t["Status"] for t in job["SecondaryStatusTransitions"]] == [
        "Starting",
        "Downloading",
        "Training",
        "MaxRuntimeExceeded",
    ]


def test_stopping_a_stopped_tuning_job_is_a_validation_error(make_world):
    world = make_world(
        runner=ScriptedRunner(lambda spec: ScriptedRun(["val_acc: 1.0"] * 100), line_delay=0.05)
    )
    world.sm.create_hyper_parameter_tuning_job(**world.tuning_request("twice", max_jobs=2))
    world.sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="twice")
    world.wait_tuning("twice")

    with pytest.raises(ClientError) as caught:
        world.sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="twice")

    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert "is Stopped; only an InProgress job can be stopped" in caught.value.response["Error"]["Message"]


def test_service_stop_terminates_running_training_processes(make_world):
    world = make_world()
    world.sm.create_hyper_parameter_tuning_job(
        **world.tuning_request("shutdown", max_jobs=1, static={"epochs": "300", "sleep": "0.1"})
    )
    [trial] = wait_for(
        lambda: world.trials("shutdown"), lambda trials: all_started(world, trials, 1), timeout=20
    )
    pid = pid_of(world, trial["TrainingJobName"])

    world.service.stop()

    assert process_gone(pid)
    job = world.service.call("DescribeTrainingJob", {"TrainingJobName": trial["TrainingJobName"]})
    assert job["TrainingJobStatus"] == "Stopped"
    tuning = world.service.call(
        "DescribeHyperParameterTuningJob", {"HyperParameterTuningJobName": "shutdown"}
    )
    assert tuning["HyperParameterTuningJobStatus"] == "Stopped"


@pytest.mark.parametrize(("exit_code", "said"), [
    (1, ", exit code: 1"),
    (-9, ", exit code: -9 (killed by SIGKILL: out of memory?)"),  # what the kernel's OOM killer sends
    (-15, ", exit code: -15 (killed by SIGTERM)"),
])
def test_a_job_ended_by_a_signal_says_which_in_its_failure_reason(exit_code, said):
    from reviewtune.local.sagemaker.training import log_tail_reason

    assert log_tail_reason("AlgorithmError", [], exit_code) == f"AlgorithmError: (no output){said}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_job_does_not_outlive_a_runtime_killed_at_once(tmp_path):
    """kill -9 (or the out-of-memory killer) gives the runtime no chance to stop its jobs: the kernel kills each job
    with it, and the job does not keep a core busy for the rest of its training."""
    runtime = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, threading
        from pathlib import Path
        from reviewtune.local.sagemaker.runners import RunSpec, SubprocessRunner
        spec = RunSpec("job", [sys.executable, "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(120)"],
                       {}, Path("."))
        SubprocessRunner().run(spec, lambda line: print(line, flush=True), threading.Event())
    """)], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    job = int(runtime.stdout.readline())
    assert process_alive(job)

    runtime.kill()
    runtime.wait()

    deadline = time.monotonic() + 10
    while process_alive(job) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process_alive(job)


def _train(world, name: str, image: str = IMAGE, code_uri: str | None = None) -> dict:
    """A training job of ``image``: with the script at ``code_uri`` (or the world's), or else the image's entry point."""
    script = {"sagemaker_program": "train.py", "sagemaker_submit_directory": code_uri or world.code_uri}
    world.sm.create_training_job(
        TrainingJobName=name,
        HyperParameters={**(script if image == IMAGE else {}), "epochs": "1"},
        AlgorithmSpecification={"TrainingImage": image, "TrainingInputMode": "File"},
        RoleArn=ROLE_ARN,
        InputDataConfig=[{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"{world.data_uri}/train"}}}],
        OutputDataConfig={"S3OutputPath": f"s3://{world.bucket}/models"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
    )
    return wait_for(lambda: world.sm.describe_training_job(TrainingJobName=name),
                    lambda d: d["TrainingJobStatus"] in ("Completed", "Failed", "Stopped"), timeout=30)


def test_a_job_s_code_folder_and_environment_are_its_own_not_those_of_what_starts_it(make_world):
    """A job's module named like one of the standard library's (ctypes.py beside train.py) is the job's alone."""
    world = make_world()
    key = "code/own/sourcedir.tar.gz"
    train = "import os\nopen(os.path.join(os.environ['SM_MODEL_DIR'], 'm'), 'w').write('m')\nprint('trained')\n"
    world.s3.put_object(Bucket=world.bucket, Key=key, Body=tar_gz({"train.py": train, "ctypes.py": "VERSION = 1\n"}))
    job = _train(world, "own-modules", code_uri=f"s3://{world.bucket}/{key}")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")


def test_an_entry_point_that_is_not_installed_is_named_in_the_failure(make_world):
    world = make_world(image_entrypoints={"img:missing": ["train-entry-not-installed", "--x"]})
    job = _train(world, "missing-entry", image="img:missing")
    assert job["TrainingJobStatus"] == "Failed"
    assert "No such file or directory: 'train-entry-not-installed'" in job["FailureReason"]
