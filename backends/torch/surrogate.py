"""Surrogate spike functions: Heaviside forward, a smooth pseudo-derivative backward.

Owned here rather than taken from Norse because Norse 1.1.0's SuperSpike backward
ignores its ``alpha`` and its threshold dispatch cannot be extended.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch

from neuromorph.errors import NeuromorphError


@functools.lru_cache(maxsize=None)
def _const(number: float) -> torch.Tensor:
    """``number`` as a 0-d float64 tensor. The spike functions run at every time step; an
    operation with a Python number wraps it into a new tensor on every call, which costs
    more than the arithmetic on these small populations. Same values, same rounding."""
    with torch.inference_mode(False):  # cached: must not become an inference-mode tensor
        return torch.tensor(number, dtype=torch.float64)


def _heaviside(x: torch.Tensor) -> torch.Tensor:
    """1.0 where x > 0 (strict), else 0.0."""
    return torch.gt(x, _const(0.0)).to(dtype=x.dtype)


class _Spike(torch.autograd.Function):
    """Heaviside forward (strict: x > 0 spikes); ``pseudo_grad`` shapes the backward."""

    @staticmethod
    def pseudo_grad(grad: torch.Tensor, x: torch.Tensor, alpha: float) -> torch.Tensor:
        """``grad`` times the pseudo-derivative at ``x``."""
        raise NotImplementedError

    @classmethod
    def forward(cls, ctx: Any, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return _heaviside(x)

    @classmethod
    def backward(cls, ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return cls.pseudo_grad(grad, x, ctx.alpha), None


class _FastSigmoid(_Spike):
    """SuperSpike (Zenke & Ganguli 2018): d/dx = 1 / (alpha |x| + 1)^2."""

    @staticmethod
    def pseudo_grad(grad: torch.Tensor, x: torch.Tensor, alpha: float) -> torch.Tensor:
        return grad / (_const(alpha) * x.abs() + _const(1.0)).square()


class _Triangle(_Spike):
    """Triangle (Bellec et al. 2018): d/dx = gamma * max(0, 1 - |x|), gamma = alpha here."""

    @staticmethod
    def pseudo_grad(grad: torch.Tensor, x: torch.Tensor, alpha: float) -> torch.Tensor:
        return grad * _const(alpha) * torch.relu(_const(1.0) - x.abs())


_FUNCTIONS = {"fast_sigmoid": _FastSigmoid, "triangle": _Triangle}
SURROGATES = tuple(_FUNCTIONS)
DEFAULT_ALPHA = {"fast_sigmoid": 10.0, "triangle": 0.3}
"""Each surrogate's usual sharpness: SuperSpike's 10, and Bellec et al.'s gamma = 0.3."""


@dataclass(frozen=True)
class Surrogate:
    """Which pseudo-derivative to use and its sharpness ``alpha``.

    ``x`` is the distance to threshold in units of the threshold's voltage, so the
    defaults suit thresholds of order 1.
    """

    name: str = "fast_sigmoid"
    alpha: float = 10.0

    def __post_init__(self) -> None:
        if self.name not in _FUNCTIONS:
            raise NeuromorphError(
                f"unknown surrogate '{self.name}' (known: {', '.join(SURROGATES)})"
            )
        if not self.alpha > 0:
            raise NeuromorphError(f"surrogate alpha must be > 0, got {self.alpha}")

    @classmethod
    def named(cls, name: str, alpha: float | None = None) -> "Surrogate":
        """``name`` with ``alpha``, or that surrogate's usual sharpness (DEFAULT_ALPHA)."""
        return cls(name, DEFAULT_ALPHA.get(name, 10.0) if alpha is None else alpha)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return _FUNCTIONS[self.name].apply(x, float(self.alpha))
        return _heaviside(x)  # no gradient wanted: the same spikes without autograd's overhead

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """The pseudo-derivative at ``x``: what the backward pass multiplies by (e-prop's psi)."""
        return _FUNCTIONS[self.name].pseudo_grad(torch.ones_like(x), x, float(self.alpha))
