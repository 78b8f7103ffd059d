"""Discretisation: the one place where the time step ``dt`` enters.

The IR holds continuous-time parameters (NIR convention, seconds). Every backend runs a
discrete-time update instead, and they only agree if they all derive its coefficients
the same way. These pure functions do that: forward Euler of each node's ODE (see
docs/semantics.md), with the input held constant over the step.

In these coefficients one step of each neuron type reads (``X`` = summed input)::

    IF       v = v + gain * X
    LIF      v = (1 - dv) * v + leak + gain * X
    CubaLIF  i = (1 - di) * i + gain_i * X;   v = (1 - dv) * v + leak + gain_v * i
    ALIF     v = (1 - dv) * v + leak + gain * X;   a = (1 - da) * a + z
    LI       v = (1 - dv) * v + leak + gain * X

A plastic connection's rule (neuromorph.ir.plasticity) becomes per-step coefficients too
(:func:`discretize_plasticity`): trace decays ``d = dt/tau`` (a trace is
``x = (1 - d) * x + activity``) and, for rules whose learning rate is a rate in 1/s,
the per-step rate ``dt * lr`` (docs/semantics.md section 6).

``dt`` comes from :func:`resolve_dt`: an explicit value, else ``graph.dt``, else
:data:`DEFAULT_DT` (1 ms, Norse's default step).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Union

import numpy as np

from .errors import IRError
from .ir import (
    ALIF, IF, LI, LIF, STDP, CubaLIF, Delay, EProp, Graph, Node, Plasticity, RewardSTDP, ThreeFactor,
    check_dt,
)

DEFAULT_DT: float = 1e-3
"""Time step (s) used when neither the caller nor the graph gives one (Norse's default)."""

DECAY_TOLERANCE: float = 1e-6
"""A decay factor dt/tau may exceed 1 by this much (relative): float32 round-off in an
imported file (tau written as dt/(1-beta) with beta = 0) must not be refused."""

DELAY_TOLERANCE: float = 1e-6
"""delay/dt must lie within this relative distance of an integer number of steps."""


def _frozen(arr: np.ndarray) -> np.ndarray:
    out = np.array(arr, dtype=np.float64)
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class IFCoefficients:
    """``v = v + gain * X``; spike if ``v > v_threshold``; then ``v = v_reset``."""

    gain: np.ndarray  # dt * r
    v_threshold: np.ndarray
    v_reset: np.ndarray
    v_init: np.ndarray  # v_reset
    reset: str = "value"  # "value" or "subtract" (docs/semantics.md, section 3)


@dataclass(frozen=True)
class LIFCoefficients:
    """``v = (1 - dv) v + leak + gain X``; spike if ``v > v_threshold``; then ``v = v_reset``."""

    dv: np.ndarray  # dt / tau
    gain: np.ndarray  # dt * r / tau
    leak: np.ndarray  # dt * v_leak / tau
    v_threshold: np.ndarray
    v_reset: np.ndarray
    v_init: np.ndarray  # v_leak
    reset: str = "value"  # "value" or "subtract" (docs/semantics.md, section 3)


@dataclass(frozen=True)
class CubaLIFCoefficients:
    """``i = (1 - di) i + gain_i X``, then ``v = (1 - dv) v + leak + gain_v i`` (new i)."""

    di: np.ndarray  # dt / tau_syn
    gain_i: np.ndarray  # dt * w_in / tau_syn
    dv: np.ndarray  # dt / tau_mem
    gain_v: np.ndarray  # dt * r / tau_mem
    leak: np.ndarray  # dt * v_leak / tau_mem
    v_threshold: np.ndarray
    v_reset: np.ndarray
    v_init: np.ndarray  # v_leak
    reset: str = "value"  # "value" or "subtract" (docs/semantics.md, section 3)


@dataclass(frozen=True)
class ALIFCoefficients:
    """LIF membrane; threshold ``v_threshold + beta * a``; ``a = (1 - da) a + z``."""

    dv: np.ndarray  # dt / tau_mem
    gain: np.ndarray  # dt * r / tau_mem
    leak: np.ndarray  # dt * v_leak / tau_mem
    da: np.ndarray  # dt / tau_adapt
    beta: np.ndarray
    v_threshold: np.ndarray
    v_reset: np.ndarray
    v_init: np.ndarray  # v_leak
    reset: str = "value"  # "value" or "subtract" (docs/semantics.md, section 3)


@dataclass(frozen=True)
class LICoefficients:
    """``v = (1 - dv) v + leak + gain X``; the output is ``v``."""

    dv: np.ndarray  # dt / tau
    gain: np.ndarray  # dt * r / tau
    leak: np.ndarray  # dt * v_leak / tau
    v_init: np.ndarray  # v_leak


@dataclass(frozen=True)
class DelayCoefficients:
    """``y[t] = X[t - steps]`` elementwise; ``steps = round(delay / dt)``."""

    steps: np.ndarray  # int64, broadcastable to the node's shape


Coefficients = Union[
    IFCoefficients, LIFCoefficients, CubaLIFCoefficients, ALIFCoefficients, LICoefficients,
    DelayCoefficients,
]


# ------------------------------------------------------------------------------ dt


def resolve_dt(graph: Graph, dt: float | None = None) -> float:
    """The step to simulate ``graph`` with: ``dt`` if given, else ``graph.dt``, else
    :data:`DEFAULT_DT` (1e-3 s). Every backend calls this, so they all pick the same."""
    if dt is not None:
        return check_dt(dt)
    if graph.dt is not None:
        return check_dt(graph.dt)
    return DEFAULT_DT


# ----------------------------------------------------------------------- neurons


def _decay(dt: float, tau: np.ndarray, tau_name: str, node: str | None) -> np.ndarray:
    """``dt / tau``, refused above 1: forward Euler would overshoot the fixed point."""
    ratio = dt / tau
    worst = float(np.max(ratio)) if ratio.size else 0.0
    if worst > 1.0 + DECAY_TOLERANCE:
        raise IRError(
            f"dt/{tau_name} = {worst:g} > 1 at dt = {dt:g} s (forward Euler would "
            f"overshoot): use a dt of at most {tau_name} ({float(np.min(tau)):g} s)",
            node=node,
        )
    return _frozen(ratio)


def discretize_if(node: IF, dt: float, name: str | None = None) -> IFCoefficients:
    """IF: ``dv/dt = r I`` gives ``v += dt * r * X``; no decay, so no limit on dt."""
    dt = check_dt(dt)
    return IFCoefficients(
        gain=_frozen(dt * node.r),
        v_threshold=_frozen(node.v_threshold),
        v_reset=_frozen(node.v_reset),
        v_init=_frozen(node.v_reset),
        reset=node.reset,
    )


def discretize_lif(node: LIF, dt: float, name: str | None = None) -> LIFCoefficients:
    """LIF: ``tau dv/dt = v_leak - v + r I``."""
    dt = check_dt(dt)
    dv = _decay(dt, node.tau, "tau", name)
    return LIFCoefficients(
        dv=dv,
        gain=_frozen(dv * node.r),
        leak=_frozen(dv * node.v_leak),
        v_threshold=_frozen(node.v_threshold),
        v_reset=_frozen(node.v_reset),
        v_init=_frozen(node.v_leak),
        reset=node.reset,
    )


def discretize_cuba_lif(node: CubaLIF, dt: float, name: str | None = None) -> CubaLIFCoefficients:
    """CubaLIF: ``tau_syn di/dt = -i + w_in I``; ``tau_mem dv/dt = v_leak - v + r i``."""
    dt = check_dt(dt)
    di = _decay(dt, node.tau_syn, "tau_syn", name)
    dv = _decay(dt, node.tau_mem, "tau_mem", name)
    return CubaLIFCoefficients(
        di=di,
        gain_i=_frozen(di * node.w_in),
        dv=dv,
        gain_v=_frozen(dv * node.r),
        leak=_frozen(dv * node.v_leak),
        v_threshold=_frozen(node.v_threshold),
        v_reset=_frozen(node.v_reset),
        v_init=_frozen(node.v_leak),
        reset=node.reset,
    )


def discretize_alif(node: ALIF, dt: float, name: str | None = None) -> ALIFCoefficients:
    """ALIF: LIF membrane plus ``da/dt = -a / tau_adapt + S(t)`` (a spike adds 1)."""
    dt = check_dt(dt)
    dv = _decay(dt, node.tau_mem, "tau_mem", name)
    da = _decay(dt, node.tau_adapt, "tau_adapt", name)
    return ALIFCoefficients(
        dv=dv,
        gain=_frozen(dv * node.r),
        leak=_frozen(dv * node.v_leak),
        da=da,
        beta=_frozen(node.beta),
        v_threshold=_frozen(node.v_threshold),
        v_reset=_frozen(node.v_reset),
        v_init=_frozen(node.v_leak),
        reset=node.reset,
    )


def discretize_li(node: LI, dt: float, name: str | None = None) -> LICoefficients:
    """LI: ``tau dv/dt = v_leak - v + r I``; no threshold."""
    dt = check_dt(dt)
    dv = _decay(dt, node.tau, "tau", name)
    return LICoefficients(
        dv=dv,
        gain=_frozen(dv * node.r),
        leak=_frozen(dv * node.v_leak),
        v_init=_frozen(node.v_leak),
    )


# ------------------------------------------------------------------------- delay


def _whole_steps(delays: np.ndarray, dt: float) -> bool:
    q = delays / dt
    return bool(np.all(np.abs(q - np.round(q)) <= DELAY_TOLERANCE * np.maximum(1.0, q)))


def _suggest_dt(delays: np.ndarray, dt: float) -> float | None:
    """A dt that makes every delay a whole number of steps: preferably dt/m (keeps the
    numbers round), else the largest one below dt."""
    positive = delays[delays > 0]
    if positive.size == 0:
        return None
    for m in range(2, 1001):
        if _whole_steps(positive, dt / m):
            return dt / m
    first = float(positive.flat[0])
    k0 = max(1, math.ceil(first / dt - DELAY_TOLERANCE))
    for k in range(k0, k0 + 10_000):
        if _whole_steps(positive, first / k):
            return first / k
    return None


def delay_steps(node: Delay, dt: float, name: str | None = None) -> np.ndarray:
    """``round(delay / dt)`` as int64; refuses a delay that is not a whole number of steps
    (rounding it silently would change the network's timing)."""
    dt = check_dt(dt)
    q = node.delay / dt
    steps = np.round(q)
    off = np.abs(q - steps) > DELAY_TOLERANCE * np.maximum(1.0, np.abs(q))
    if np.any(off):
        bad = float(node.delay[off].flat[0])
        hint = _suggest_dt(np.asarray(node.delay, dtype=np.float64), dt)
        fix = f"use a dt that divides every delay, e.g. {hint:g} s" if hint else (
            "use a dt that divides every delay"
        )
        raise IRError(
            f"delay {bad:g} s is {bad / dt:g} steps at dt = {dt:g} s, not a whole number: {fix}",
            node=name,
        )
    out = steps.astype(np.int64)
    out.setflags(write=False)
    return out


def discretize_delay(node: Delay, dt: float, name: str | None = None) -> DelayCoefficients:
    return DelayCoefficients(steps=delay_steps(node, dt, name))


# ----------------------------------------------------------------------- dispatch

_RULES: dict[type[Node], Callable[..., Coefficients]] = {
    IF: discretize_if,
    LIF: discretize_lif,
    CubaLIF: discretize_cuba_lif,
    ALIF: discretize_alif,
    LI: discretize_li,
    Delay: discretize_delay,
}


def discretize_node(node: Node, dt: float, name: str | None = None) -> Coefficients | None:
    """Discrete coefficients of one node, or None for nodes that do not depend on dt
    (Input, Output, Affine, Linear, Scale, convolutions, pooling, Flatten)."""
    for node_type, rule in _RULES.items():
        if isinstance(node, node_type):
            return rule(node, dt, name)
    return None


def discretize_graph(graph: Graph, dt: float | None = None) -> dict[str, Coefficients]:
    """Coefficients of every dt-dependent node of ``graph`` at ``resolve_dt(graph, dt)``."""
    step = resolve_dt(graph, dt)
    out: dict[str, Coefficients] = {}
    for name, node in graph.nodes.items():
        coeffs = discretize_node(node, step, name)
        if coeffs is not None:
            out[name] = coeffs
    return out


# -------------------------------------------------------------------- plasticity


@dataclass(frozen=True)
class PlasticityCoefficients:
    """What every rule shares: weights change at the end of every ``t_epoch``-th step,
    clipped to [w_min, w_max] (None: unbounded); the increment of step t joins the pending
    sum at the end of step t + ``delay`` (the learning latency, docs/semantics.md section 6)."""

    t_epoch: int
    w_min: float | None
    w_max: float | None
    delay: int = field(default=0, kw_only=True)


@dataclass(frozen=True)
class STDPCoefficients(PlasticityCoefficients):
    """``xbar = (1-dx) xbar + x``; ``ybar = (1-dy) ybar + z``;
    ``dW = lr (a_plus z xbar - a_minus ybar x)``."""

    lr: float
    a_plus: float
    a_minus: float
    dx: float  # dt / tau_plus
    dy: float  # dt / tau_minus


@dataclass(frozen=True)
class RewardSTDPCoefficients(PlasticityCoefficients):
    """STDP's traces and pairing into ``c = (1-dc) c + pairing``; ``dW = rate r c``."""

    rate: float  # dt * lr
    a_plus: float
    a_minus: float
    dx: float  # dt / tau_plus
    dy: float  # dt / tau_minus
    dc: float  # dt / tau_e


@dataclass(frozen=True)
class ThreeFactorCoefficients(PlasticityCoefficients):
    """``xbar = (1-dx) xbar + x``; ``dW = rate err xbar``."""

    rate: float  # dt * lr
    dx: float  # dt / tau_pre


@dataclass(frozen=True)
class EPropCoefficients(PlasticityCoefficients):
    """LIF eligibility (the post's own dv, gain) filtered by ``(1-dk)``; ``dW = rate L ebar``."""

    rate: float  # dt * lr
    dk: float  # dt / tau_out
    gamma: float
    feedback: np.ndarray | None  # [n_out, n_err]; None: L = error


def _trace_decay(dt: float, rule: Plasticity, tau_name: str, node: str | None) -> float:
    return float(_decay(dt, np.float64(getattr(rule, tau_name)), tau_name, node))


def _common(rule: Plasticity) -> dict:
    return {"t_epoch": rule.t_epoch, "w_min": rule.w_min, "w_max": rule.w_max, "delay": rule.delay}


def discretize_stdp(rule: STDP, dt: float, name: str | None = None) -> STDPCoefficients:
    """STDP: pairing amplitudes are per spike pair (no dt); the traces decay by dt/tau."""
    dt = check_dt(dt)
    return STDPCoefficients(**_common(rule), lr=rule.lr, a_plus=rule.a_plus, a_minus=rule.a_minus,
                            dx=_trace_decay(dt, rule, "tau_plus", name),
                            dy=_trace_decay(dt, rule, "tau_minus", name))


def discretize_reward_stdp(rule: RewardSTDP, dt: float, name: str | None = None) -> RewardSTDPCoefficients:
    """Reward-modulated STDP: ``dW/dt = lr r c`` gives ``dW = dt lr r c`` per step."""
    dt = check_dt(dt)
    return RewardSTDPCoefficients(**_common(rule), rate=dt * rule.lr, a_plus=rule.a_plus,
                                  a_minus=rule.a_minus, dx=_trace_decay(dt, rule, "tau_plus", name),
                                  dy=_trace_decay(dt, rule, "tau_minus", name),
                                  dc=_trace_decay(dt, rule, "tau_e", name))


def discretize_three_factor(rule: ThreeFactor, dt: float, name: str | None = None) -> ThreeFactorCoefficients:
    """Error-modulated rule: ``dW/dt = lr err xbar`` gives ``dW = dt lr err xbar`` per step."""
    dt = check_dt(dt)
    return ThreeFactorCoefficients(**_common(rule), rate=dt * rule.lr,
                                   dx=_trace_decay(dt, rule, "tau_pre", name))


def discretize_eprop(rule: EProp, dt: float, name: str | None = None) -> EPropCoefficients:
    """e-prop: ``dW = dt lr L ebar`` per step; ebar filtered with dt/tau_out."""
    dt = check_dt(dt)
    return EPropCoefficients(**_common(rule), rate=dt * rule.lr, dk=_trace_decay(dt, rule, "tau_out", name),
                             gamma=rule.gamma, feedback=rule.feedback)


_PLASTICITY_RULES: dict[type[Plasticity], Callable[..., PlasticityCoefficients]] = {
    STDP: discretize_stdp,
    RewardSTDP: discretize_reward_stdp,
    ThreeFactor: discretize_three_factor,
    EProp: discretize_eprop,
}


def discretize_plasticity(rule: Plasticity, dt: float, name: str | None = None) -> PlasticityCoefficients:
    """Per-step coefficients of a connection's learning rule (``name``: the connection)."""
    return _PLASTICITY_RULES[type(rule)](rule, dt, name)


def discretize_plasticities(graph: Graph, dt: float | None = None) -> dict[str, PlasticityCoefficients]:
    """Coefficients of the rule of every plastic connection of ``graph``, by connection name."""
    step = resolve_dt(graph, dt)
    return {name: discretize_plasticity(node.plasticity, step, name)  # type: ignore[attr-defined]
            for name, node in graph.nodes.items() if getattr(node, "plasticity", None) is not None}
