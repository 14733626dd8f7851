"""The query, key and value projections of an attention layer as one matrix product.

Each attention layer of BERT, RoBERTa, MPNet and DistilBERT projects the same hidden states three times, with three
separate ``nn.Linear`` modules. Under bf16 autocast each of the three calls casts that fp32 input to bf16 again (the
autocast cache keeps only the weights' casts), its backward pass casts a gradient back and adds the three, and three
narrow products keep AMX less busy than one wide one. Here the first of the three calls computes all three outputs
with one product of the input and the three weights stacked, and the other two calls with the same input take their
share. The weights stay in their own modules, so the model saves, loads and freezes as before; the result is the same
up to the order of float additions.

A call with another input (or another grad or autocast mode), or a projection called twice for the same input,
computes afresh: only a repeat of the same input object is shared.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# the names of an attention layer's three projections, by model family
PROJECTION_NAMES: tuple[tuple[str, str, str], ...] = (
    ("query", "key", "value"),  # BERT, RoBERTa (and MiniLM, a BERT)
    ("q", "k", "v"),  # MPNet
    ("q_lin", "k_lin", "v_lin"),  # DistilBERT
)


def _mode(x: torch.Tensor) -> tuple:
    device = x.device.type
    autocast = torch.is_autocast_enabled(device)
    return (torch.is_grad_enabled(), autocast, torch.get_autocast_dtype(device) if autocast else None)


class SharedInputProjections:
    """Serves ``linears[i](x)`` for the same ``x`` from one product; see the module's docstring."""

    def __init__(self, linears: list[nn.Linear]) -> None:
        self.linears = linears
        self._sizes = [linear.out_features for linear in linears]
        self._key: tuple | None = None
        self._outputs: tuple[torch.Tensor, ...] = ()
        self._served: set[int] = set()

    def _compute(self, x: torch.Tensor, autocast_dtype: torch.dtype | None) -> tuple[torch.Tensor, ...]:
        weights = [linear.weight for linear in self.linears]
        biases = [linear.bias for linear in self.linears]
        if autocast_dtype is not None and x.is_floating_point():
            # each weight cast once, then stacked in the narrower type (not stacked in fp32, then cast)
            weights = [weight.to(autocast_dtype) for weight in weights]
            biases = [bias.to(autocast_dtype) if bias is not None else None for bias in biases]
        weight = torch.cat(weights)
        bias = torch.cat(biases) if biases[0] is not None else None
        return F.linear(x, weight, bias).split(self._sizes, dim=-1)

    def project(self, index: int, x: torch.Tensor) -> torch.Tensor:
        mode = _mode(x)
        key = (x, mode)
        if self._key is None or self._key[0] is not x or self._key[1] != mode or index in self._served:
            self._outputs = self._compute(x, mode[2])
            self._key, self._served = key, set()
        self._served.add(index)
        output = self._outputs[index]
        if len(self._served) == len(self.linears):
            # all three served: hold neither the input nor the outputs past this layer
            self._key, self._outputs, self._served = None, (), set()
        return output


class _Projection:
    """A ``forward`` for one of the three modules: its share of the shared product."""

    def __init__(self, shared: SharedInputProjections, index: int) -> None:
        self.shared = shared
        self.index = index

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.shared.project(self.index, x)


def _fusable(linears: list[nn.Module]) -> bool:
    if not all(type(linear) is nn.Linear for linear in linears):
        return False
    first = linears[0]
    return all(
        linear.in_features == first.in_features
        and linear.weight.dtype == first.weight.dtype
        and linear.weight.device == first.weight.device
        and linear.weight.requires_grad == first.weight.requires_grad
        and (linear.bias is None) == (first.bias is None)
        for linear in linears
    )


def fuse_projections(model: nn.Module) -> int:
    """Make each attention layer's query, key and value modules of ``model`` share one product (module docstring);
    how many layers. Only the modules' ``forward`` changes: parameters, names and state dict stay as they are."""
    fused = 0
    for module in model.modules():
        for names in PROJECTION_NAMES:
            linears = [getattr(module, name, None) for name in names]
            if any(linear is None for linear in linears) or not _fusable(linears):
                continue
            shared = SharedInputProjections(linears)
            for index, linear in enumerate(linears):
                linear.forward = _Projection(shared, index)
            fused += 1
            break
    return fused
