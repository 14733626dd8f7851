"""The frozen bottom of the encoder run once per training row, its output kept so that the steps run only the layers
that train (train.py's ``--frozen_cache_mb``).

With the embeddings and the bottom N layers frozen (``--freeze_bert_layer N``), those layers compute the same
function of the same row in every epoch. Before the first step, train.py runs them once over every row its planned
batches draw (:meth:`FrozenFeatures.precompute`, in batches of similar length) and keeps their outputs; each step
then starts from the kept outputs of its rows and runs only the layers above, the pooling and the head. The bottom
runs in eval mode (no dropout), so that what it gives a row does not depend on when it ran; the layers that train
keep their dropout. Without dropout, the steps compute what they would compute without the cache. Parameters of the
encoder outside its numbered layers (MPNet's relative attention bias, which every layer reads) are frozen too, or
the kept outputs would be stale.

Outputs are kept until ``max_bytes`` is reached; a row past that runs the bottom at each of its steps, as without
the cache. A row's output is its tokens x the hidden width, in the autocast dtype: 1.5 KB a token for
all-mpnet-base-v2 in bf16 (655 MB for 5,537 reviews of 81 tokens on average).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from modeling import classification_logits
from review_data import collate
from torch import nn


class PassThroughEmbeddings(nn.Module):
    """Stands in for a model's embeddings while the kept hidden states are its input (``inputs_embeds``)."""

    def forward(self, input_ids=None, position_ids=None, token_type_ids=None, inputs_embeds=None, **kwargs):
        return inputs_embeds


