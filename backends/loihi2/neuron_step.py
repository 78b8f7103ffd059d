"""One chip step of a neuron population, float or fixed point (numpy only).

Shared by the Lava process models (lava/process.py) and the numpy chip model (chip_model.py), so
the neuron arithmetic is written once; the synapses (Lava's Dense / DelayDense) are
Lava's own and are checked against the simulator's copy of their arithmetic in tests.
"""
from __future__ import annotations

import numpy as np


def init_float(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    n = params["v_init"].shape[0]
    return {"u": np.zeros(n), "v": params["v_init"].astype(np.float64).copy(), "a": np.zeros(n)}


def step_float(params: dict[str, np.ndarray], state: dict[str, np.ndarray], a_in: np.ndarray,
               spiking: bool, subtract: bool = False) -> np.ndarray:
    """Lava-float style update in shifted coordinates (see netlist.py). The reset sets
    ``v = 0`` where a spike happened, or with ``subtract`` ``v = v - (vth + beta*a)``
    (the threshold of the test: the IR's reset by subtraction, shifted)."""
    state["u"] = state["u"] * (1.0 - params["du"]) + a_in + params["bias_u"]
    v = state["v"] * (1.0 - params["dv"]) + state["u"] + params["bias_v"]
    if not spiking:
        state["v"] = v
        return np.zeros_like(v)
    threshold = params["vth"] + params["beta"] * state["a"]
    s = v > threshold
    state["v"] = np.where(s, v - threshold, v) if subtract else np.where(s, 0.0, v)
    state["a"] = state["a"] * (1.0 - params["da"]) + s
    return s.astype(np.float64)


# ---------------------------------------------------------------- fixed point
#
# Integer update of one population, bit for bit Lava's ``AbstractPyLifModelFixed`` /
# ``PyLifModelBitAcc`` (lava/proc/lif/models.py) when bias_u = 0 and a_inc = 0, with
# the same numpy dtypes in the same order so that even overflow behaves the same.
# Two extensions for our netlist, both integer multiply/shift/add as a Loihi 2
# programmable neuron can do them (see docs in quantize.py):
#   bias_u   a constant drive into the current u (an Affine bias in front of a
#            current-based neuron enters through the synaptic filter);
#   a        an adaptation trace (ALIF): a = decay_12bit(a, da) + a_inc * s, saturating
#            at 24 bits; threshold = (vth << 6) + (beta_mant * a) >> beta_shift.
#
# params (int64 arrays, one value per neuron; quantize.QuantizedNetlist.populations):
#   du, dv, da   12-bit decays 0..4095: u keeps (4096 - (du + 1))/4096, v keeps
#                (4096 - dv)/4096, a keeps (4096 - da)/4096 per step
#   bias_u       24-bit signed (0 where folded into bias_v)
#   bias_mant    13-bit signed, bias_exp 0..7: bias_v = bias_mant << bias_exp
#   vth          17-bit unsigned; the membrane is compared with vth << 6
#   v_init       24-bit signed initial membrane
#   a_inc        adaptation increment per spike (0: no adaptation)
#   beta_mant    13-bit signed, beta_shift signed: threshold term (beta_mant*a) >> beta_shift
#                (a negative shift is a left shift)

UV_MAX = 2**23  # Lava's max_uv_val: u and v are 24-bit signed
DECAY_UNITY = 2**12
VTH_SHIFT = 6
ACT_SHIFT = 6
FLOAT_PARAMS = ("du", "dv", "bias_u", "bias_v", "vth", "v_init", "da", "beta")
"""Per-neuron parameters of ``step_float`` (the float netlist's Population fields)."""

FIXED_PARAMS = ("du", "dv", "bias_u", "bias_mant", "bias_exp", "vth", "v_init", "da", "a_inc",
                "beta_mant", "beta_shift")


def _decay(x: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Lava's decay: int64 product, magnitude shifted right by 12 (rounds towards 0)."""
    prod = x.astype(np.int64) * keep
    return (np.sign(prod) * np.right_shift(np.abs(prod), 12)).astype(np.int32)


def init_fixed(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    n = params["v_init"].shape[0]
    return {"u": np.zeros(n, np.int32), "v": params["v_init"].astype(np.int32).copy(),
            "a": np.zeros(n, np.int32)}


def step_fixed(params: dict[str, np.ndarray], state: dict[str, np.ndarray], a_in: np.ndarray,
               spiking: bool, subtract: bool = False) -> np.ndarray:
    """One integer chip step; returns spikes as int32 0/1.

    The reset sets ``v = 0`` where a spike happened, or with ``subtract``
    ``v = v - ((vth << 6) + adaptation)`` (the threshold of the test), computed in int64
    and clipped to +-(2^23 - 1) like the membrane update.

    ``a_in`` is the sum of the Dense outputs arriving this step. Lava's LIF port is
    declared int16, but its receive buffer starts as int16 zeros and adds the int32
    messages, so numpy promotes the sum to int32: nothing is cut to 16 bits (checked
    with real Lava in tests/test_quantize.py). We therefore take a_in as int32.
    """
    a_in = np.asarray(a_in).astype(np.int64).astype(np.int32)  # int32 wrap, as Lava's int32 channel
    # current: u = decay(u) + (a_in << 6) + bias_u, wrapped once into 24 bits (Lava's wrap)
    cur = _decay(state["u"], DECAY_UNITY - (params["du"] + 1))
    cur = cur + np.left_shift(a_in, ACT_SHIFT)
    cur = cur + params["bias_u"].astype(np.int32)
    wrapped = np.where(cur > UV_MAX, cur - 2 * UV_MAX, cur)
    wrapped = np.where(wrapped <= -UV_MAX, cur + 2 * UV_MAX, wrapped)
    state["u"] = wrapped.astype(np.int32)
    # voltage: v = clip(decay(v) + u + (bias_mant << bias_exp)) to +-(2^23 - 1)
    bias_mant = params["bias_mant"].astype(np.int32)
    bias_exp = params["bias_exp"]
    bias = np.where(bias_exp >= 0, np.left_shift(bias_mant, np.maximum(bias_exp, 0)),
                    np.right_shift(bias_mant, np.maximum(-bias_exp, 0)))
    v = _decay(state["v"], DECAY_UNITY - params["dv"]) + state["u"] + bias.astype(np.int32)
    v = np.clip(v, -UV_MAX + 1, UV_MAX - 1).astype(np.int32)
    if not spiking:
        state["v"] = v
        return np.zeros(v.shape, np.int32)
    threshold = np.left_shift(params["vth"].astype(np.int64), VTH_SHIFT) + adaptation_fixed(params, state["a"])
    s = v > threshold
    if subtract:
        after = np.clip(v.astype(np.int64) - threshold, -UV_MAX + 1, UV_MAX - 1)
        state["v"] = np.where(s, after, v).astype(np.int32)
    else:
        state["v"] = np.where(s, 0, v).astype(np.int32)
    if np.any(params["a_inc"]):
        a = _decay(state["a"], DECAY_UNITY - params["da"]).astype(np.int64) + params["a_inc"] * s
        state["a"] = np.clip(a, -UV_MAX + 1, UV_MAX - 1).astype(np.int32)
    return s.astype(np.int32)


def adaptation_fixed(params: dict[str, np.ndarray], a: np.ndarray) -> np.ndarray:
    """The threshold increase ``(beta_mant * a) >> beta_shift`` (int64; floor)."""
    prod = params["beta_mant"].astype(np.int64) * a.astype(np.int64)
    shift = params["beta_shift"].astype(np.int64)
    return np.where(shift >= 0, np.right_shift(prod, np.maximum(shift, 0)),
                    np.left_shift(prod, np.maximum(-shift, 0)))
