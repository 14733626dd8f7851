"""The query, key and value projections of an attention layer as one matrix product.

Each attention layer of BERT, RoBERTa, MPNet and DistilBERT projects the same hidden states three times, with three
separate ``nn.Linear`` modules. Under bf16 autocast each of the three calls casts that fp32 input to bf16 again (the
autocast cache keeps only the weights' casts), its backward pass casts a gradient back and adds the three, and three
narrow products keep AMX less busy than one wide one. Here the query's call computes all three outputs with one
product of the input and the three weights stacked, and the key's and the value's calls with the same input take
their share. The weights stay in their own modules, so the model saves, loads and freezes as before; the result is
the same up to the order of float additions.

Only the query's input is shared: the key's and the value's calls with that same input object, in the same grad and
autocast mode, each once after the query's, take their share; any other call (cross-attention; another mode; a second
call) is its own module's product. The shared outputs are let go once the three are served. The modules are held
weakly, so a fused model is freed as soon as it is no longer used.
"""

from __future__ import annotations

import copy
import weakref

import torch
from torch import nn
from torch.nn import functional as F

# the names of an attention layer's three projections, by model family
PROJECTION_NAMES: tuple[tuple[str, str, str], ...] = (
    ("query", "key", "value"),  # BERT, RoBERTa (and MiniLM, a BERT)
    ("q", "k", "v"),  # MPNet
    ("q_lin", "k_lin", "v_lin"),  # DistilBERT
)


def supported() -> bool:
    """Whether this PyTorch tells the autocast state by device type (2.4 and later: older SageMaker images lack it)."""
    return hasattr(torch, "get_autocast_dtype")


def _mode(x: torch.Tensor) -> tuple:
    device = x.device.type
    autocast = torch.is_autocast_enabled(device)
    return (torch.is_grad_enabled(), autocast, torch.get_autocast_dtype(device) if autocast else None)


class SharedInputProjections:
    """Serves ``linears[i](x)`` for the same ``x`` from one product; see the module's docstring."""

    def __init__(self, linears: list[nn.Linear], sizes: list[int] | None = None) -> None:
        # ``sizes`` given: the modules may be copies still being made (deepcopy, pickle), their attributes not set yet
        self._linears = [weakref.ref(linear) for linear in linears]
        self._sizes = list(sizes) if sizes is not None else [linear.out_features for linear in linears]
        self._key: tuple | None = None
        self._outputs: tuple[torch.Tensor, ...] = ()
        self._served: set[int] = set()

    @property
    def linears(self) -> list[nn.Linear]:
        return [ref() for ref in self._linears]

    def __deepcopy__(self, memo: dict) -> SharedInputProjections:
        # a model copied whole: the copy's modules (the memo holds those already copied), not this model's; in the
        # memo first, so that the copies of the three modules share this one copy
        clone = memo[id(self)] = SharedInputProjections.__new__(SharedInputProjections)
        clone.__init__([copy.deepcopy(linear, memo) for linear in self.linears], self._sizes)
        return clone

    def __reduce__(self) -> tuple:
        # pickled (torch.save of a whole model) with its modules, not the weak references
        return SharedInputProjections, (self.linears, self._sizes)

    def _compute(self, x: torch.Tensor, autocast_dtype: torch.dtype | None) -> tuple[torch.Tensor, ...]:
        linears = self.linears
        weights = [linear.weight for linear in linears]
        biases = [linear.bias for linear in linears]
        if autocast_dtype is not None and x.is_floating_point():
            # each weight cast once, then stacked in the narrower type (not stacked in fp32, then cast)
            weights = [weight.to(autocast_dtype) for weight in weights]
            biases = [bias.to(autocast_dtype) if bias is not None else None for bias in biases]
        weight = torch.cat(weights)
        bias = torch.cat(biases) if biases[0] is not None else None
        return F.linear(x, weight, bias).split(self._sizes, dim=-1)

    def _forget(self) -> None:
        self._key, self._outputs, self._served = None, (), set()

    def project(self, index: int, x: torch.Tensor) -> torch.Tensor:
        mode = _mode(x)
        if index == 0:  # the query: the three outputs for this input
            if any(linear is None for linear in self.linears):  # a key or value module gone (replaced; a copy of one)
                self._forget()
                query = self.linears[0]
                return F.linear(x, query.weight, query.bias)
            self._outputs = self._compute(x, mode[2])
            self._key, self._served = (x, mode), {0}
            return self._outputs[0]
        key = self._key
        if key is None or key[0] is not x or key[1] != mode or index in self._served:
            self._forget()  # not the query's input: this module's own product
            linear = self.linears[index]
            return F.linear(x, linear.weight, linear.bias)
        self._served.add(index)
        output = self._outputs[index]
        if len(self._served) == len(self._sizes):
            self._forget()  # all three served: hold neither the input nor the outputs past this layer
        return output


class _Projection:
    """A ``forward`` for one of the three modules: its share of the shared product."""

    def __init__(self, shared: SharedInputProjections, index: int) -> None:
        self.shared = shared
        self.index = index

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.shared.project(self.index, x)


def _cross_attention(name: str, module: nn.Module) -> bool:
    """Whether the key and value of ``module`` read another input than its query (BERT's decoder layers: the
    ``crossattention`` module, whose parent carries ``is_cross_attention``). Left unfused so that its query does not
    compute a key and value no call takes; were one missed, ``project`` still computes each of its own products."""
    return (getattr(module, "is_cross_attention", False) or "CrossAttention" in type(module).__name__
            or "crossattention" in name.lower().split("."))


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
    how many layers (none where this PyTorch is too old). Only the modules' ``forward`` changes: parameters, names and
    state dict stay as they are."""
    if not supported():
        return 0
    fused = 0
    for path, module in model.named_modules():
        if _cross_attention(path, module):
            continue
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