class FrozenFeatures:
    """The output of ``model``'s embeddings and bottom ``frozen_layers`` layers, kept per training row."""

    def __init__(self, model: nn.Module, frozen_layers: bool | int, max_bytes: int,
                 dtype: torch.dtype | None = None) -> None:
        """``frozen_layers``: freeze_bert_layer's value, N or True (the whole encoder)."""
        base = model.base_model
        encoder = getattr(base, "encoder", None)
        layers = getattr(encoder, "layer", None)
        if layers is None or not hasattr(base, "embeddings"):
            raise ValueError(
                f"frozen_cache_mb needs an encoder with embeddings and numbered layers; {type(base).__name__} has none"
            )
        if frozen_layers is True:
            frozen_layers = len(layers)
        if not 0 <= frozen_layers <= len(layers):
            raise ValueError(
                f"frozen_cache_mb needs freeze_bert_layer between 0 (the embeddings) and the encoder's {len(layers)} "
                f"layers, got {frozen_layers}"
            )
        if any(p.requires_grad for p in base.embeddings.parameters()) or any(
            p.requires_grad for layer in list(layers)[:frozen_layers] for p in layer.parameters()
        ):
            raise ValueError(f"the embeddings and bottom {frozen_layers} layers must be frozen before they are kept")
        in_layers = {id(p) for p in layers.parameters()}
        for parameter in encoder.parameters():
            if id(parameter) not in in_layers:
                parameter.requires_grad_(False)
        self.model = model
        self.base = base
        self.encoder = encoder
        self.layers = layers
        self.bottom_layers = nn.ModuleList(list(layers)[:frozen_layers])
        self.top_layers = nn.ModuleList(list(layers)[frozen_layers:])
        self.device = next(model.parameters()).device
        self.max_bytes = max_bytes
        self.dtype = dtype
        self.kept: dict[int, torch.Tensor] = {}
        self.kept_bytes = 0
        self.computed_rows = 0  # bottom passes run, a row each
        self.reused_rows = 0  # rows that started from a kept output

    @contextlib.contextmanager
    def _swapped(self, layers: nn.ModuleList, embeddings: nn.Module | None = None) -> Iterator[None]:
        """The encoder runs ``layers`` only (and ``embeddings`` in place of its own) for the block."""
        own_embeddings = self.base.embeddings
        self.encoder.layer = layers
        if embeddings is not None:
            self.base.embeddings = embeddings
        try:
            yield
        finally:
            self.encoder.layer = self.layers
            self.base.embeddings = own_embeddings

    def _bottom(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The bottom's output for a batch, in eval mode and without a graph."""
        modules = [self.base.embeddings, *self.bottom_layers]
        modes = [module.training for module in modules]
        for module in modules:
            module.eval()
        try:
            with torch.no_grad(), self._swapped(self.bottom_layers):
                hidden = self.base(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        finally:
            for module, mode in zip(modules, modes, strict=True):
                module.train(mode)
        return hidden if self.dtype is None else hidden.to(self.dtype)

    def _keep(self, row: int, output: torch.Tensor) -> bool:
        size = output.numel() * output.element_size()
        if self.kept_bytes + size > self.max_bytes:
            return False
        self.kept[row] = output
        self.kept_bytes += size
        return True

    def precompute(
        self, rows: Sequence[int], token_ids: Sequence[Sequence[int]], pad_id: int, batch_size: int,
        stop: Callable[[], bool] = lambda: False,
    ) -> int:
        """Run the bottom once for ``rows`` (training rows, in the order training first draws them) and keep the
        outputs, in batches of similar length, until ``max_bytes`` is reached or ``stop()``; the rows kept."""
        first: dict[int, None] = dict.fromkeys(int(row) for row in rows if int(row) not in self.kept)
        room, chosen = self.max_bytes - self.kept_bytes, []
        for row in first:  # the rows that fit, by their size (tokens x width x bytes)
            size = len(token_ids[row]) * self._row_bytes_per_token()
            if size > room:
                break
            room -= size
            chosen.append(row)
        chosen.sort(key=lambda row: len(token_ids[row]))
        kept = 0
        for start in range(0, len(chosen), batch_size):
            if stop():
                break
            part = chosen[start : start + batch_size]
            batch = collate([token_ids[row] for row in part], [0] * len(part), pad_id)
            outputs = self._outputs(batch.input_ids.to(self.device), batch.attention_mask.to(self.device))
            kept += sum(self._keep(row, output) for row, output in zip(part, outputs, strict=True))
        return kept

    def _row_bytes_per_token(self) -> int:
        return self.model.config.hidden_size * (self.dtype or torch.float32).itemsize

    def _outputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        """The bottom's output for each row of a batch, without its padding."""
        lengths = attention_mask.sum(dim=1).tolist()
        width = max(lengths)
        computed = self._bottom(input_ids[:, :width], attention_mask[:, :width])
        self.computed_rows += len(lengths)
        return [computed[position, :length].clone() for position, length in enumerate(lengths)]

    def hidden_states(
        self, rows: Sequence[int], input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """The bottom's output for the batch whose row ``i`` is training row ``rows[i]``, padded with zeros as
        ``attention_mask`` pads: kept rows are read, the others computed (and kept while there is room)."""
        rows = [int(row) for row in rows]
        missing = [i for i, row in enumerate(rows) if row not in self.kept]
        fresh: dict[int, torch.Tensor] = {}
        if missing:
            outputs = self._outputs(input_ids[missing], attention_mask[missing])
            for i, output in zip(missing, outputs, strict=True):
                fresh[i] = output
                self._keep(rows[i], output)
        self.reused_rows += len(rows) - len(missing)
        outputs = [fresh[i] if i in fresh else self.kept[row] for i, row in enumerate(rows)]
        hidden = outputs[0].new_zeros((len(rows), input_ids.shape[1], outputs[0].shape[-1]))
        for i, output in enumerate(outputs):
            hidden[i, : output.shape[0]] = output
        return hidden

    def logits(self, hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
        """Class logits from the bottom's output: the layers above it, then the pooling and the head."""
        with self._swapped(self.top_layers, PassThroughEmbeddings()):
            return classification_logits(self.model, None, attention_mask, pooling, inputs_embeds=hidden)
