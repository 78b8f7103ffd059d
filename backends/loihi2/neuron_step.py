"""One chip step of a neuron population, float or fixed point (numpy only).

Shared by the Lava process models (lava/process.py) and the numpy chip model (chip_model.py), so
the neuron arithmetic is written once; the synapses (Lava's Dense / DelayDense) are
Lava's own and are checked against the simulator's copy of their arithmetic in tests.

A population's update is an object made once from its parameters (:class:`FloatNeurons`,
:class:`FixedNeurons`: decay factors, biases and shifted thresholds computed when it is
made, not every step) whose ``step`` takes state of shape ``[n]`` (one sample) or
``[lanes, n]`` (samples side by side, each computed alone). ``step_float`` /
``step_fixed`` are the same update for one call.
"""
from __future__ import annotations

import numpy as np


class FloatNeurons:
    """One population's float update, its constants computed once.

    State arrays are ``[n]`` or ``[lanes, n]``: lanes are samples side by side (B copies
    of the population), each computed alone, element by element, so a lane's numbers
    are bit for bit those of the same sample run alone."""

    def __init__(self, params: dict[str, np.ndarray], spiking: bool, subtract: bool = False) -> None:
        self.size = int(params["v_init"].shape[0])
        self.spiking, self.subtract = bool(spiking), bool(subtract)
        self.keep_u = 1.0 - params["du"]
        self.keep_v = 1.0 - params["dv"]
        self.keep_a = 1.0 - params["da"]
        self.bias_u, self.bias_v = params["bias_u"], params["bias_v"]
        self.vth, self.beta = params["vth"], params["beta"]
        self.adaptive = bool(np.any(self.beta != 0))
        self.v_init = params["v_init"].astype(np.float64)

    def init(self, lanes: int | None = None) -> dict[str, np.ndarray]:
        shape = (self.size,) if lanes is None else (int(lanes), self.size)
        return {"u": np.zeros(shape), "v": np.broadcast_to(self.v_init, shape).copy(), "a": np.zeros(shape)}

    def step(self, state: dict[str, np.ndarray], a_in: np.ndarray) -> np.ndarray:
        """Lava-float style update in shifted coordinates (see netlist.py). The reset sets
        ``v = 0`` where a spike happened, or with ``subtract`` ``v = v - (vth + beta*a)``
        (the threshold of the test: the IR's reset by subtraction, shifted)."""
        state["u"] = state["u"] * self.keep_u + a_in + self.bias_u
        v = state["v"] * self.keep_v + state["u"] + self.bias_v
        if not self.spiking:
            state["v"] = v
            return np.zeros_like(v)
        # vth + 0 * a is vth: without adaptation the threshold is the constant
        threshold = self.vth + self.beta * state["a"] if self.adaptive else self.vth
        s = v > threshold
        state["v"] = np.where(s, v - threshold, v) if self.subtract else np.where(s, 0.0, v)
        state["a"] = state["a"] * self.keep_a + s
        return s.astype(np.float64)


