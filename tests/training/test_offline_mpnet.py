"""all-mpnet-base-v2 from reviewtune's offline model cache: a few training steps with train.py, then evaluation.

Uses the real cached weights (``make setup`` fetches them); skipped with a message where the cache is absent.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from reviewtune import offline_models

from .conftest import ACC_LINE, Channels, make_model_tarball, run_train
from .test_evaluate_script import run_evaluation

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not offline_models.is_ready(offline_models.ALL_MPNET_BASE_V2),
        reason="all-mpnet-base-v2 is not in the offline model cache: run `python -m reviewtune.offline_models fetch`",
    ),
]

HUB_ID = offline_models.ALL_MPNET_BASE_V2.hub_id
LAYER_0 = "encoder.layer.0.attention.attn.q.weight"


def _tensor(path: Path, name: str) -> torch.Tensor:
    with safe_open(str(path), "pt") as handle:
        return handle.get_tensor(name)


def test_mpnet_trains_two_steps_and_evaluates(channels: Channels, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    result = run_train(
        channels,
        model_dir,
        model_name_or_path=HUB_ID,
        epochs=1,
        train_steps_per_epoch=2,
        train_batch_size=4,
        validation_batch_size=8,
        validation_steps_per_epoch=1,
        max_seq_length=32,
        pooling="mean",
        attention_dropout=0.0,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(re.findall(ACC_LINE, result.stdout)) == 1

    config = json.loads((model_dir / "config.json").read_text())
    assert config["model_type"] == "mpnet" and config["classifier_pooling"] == "mean"
    assert config["attention_probs_dropout_prob"] == 0.0
    base = offline_models.model_folder(offline_models.ALL_MPNET_BASE_V2) / "model.safetensors"
    trained = _tensor(model_dir / "model.safetensors", f"mpnet.{LAYER_0}")
    assert trained.shape == (768, 768)
    assert not torch.equal(trained, _tensor(base, LAYER_0))  # the encoder was fine-tuned, not only the head

    make_model_tarball(model_dir, tmp_path / "input" / "model")
    evaluation = run_evaluation(tmp_path / "input" / "model", channels.test, tmp_path / "evaluation", "--batch-size", "8")
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    report = json.loads((tmp_path / "evaluation" / "evaluation.json").read_text())
    assert report["test_rows"] == 15
