"""clipped_step: clipping folded into a fused AdamW's pass leaves what clip_grad_norm_ then step() leave."""

from __future__ import annotations

import pytest
import torch
from clipped_step import clipped_step, folds_clipping


def _pair(fused: bool) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.optim.Optimizer, torch.optim.Optimizer]:
    torch.manual_seed(0)
    params = [torch.randn(300, 40, requires_grad=True), torch.randn(40, requires_grad=True)]
    twins = [p.detach().clone().requires_grad_() for p in params]
    kwargs = {"lr": 1e-2, "weight_decay": 0.01}
    return (
        params,
        twins,
        torch.optim.AdamW(params, fused=fused, **kwargs),
        torch.optim.AdamW(twins, foreach=True, **kwargs),
    )


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("size", [50.0, 1e-3])  # gradients over the bound, then under it
def test_parameters_and_gradients_end_as_clip_then_step_leave_them(fused: bool, size: float) -> None:
    params, twins, optimizer, reference = _pair(fused)
    assert folds_clipping(optimizer) is fused
    for step in range(3):
        grads = [torch.randn_like(p) * size for p in params]
        for p, t, g in zip(params, twins, grads, strict=True):
            p.grad, t.grad = g.clone(), g.clone()

        norm = clipped_step(optimizer, params, 1.0)
        expected_norm = torch.nn.utils.clip_grad_norm_(twins, 1.0)
        reference.step()

        torch.testing.assert_close(norm, expected_norm)
        for p, t in zip(params, twins, strict=True):
            torch.testing.assert_close(p, t, msg=f"step {step}")
            torch.testing.assert_close(p.grad, t.grad, msg=f"step {step}")  # the gradients clipped too
        assert getattr(optimizer, "grad_scale", None) is None  # nothing left for a later step


def test_no_bound_is_a_plain_step() -> None:
    params, twins, optimizer, reference = _pair(fused=True)
    for p, t in zip(params, twins, strict=True):
        p.grad = torch.full_like(p, 100.0)
        t.grad = torch.full_like(t, 100.0)
    assert clipped_step(optimizer, params, 0.0).item() == 0.0
    reference.step()
    for p, t in zip(params, twins, strict=True):
        torch.testing.assert_close(p, t)
        assert torch.equal(p.grad, torch.full_like(p, 100.0))


def test_a_failing_step_leaves_no_divisor_behind() -> None:
    params, _, optimizer, _ = _pair(fused=True)
    for p in params:
        p.grad = torch.full_like(p, 3.0)
    seen = []

    def refused(closure=None):
        seen.append(optimizer.grad_scale)
        raise RuntimeError("refused")

    optimizer.step = refused
    with pytest.raises(RuntimeError, match="refused"):
        clipped_step(optimizer, params, 1.0)
    norm = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in params]))
    torch.testing.assert_close(seen, [norm + 1e-6])  # the step was handed the divisor
    assert getattr(optimizer, "grad_scale", None) is None


def test_parameters_other_than_the_optimizer_s_are_clipped_first() -> None:
    params, twins, optimizer, reference = _pair(fused=True)
    for p, t in zip(params, twins, strict=True):
        p.grad, t.grad = torch.full_like(p, 2.0), torch.full_like(t, 2.0)
    # the norm over the first parameter only, as clip_grad_norm_ would take it; the step moves both
    clipped_step(optimizer, params[:1], 1.0)
    torch.nn.utils.clip_grad_norm_(twins[:1], 1.0)
    reference.step()
    for p, t in zip(params, twins, strict=True):
        torch.testing.assert_close(p, t)
        torch.testing.assert_close(p.grad, t.grad)