def init_float(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return FloatNeurons(params, True).init()


def step_float(params: dict[str, np.ndarray], state: dict[str, np.ndarray], a_in: np.ndarray,
               spiking: bool, subtract: bool = False) -> np.ndarray:
    """One step of :class:`FloatNeurons` (constants computed for this call only)."""
    return FloatNeurons(params, spiking, subtract).step(state, a_in)


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


class _Decay:
    """``_decay(x, keep)`` for one ``keep`` (int32 ``x``), computed in float64 where that is
    exact: ``x * (keep / 4096)`` is the exact rational (|x * keep| < 2^31 * 2^21 = 2^52,
    and a division by 2^12 is exact), so its truncation towards 0 is Lava's
    ``sign(p) * (|p| >> 12)``; about twice as fast as the int64 form, which is used for
    ``keep`` values that no valid artifact has (|keep| >= 2^21)."""

    def __init__(self, keep: np.ndarray) -> None:
        self.keep = keep
        self.factor = keep / float(DECAY_UNITY) if np.all(np.abs(keep) < 2**21) else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.factor is None:
            return _decay(x, self.keep)
        return np.trunc(x * self.factor).astype(np.int32)


class FixedNeurons:
    """One population's integer update, its constants (decay factors, the bias
    ``bias_mant << bias_exp``, the threshold ``vth << 6``) computed once.

    State arrays are ``[n]`` or ``[lanes, n]`` (samples side by side, each computed
    alone: every operation is element by element, with the same numpy dtypes as one
    sample alone, so even overflow behaves the same)."""

    def __init__(self, params: dict[str, np.ndarray], spiking: bool, subtract: bool = False) -> None:
        self.size = int(params["v_init"].shape[0])
        self.spiking, self.subtract = bool(spiking), bool(subtract)
        self.decay_u = _Decay(DECAY_UNITY - (params["du"] + 1))
        self.u_memory = bool(np.any(params["du"] != DECAY_UNITY - 1))  # du = 4095: decay(u) is 0
        self.decay_v = _Decay(DECAY_UNITY - params["dv"])
        self.decay_a = _Decay(DECAY_UNITY - params["da"])
        self.bias_u = params["bias_u"].astype(np.int32)
        bias_mant = params["bias_mant"].astype(np.int32)
        bias_exp = params["bias_exp"]
        self.bias_v = np.where(bias_exp >= 0, np.left_shift(bias_mant, np.maximum(bias_exp, 0)),
                               np.right_shift(bias_mant, np.maximum(-bias_exp, 0))).astype(np.int32)
        # adding an int32 zero changes nothing: a population without biases skips it
        self.biased_u, self.biased_v = bool(np.any(self.bias_u)), bool(np.any(self.bias_v))
        self.vth = np.left_shift(params["vth"].astype(np.int64), VTH_SHIFT)
        # (beta_mant * a) >> beta_shift is 0 for every a when beta_mant is 0
        self.adaptive = bool(np.any(params["beta_mant"] != 0))
        if not self.adaptive and np.all(np.abs(self.vth) < 2**31):
            self.vth = self.vth.astype(np.int32)  # the same comparison with the int32 membrane, faster
        self.beta = {k: params[k] for k in ("beta_mant", "beta_shift")}
        shift = params["beta_shift"].astype(np.int64)
        self.beta_mant = params["beta_mant"].astype(np.int64)
        self.beta_right = np.maximum(shift, 0) if np.all(shift >= 0) else None  # the usual case: one right shift
        self.a_inc = params["a_inc"]
        self.traced = bool(np.any(self.a_inc))
        self.v_init = params["v_init"].astype(np.int32)

    def init(self, lanes: int | None = None) -> dict[str, np.ndarray]:
        shape = (self.size,) if lanes is None else (int(lanes), self.size)
        return {"u": np.zeros(shape, np.int32), "v": np.broadcast_to(self.v_init, shape).copy(),
                "a": np.zeros(shape, np.int32)}

    def step(self, state: dict[str, np.ndarray], a_in: np.ndarray) -> np.ndarray:
        """One integer chip step; returns spikes as int32 0/1.

        The reset sets ``v = 0`` where a spike happened, or with ``subtract``
        ``v = v - ((vth << 6) + adaptation)`` (the threshold of the test), computed in int64
        and clipped to +-(2^23 - 1) like the membrane update.

        ``a_in`` is the sum of the Dense outputs arriving this step. Lava's LIF port is
        declared int16, but its receive buffer starts as int16 zeros and adds the int32
        messages, so numpy promotes the sum to int32: nothing is cut to 16 bits (checked
        with real Lava in tests/test_quantize.py). We therefore take a_in as int32.
        """
        a_in = np.asarray(a_in)
        if a_in.dtype != np.int32:  # int32 wrap, as Lava's int32 channel
            a_in = a_in.astype(np.int64, copy=False).astype(np.int32)
        # current: u = decay(u) + (a_in << 6) + bias_u, wrapped once into 24 bits (Lava's wrap)
        cur = np.left_shift(a_in, ACT_SHIFT)
        if self.u_memory:
            cur = self.decay_u(state["u"]) + cur
        if self.biased_u:
            cur = cur + self.bias_u
        wrapped = np.where(cur > UV_MAX, cur - 2 * UV_MAX, cur)
        wrapped = np.where(wrapped <= -UV_MAX, cur + 2 * UV_MAX, wrapped)
        state["u"] = wrapped.astype(np.int32, copy=False)
        # voltage: v = clip(decay(v) + u + (bias_mant << bias_exp)) to +-(2^23 - 1)
        v = self.decay_v(state["v"]) + state["u"]
        if self.biased_v:
            v = v + self.bias_v
        v = np.clip(v, -UV_MAX + 1, UV_MAX - 1).astype(np.int32, copy=False)
        if not self.spiking:
            state["v"] = v
            return np.zeros(v.shape, np.int32)
        threshold = self.vth + self._adaptation(state["a"]) if self.adaptive else self.vth
        s = v > threshold
        if self.subtract:
            after = np.clip(v.astype(np.int64) - threshold, -UV_MAX + 1, UV_MAX - 1)
            state["v"] = np.where(s, after, v).astype(np.int32, copy=False)
        else:
            state["v"] = np.where(s, 0, v).astype(np.int32, copy=False)
        if self.traced:
            a = self.decay_a(state["a"]).astype(np.int64) + self.a_inc * s
            state["a"] = np.clip(a, -UV_MAX + 1, UV_MAX - 1).astype(np.int32)
        return s.astype(np.int32)

    def _adaptation(self, a: np.ndarray) -> np.ndarray:
        """``adaptation_fixed`` with the parameters converted once."""
        if self.beta_right is None:
            return adaptation_fixed(self.beta, a)
        return np.right_shift(self.beta_mant * a.astype(np.int64), self.beta_right)


def init_fixed(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return FixedNeurons(params, True).init()


def step_fixed(params: dict[str, np.ndarray], state: dict[str, np.ndarray], a_in: np.ndarray,
               spiking: bool, subtract: bool = False) -> np.ndarray:
    """One step of :class:`FixedNeurons` (constants computed for this call only)."""
    return FixedNeurons(params, spiking, subtract).step(state, a_in)


def adaptation_fixed(params: dict[str, np.ndarray], a: np.ndarray) -> np.ndarray:
    """The threshold increase ``(beta_mant * a) >> beta_shift`` (int64; floor)."""
    prod = params["beta_mant"].astype(np.int64) * a.astype(np.int64)
    shift = params["beta_shift"].astype(np.int64)
    return np.where(shift >= 0, np.right_shift(prod, np.maximum(shift, 0)),
                    np.left_shift(prod, np.maximum(-shift, 0)))


NEURONS = {"float": FloatNeurons, "fixed": FixedNeurons}
"""The prepared update of each precision: ``NEURONS[precision](params, spiking, subtract)``."""
