"""Fine-tune a sentiment classifier (-1/0/1) on review TSV files; SageMaker training entry point.

Runs unchanged in SageMaker's PyTorch / Hugging Face training containers and locally as a subprocess:

- data: every ``*.tsv`` of ``SM_CHANNEL_TRAIN`` / ``SM_CHANNEL_VALIDATION`` (header ``sentiment<TAB>review_body``);
- output: ``SM_MODEL_DIR`` gets the model (safetensors), tokenizer, ``label_map.json`` and ``training_summary.json``;
- hyperparameters: ``--name value``; values may arrive JSON-quoted (``"128"``); unknown ones are ignored;
- metrics: after every epoch one line ``val_loss: <float> - val_acc: <percent>`` (and ``train_loss: <float>``, and
  ``planned_steps_pct: <percent>``: the share of the planned steps trained so far, under 100 at the end when
  ``--max_train_seconds`` cut them, see progress_schedule.py).

The model saved is the last epoch's (``--keep_epoch best``: the epoch with the best validation accuracy; see
kept_epoch.py for why the last ``val_acc`` line is always the saved model's).
On a failure the reason is also written to SageMaker's failure file (``/opt/ml/output/failure``) when that folder exists.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NoReturn

JOB_STARTED = time.perf_counter()  # before torch loads: --max_train_seconds counts the whole job from here

# oneDNN caches a compiled kernel per input shape; dynamic padding makes many shapes, and an unbounded cache grows
# memory by ~0.5 GB per job. A small cache keeps the speed (measured: 31 vs 29 ex/s, 2.5 vs 3.1 GB peak).
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "32")

import numpy as np
import torch
import torch.nn.functional as F
from clipped_step import clipped_step
from fast_dropout import use_fast_dropout
from frozen_features import FrozenFeatures
from fused_projections import fuse_projections
from kept_epoch import KEEP_RULES, KeptEpoch
from modeling import (
    POOLINGS,
    PRECISIONS,
    Precision,
    choose_precision,
    classification_logits,
    freeze_encoder,
    load_for_training,
    max_tokens,
    parse_freeze,
    peak_rss_mb,
    release_free_memory,
    training_attention,
)
from progress_schedule import SCHEDULES, TrainingProgress, build_scheduler
from review_data import (
    ID2LABEL,
    LABEL2ID,
    BucketedBatches,
    ReviewDataError,
    read_reviews,
    sorted_batches,
    tokenize,
)
from weight_average import ExponentialMovingAverage

# How often the training loop hands freed heap pages back to the OS (see modeling.release_free_memory).
RELEASE_MEMORY_EVERY_STEPS = 10
# For --max_train_seconds, what the job still has to do after its steps: a validation pass runs the forward pass
# only, about a third of a training step's work per row (measured; the local plan's reviewtune.budget.INFERENCE_SPEEDUP,
# which this folder cannot import: a test keeps the two equal); saving writes the weights (all-mpnet-base-v2's
# 438 MB took 1.5 s here; this allows 6.4 s).
INFERENCE_SPEEDUP = 3.0
SAVE_SECONDS_BASE = 2.0
SAVE_BYTES_PER_SECOND = 100e6
# Starts the metric line printed again, after the last epoch, for the epoch whose weights were restored.
KEPT_EPOCH_PREFIX = "kept_epoch:"


# --- hyperparameters -------------------------------------------------------------------------------------------


def _unquote(value: str) -> str:
    text = str(value).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def _int(value: str) -> int:
    text = _unquote(value)
    try:
        return int(text)
    except ValueError:
        number = float(text)
        if not number.is_integer():
            raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
        return int(number)


def _float(value: str) -> float:
    return float(_unquote(value))


def _optional_float(value: str) -> float | None:
    text = _unquote(value)
    return None if text.lower() in ("", "none", "default") else float(text)


def _bool(value: str) -> bool:
    text = _unquote(value).lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {value!r}")


def _freeze(value: str) -> bool | int:
    try:
        return parse_freeze(_unquote(value))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _choice(choices: tuple[str, ...]):
    def parse(value: str) -> str:
        text = _unquote(value).lower()
        if text not in choices:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)}, got {value!r}")
        return text

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(description=__doc__.splitlines()[0], allow_abbrev=False)
    add = parser.add_argument
    add("--model_name_or_path", type=_unquote, default="roberta-base")
    add("--learning_rate", type=_float, default=5e-5)
    add("--train_batch_size", type=_int, default=32)
    add("--validation_batch_size", type=_int, default=64)
    add("--epochs", type=_int, default=3)
    add("--train_steps_per_epoch", type=_int, default=0, help="0 = the whole training set each epoch")
    add(
        "--max_train_seconds",
        type=_float,
        default=0.0,
        help="seconds the whole job may take, from its start to its saved model; its steps get what start-up, "
        "validation and saving leave them, the learning rate follows the further of steps and seconds and each epoch "
        "ends at its share of the time; 0 = no limit",
    )
    add("--validation_steps_per_epoch", type=_int, default=0,
        help="0 = the whole validation set; N = N batches of rows drawn at random (seed), the same every epoch")
    add(
        "--freeze_bert_layer",
        type=_freeze,
        default=False,
        help="True, False or N bottom layers (+ embeddings)",
    )
    add("--keep_layers", type=_int, default=0,
        help="keep only the bottom N encoder layers of the model, dropping those above (the saved model has N); 0 = all")
    add("--frozen_cache_mb", type=_float, default=0.0,
        help="with freeze_bert_layer, run the frozen embeddings and layers once per training row before the first "
        "epoch and keep their output, up to this many MB, so that the steps run only the layers that train; 0 = off")
    add("--max_seq_length", type=_int, default=128)
    add("--seed", type=_int, default=42)
    add("--run_validation", type=_bool, default=True)
    add("--pooling", type=_choice(POOLINGS), default="mean")
    add("--warmup_ratio", type=_float, default=0.1)
    add("--lr_scheduler", type=_choice(SCHEDULES), default="linear")
    add("--weight_decay", type=_float, default=0.01)
    add("--head_lr_multiplier", type=_float, default=1.0, help="the new head's learning rate / learning_rate")
    add("--layer_lr_decay", type=_float, default=1.0, help="each encoder layer's rate / the rate of the one above")
    add("--label_smoothing", type=_float, default=0.0, help="share of each label spread over all classes in the loss")
    add(
        "--ema_decay",
        type=_float,
        default=0.0,
        help="validate and save an exponential moving average of the trained weights with this decay; 0 = off",
    )
    add(
        "--keep_epoch",
        type=_choice(KEEP_RULES),
        default="last",
        help="save the last epoch's weights, or the best epoch's by validation accuracy",
    )
    add("--precision", type=_choice(PRECISIONS), default="auto")
    add("--max_grad_norm", type=_float, default=1.0, help="0 = no gradient clipping")
    add(
        "--attention_dropout",
        type=_optional_float,
        default=None,
        help="dropout on attention probabilities; default: the model's own (0.1 for BERT/RoBERTa)",
    )
    add(
        "--hidden_dropout",
        type=_optional_float,
        default=None,
        help="dropout on hidden states and the head's input; default: the model's own (0.1 for BERT/MPNet)",
    )
    add(
        "--log_steps", type=_int, default=50, help="print the running loss and speed every N steps; 0 = never"
    )
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse whose errors carry their text (for SageMaker's failure file). No abbreviations: a hyperparameter
    this script does not know (``--epoch``, ``--lr``) is ignored with a warning, never taken for another."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise SystemExit(f"error: {message}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:
        print(f"warning: ignoring unknown arguments: {' '.join(unknown)}", flush=True)
    for name in ("train_batch_size", "validation_batch_size", "epochs", "max_seq_length"):
        if getattr(args, name) < 1:
            raise SystemExit(f"error: --{name} must be at least 1, got {getattr(args, name)}")
    for name in ("attention_dropout", "hidden_dropout"):
        value = getattr(args, name)
        if value is not None and not 0 <= value < 1:
            raise SystemExit(f"error: --{name} must be in [0, 1), got {value}")
    if args.keep_layers < 0:
        raise SystemExit(f"error: --keep_layers must be 0 (all) or a number of layers, got {args.keep_layers}")
    if not args.frozen_cache_mb >= 0:
        raise SystemExit(f"error: --frozen_cache_mb must be 0 (off) or positive, got {args.frozen_cache_mb}")
    if not args.max_train_seconds >= 0:
        raise SystemExit(f"error: --max_train_seconds must be 0 (no limit) or positive, got {args.max_train_seconds}")
    for name in ("head_lr_multiplier", "layer_lr_decay"):
        if not getattr(args, name) > 0:
            raise SystemExit(f"error: --{name} must be positive, got {getattr(args, name)}")
    for name in ("warmup_ratio", "label_smoothing", "ema_decay"):
        if not 0 <= getattr(args, name) < 1:
            raise SystemExit(f"error: --{name} must be in [0, 1), got {getattr(args, name)}")
    return args


# --- environment -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingEnvironment:
    """The parts of SageMaker's training environment this script reads."""

    train_dir: Path
    validation_dir: Path
    model_dir: Path
    num_cpus: int
    num_gpus: int
    failure_file: Path

    @classmethod
    def from_environ(cls, environ: dict[str, str] | os._Environ = os.environ) -> TrainingEnvironment:
        output_data = Path(environ.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"))
        return cls(
            train_dir=Path(environ.get("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train")),
            validation_dir=Path(environ.get("SM_CHANNEL_VALIDATION", "/opt/ml/input/data/validation")),
            model_dir=Path(environ.get("SM_MODEL_DIR", "/opt/ml/model")),
            num_cpus=int(environ.get("SM_NUM_CPUS") or len(os.sched_getaffinity(0))),
            num_gpus=int(environ.get("SM_NUM_GPUS") or 0),
            failure_file=output_data.parent / "failure",
        )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(num_gpus: int) -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() and num_gpus != 0 else torch.device("cpu")


# --- training --------------------------------------------------------------------------------------------------


_LAYER_NAME = re.compile(r"\.layer\.(\d+)\.")


def _depth(name: str, layers: int, base_prefix: str) -> int:
    """Where a parameter sits, bottom to top: 0 the embeddings, 1..layers the encoder layers (other encoder
    parameters, such as a pooler or a shared attention bias, count as the top layer), layers + 1 the classification
    head (every parameter outside the pretrained base model)."""
    if base_prefix and not name.startswith(f"{base_prefix}."):
        return layers + 1
    match = _LAYER_NAME.search(name)
    if match:
        return int(match.group(1)) + 1
    return 0 if ".embeddings." in f".{name}" else layers


def build_optimizer(
    model: torch.nn.Module,
    learning_rate: float,
    weight_decay: float,
    head_lr_multiplier: float = 1.0,
    layer_lr_decay: float = 1.0,
) -> torch.optim.Optimizer:
    """AdamW without weight decay on biases and LayerNorm weights; fused kernels where the build has them.

    ``learning_rate`` is the top encoder layer's rate; each layer below gets ``layer_lr_decay`` times the rate of the
    one above (the embeddings the lowest), and the new classification head ``head_lr_multiplier`` times it.
    """
    layers = len(getattr(getattr(model.base_model, "encoder", None), "layer", ()) or ())
    base_prefix = getattr(model, "base_model_prefix", "")
    groups: dict[tuple[float, bool], list[torch.nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        depth = _depth(name, layers, base_prefix)
        if depth > layers:
            rate = learning_rate * head_lr_multiplier
        else:
            rate = learning_rate * layer_lr_decay ** (layers - depth)
        decays = not (parameter.ndim < 2 or "norm" in name.lower())
        groups.setdefault((rate, decays), []).append(parameter)
    param_groups = [
        {"params": params, "lr": rate, "weight_decay": weight_decay if decays else 0.0}
        for (rate, decays), params in groups.items()
    ]
    try:
        return torch.optim.AdamW(param_groups, lr=learning_rate, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(param_groups, lr=learning_rate, foreach=True)


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    train_examples: int
    train_seconds: float
    examples_per_second: float
    val_loss: float | None = None
    val_acc: float | None = None
    time_limited: bool = False  # ended by --max_train_seconds before its steps were done


def validation_sample(rows: int, steps: int, batch_size: int, seed: int) -> list[int]:
    """The validation rows an epoch is scored on: all of them, or with ``steps`` > 0 a random ``steps`` batches'
    worth drawn with ``seed``, the same rows every epoch (so epochs compare), of every length and class in their
    proportions (the first batches of the length-sorted set would be its shortest reviews)."""
    if steps <= 0 or steps * batch_size >= rows:
        return list(range(rows))
    return sorted(random.Random(seed).sample(range(rows), steps * batch_size))


def validate(
    model: torch.nn.Module,
    token_ids: list[list[int]],
    label_ids: list[int],
    args: argparse.Namespace,
    pad_id: int,
    precision: Precision,
    device: torch.device,
) -> tuple[float, float]:
    """Mean loss and accuracy (percent) on the validation rows given (``validation_sample``'s)."""
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    rows = 0
    batches = sorted_batches(token_ids, label_ids, args.validation_batch_size, pad_id)
    with torch.inference_mode():
        for _, batch in batches:
            input_ids, attention_mask = batch.input_ids.to(device), batch.attention_mask.to(device)
            labels = batch.labels.to(device)
            with precision.autocast(device):
                logits = classification_logits(model, input_ids, attention_mask, args.pooling)
            logits = logits.float()
            loss_sum += F.cross_entropy(logits, labels, reduction="sum")
            correct += (logits.argmax(dim=-1) == labels).sum()
            rows += batch.size
    return loss_sum.item() / rows, 100.0 * correct.item() / rows


def keep_frozen_features(
    model: torch.nn.Module,
    args: argparse.Namespace,
    planned_batches: list[list[np.ndarray]],
    token_ids: list[list[int]],
    pad_id: int,
    precision: Precision,
    device: torch.device,
) -> FrozenFeatures | None:
    """With ``--frozen_cache_mb`` and frozen layers, the frozen part's output for every row the planned batches
    draw, computed now (see frozen_features.py); None without."""
    if args.frozen_cache_mb <= 0:
        return None
    freeze = args.freeze_bert_layer
    if freeze is False:
        print("frozen_cache: nothing frozen (freeze_bert_layer False), nothing kept", flush=True)
        return None
    features = FrozenFeatures(model, freeze, int(args.frozen_cache_mb * 2**20), precision.dtype)
    started = time.perf_counter()
    rows = [int(row) for epoch in planned_batches for batch in epoch for row in batch]
    with precision.autocast(device):
        kept = features.precompute(rows, token_ids, pad_id, args.validation_batch_size, lambda: STOP.requested)
    print(
        f"frozen_cache: kept_rows: {kept} of {len(set(rows))} - kept_mb: {features.kept_bytes / 2**20:.0f} - "
        f"seconds: {time.perf_counter() - started:.1f}",
        flush=True,
    )
    return features


class StopRequest:
    """SIGTERM: SageMaker's StopTrainingJob, early stopping, MaxRuntimeInSeconds (it then waits 120 s and uploads
    what SM_MODEL_DIR holds). Training stops after the current step and the model is saved when at least one epoch
    was validated, so a stopped trial that reported an objective has a model to evaluate: the weights of the last
    epoch that ended, which its objective describes (a stop within a later epoch undoes that epoch's steps)."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True


STOP = StopRequest()


def trained_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy, on the CPU, of the parameters that train (by their state_dict names)."""
    return {name: value.detach().to("cpu", copy=True) for name, value in model.named_parameters() if value.requires_grad}


def train(args: argparse.Namespace, env: TrainingEnvironment, job_started: float | None = None) -> list[EpochResult]:
    """Train and save; ``job_started`` (a ``time.perf_counter()`` value; default now) is where ``--max_train_seconds``
    counts from."""
    job_started = time.perf_counter() if job_started is None else job_started
    torch.set_num_threads(max(1, env.num_cpus))
    seed_everything(args.seed)
    device = pick_device(env.num_gpus)
    precision = choose_precision(args.precision, device)

    train_reviews = read_reviews(env.train_dir)
    validation_reviews = read_reviews(env.validation_dir) if args.run_validation else None

    model, tokenizer = load_for_training(
        args.model_name_or_path,
        args.pooling,
        ID2LABEL,
        LABEL2ID,
        attention_dropout=args.attention_dropout,
        hidden_dropout=args.hidden_dropout,
        attn_implementation=training_attention(device),
        keep_layers=args.keep_layers,
    )
    limit = max_tokens(tokenizer, model.config)
    if limit is not None and args.max_seq_length > limit:
        raise ValueError(f"--max_seq_length {args.max_seq_length} is more than the {limit} tokens "
                         f"{args.model_name_or_path} reads at most")
    freeze_encoder(model, args.freeze_bert_layer)
    model.to(device)
    fast_dropouts = use_fast_dropout(model) if device.type == "cpu" else 0
    fused_layers = fuse_projections(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    started = time.perf_counter()
    train_ids = tokenize(tokenizer, train_reviews.texts, args.max_seq_length)
    validation_ids = (
        tokenize(tokenizer, validation_reviews.texts, args.max_seq_length) if validation_reviews else []
    )
    # the rows every epoch is scored on, drawn once
    chosen = validation_sample(len(validation_ids), args.validation_steps_per_epoch, args.validation_batch_size, args.seed)
    validation_ids = [validation_ids[i] for i in chosen]
    validation_labels = [validation_reviews.label_ids[i] for i in chosen] if validation_reviews else []
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(
        f"train_rows: {len(train_reviews)} - validation_rows: {len(validation_reviews or [])} - "
        f"tokenize_seconds: {time.perf_counter() - started:.2f} - device: {device.type} - "
        f"precision: {precision.name} - threads: {torch.get_num_threads()} - trainable_parameters: {trainable} - "
        f"fast_dropout_modules: {fast_dropouts} - fused_projection_layers: {fused_layers}",
        flush=True,
    )

    batches = BucketedBatches(
        train_ids, train_reviews.label_ids, args.train_batch_size, pad_id, seed=args.seed
    )
    steps_per_epoch = len(batches)
    if args.train_steps_per_epoch > 0:
        steps_per_epoch = min(steps_per_epoch, args.train_steps_per_epoch)
    planned_batches = batches.plan(args.epochs, steps_per_epoch)
    features = keep_frozen_features(model, args, planned_batches, train_ids, pad_id, precision, device)
    optimizer = build_optimizer(
        model, args.learning_rate, args.weight_decay, args.head_lr_multiplier, args.layer_lr_decay
    )
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    progress = TrainingProgress(
        steps_per_epoch,
        args.epochs,
        args.max_train_seconds,
        job_started=job_started,
        validations=args.epochs if validation_reviews is not None else 0,
        validation_steps=len(validation_ids) / args.train_batch_size / INFERENCE_SPEEDUP,
        save_seconds=SAVE_SECONDS_BASE + weight_bytes / SAVE_BYTES_PER_SECOND,
    )
    scheduler = build_scheduler(optimizer, args.lr_scheduler, args.warmup_ratio, progress)
    scaler = torch.amp.GradScaler(device.type) if precision.needs_grad_scaler else None
    trainable_parameters = [p for p in model.parameters() if p.requires_grad]
    average = ExponentialMovingAverage(trainable_parameters, args.ema_decay) if args.ema_decay > 0 else None
    averaged = average.swapped_in if average is not None else contextlib.nullcontext

    results: list[EpochResult] = []
    kept = KeptEpoch(args.keep_epoch, args.epochs)
    # the trained weights as the last ended epoch left them (as validated: averaged, with an average), until the last
    # epoch: a stop within a later epoch saves these, the weights the latest metric line describes, not its partial
    # updates (only what trains: the frozen layers never change)
    ended_weights: dict[str, torch.Tensor] | None = None
    stopped_within_epoch = False
    for epoch in range(1, args.epochs + 1):
        if epoch > 1 and progress.time_up():
            print(
                f"time_limit: no time left for epoch {epoch} - job_seconds: {progress.job_seconds():.1f} of "
                f"{args.max_train_seconds:g}",
                flush=True,
            )
            # the share of every planned epoch's steps, so that the trial shows it was cut
            print(f"planned_steps_pct: {progress.trained_share(args.epochs):.1f}", flush=True)
            break
        model.train()
        loss_sum = torch.zeros((), device=device)
        examples = 0
        epoch_start = window_start = time.perf_counter()
        window_cpu_start = time.process_time()
        window_examples = 0
        time_limited = False
        progress.start()
        for step, rows in enumerate(planned_batches[epoch - 1], start=1):
            batch = batches.batch(rows)
            input_ids = batch.input_ids.to(device, non_blocking=True)
            attention_mask = batch.attention_mask.to(device, non_blocking=True)
            labels = batch.labels.to(device, non_blocking=True)
            with precision.autocast(device):
                if features is not None:
                    hidden = features.hidden_states(batch.rows, input_ids, attention_mask)
                    logits = features.logits(hidden, attention_mask, args.pooling)
                else:
                    logits = classification_logits(model, input_ids, attention_mask, args.pooling)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=args.label_smoothing)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                if args.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(trainable_parameters, args.max_grad_norm, foreach=True)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                clipped_step(optimizer, trainable_parameters, args.max_grad_norm)
            progress.step_done()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if average is not None:
                average.update()
            loss_sum += loss.detach() * batch.size
            examples += batch.size
            window_examples += batch.size
            if args.log_steps > 0 and step % args.log_steps == 0:
                now, cpu_now = time.perf_counter(), time.process_time()
                print(
                    f"step: {step}/{steps_per_epoch} - loss: {loss_sum.item() / examples:.4f} - "
                    f"window_examples: {window_examples} - window_seconds: {now - window_start:.3f} - "
                    f"window_cpu_seconds: {cpu_now - window_cpu_start:.3f} - "
                    f"examples_per_second: {window_examples / (now - window_start):.2f}",
                    flush=True,
                )
                window_start, window_cpu_start, window_examples = now, cpu_now, 0
            if step % RELEASE_MEMORY_EVERY_STEPS == 0:
                release_free_memory()
            if STOP.requested:
                break
            if step < steps_per_epoch and progress.epoch_over(epoch):
                time_limited = True
                print(
                    f"time_limit: epoch {epoch} ends after step {step} of {steps_per_epoch} - "
                    f"step_seconds: {progress.seconds:.1f} of {progress.step_seconds_allowed:.1f} - "
                    f"job_seconds: {progress.job_seconds():.1f} of {args.max_train_seconds:g}",
                    flush=True,
                )
                break
        progress.pause()
        if STOP.requested:
            print(f"stop_requested: epoch {epoch} step {step} of {steps_per_epoch}", flush=True)
            stopped_within_epoch = True
            break
        progress.end_epoch(epoch)
        train_seconds = time.perf_counter() - epoch_start
        result = EpochResult(
            epoch=epoch,
            train_loss=loss_sum.item() / max(examples, 1),
            train_examples=examples,
            train_seconds=round(train_seconds, 3),
            examples_per_second=round(examples / train_seconds, 2),
            time_limited=time_limited,
        )
        print(f"epoch: {epoch}", flush=True)
        print(f"train_loss: {result.train_loss:.4f}", flush=True)
        if validation_reviews is not None:
            progress.validation_started()
            with averaged():
                result.val_loss, result.val_acc = validate(
                    model, validation_ids, validation_labels, args, pad_id, precision, device
                )
                kept.after_epoch(
                    epoch,
                    result.val_acc,
                    result.val_loss,
                    lambda: {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()},
                )
            print(f"val_loss: {result.val_loss:.4f} - val_acc: {result.val_acc:.2f}", flush=True)
            release_free_memory()
            progress.validation_ended()
        else:
            kept.after_epoch(epoch, None, None, dict)
        if epoch < args.epochs and args.keep_epoch != "best":  # best: the kept epoch is restored whatever stops
            ended_weights = None  # one copy at a time
            with averaged():
                ended_weights = trained_weights(model)
        print(
            f"train_examples_per_second: {result.examples_per_second:.2f} - epoch_seconds: {train_seconds:.1f} - "
            f"peak_rss_mb: {peak_rss_mb():.0f} - planned_steps_pct: {progress.trained_share(epoch):.1f}",
            flush=True,
        )
        results.append(result)
        if STOP.requested:
            print(f"stop_requested: after epoch {epoch}", flush=True)
            break

    if not results or (validation_reviews is not None and results[-1].val_acc is None):
        print("stopped before an epoch ended: no model saved", flush=True)
        return results
    saved = results[kept.epoch - 1]
    if kept.restore(model.load_state_dict):
        # the tuner's objective is the latest value printed: make it the saved model's (the prefix tells a reader
        # that counts epochs by these lines, such as the local SageMaker service, that no epoch ran)
        print(f"{KEPT_EPOCH_PREFIX} {saved.epoch} - val_loss: {saved.val_loss:.4f} - val_acc: {saved.val_acc:.2f}",
              flush=True)
    elif stopped_within_epoch and ended_weights is not None:
        model.load_state_dict(ended_weights, strict=False)  # the stopped epoch's partial updates undone
    elif average is not None:
        average.copy_to_model()
    save(model, tokenizer, args, env, results, saved, precision, progress)
    return results


def save(
    model: torch.nn.Module,
    tokenizer: object,
    args: argparse.Namespace,
    env: TrainingEnvironment,
    results: list[EpochResult],
    saved: EpochResult,
    precision: Precision,
    progress: TrainingProgress,
) -> None:
    env.model_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(env.model_dir))
    tokenizer.save_pretrained(str(env.model_dir))
    label_map = {
        "label2id": LABEL2ID,
        "id2label": {str(k): v for k, v in ID2LABEL.items()},
        "pooling": args.pooling,
        "max_seq_length": args.max_seq_length,
    }
    (env.model_dir / "label_map.json").write_text(json.dumps(label_map, indent=2) + "\n")
    summary = {
        "hyperparameters": {k: v for k, v in vars(args).items()},
        "saved_epoch": saved.epoch,
        "saved_val_acc": saved.val_acc,
        "precision": precision.name,
        "threads": torch.get_num_threads(),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "train_step_seconds": round(progress.seconds, 1),
        "job_seconds": round(progress.job_seconds(), 1),  # to the model saved (--max_train_seconds' span)
        "epochs": [asdict(r) for r in results],
    }
    (env.model_dir / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"saved_epoch: {saved.epoch} - model_dir: {env.model_dir}", flush=True)


def _write_failure(env: TrainingEnvironment, message: str) -> None:
    if env.failure_file.parent.is_dir():
        with contextlib.suppress(OSError):
            env.failure_file.write_text(message[:1024])


def main(argv: list[str] | None = None) -> int:
    env = TrainingEnvironment.from_environ()
    try:
        args = parse_args(argv)
    except SystemExit as exit_:  # a bad hyperparameter: SageMaker shows the failure file's text as the reason
        if isinstance(exit_.code, str):
            _write_failure(env, exit_.code)
        raise
    STOP.install()
    try:
        train(args, env, JOB_STARTED)
    except (ReviewDataError, ValueError) as error:
        message = f"{type(error).__name__}: {error}"
        print(f"error: {message}", file=sys.stderr, flush=True)
        _write_failure(env, message)
        return 1
    except Exception as error:
        _write_failure(env, f"{type(error).__name__}: {error}")
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
