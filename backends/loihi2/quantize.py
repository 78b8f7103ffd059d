"""Fixed-point deployment of a netlist on Loihi 2 (Lava ``Loihi2SimCfg(select_tag="fixed_pt")``).

``quantize(net, calibration)`` turns the float netlist into the integers Lava's
fixed-point models take, and reports the error it made per connection and population;
``simulate_fixed(q, x)`` is the bit-exact numpy model of that integer arithmetic, many
samples side by side (chip_model.py's lanes; the neuron update is
``neuron_step.FixedNeurons``, the synapses ``synapse.FixedDense`` / ``FixedConv``, which
copy Lava's ``PyDenseModelBitAcc``; all shared with the Lava processes).

Units. Every population p gets a voltage scale ``S = v_scale[p]``: its integer membrane
and current are ``v_int = S * v`` and ``u_int = S * u`` (float netlist units, shifted
coordinates; the IR membrane is ``v_int / S + v_shift``). Lava adds ``a_in << 6`` to u,
so one unit of Dense output is worth ``64 / S`` volts. A connection with float matrix
W from a source whose messages are ``m = round(x * c)`` (c = input_scale for graded
input ports, 1 for spikes) therefore needs integer weights
``W_eff = W * S / (64 * c) ~= mantissa * 2**weight_exp``.

Formulas (all integers; see neuron_step.step_fixed for the update itself):

    du  = clip(4095 - round(4096 (1 - du_f)), 0, 4095)     u keeps (4096 - (du+1))/4096
    dv  = clip(round(4096 dv_f), 0, 4095)                   v keeps (4096 - dv)/4096
    da  = clip(round(4096 da_f), 0, 4095)                   a keeps (4096 - da)/4096
    vth = round(vth_f * S / 64)           (17-bit; S is chosen so that this is exact
                                           when the population has one threshold)
    bias_mant << bias_exp = round(S * (bias_v + bias_u))    when du = 4095 (u has no
        memory, so a constant into u is a constant into v: exactly Lava's stock LIF)
    bias_mant << bias_exp = round(S * bias_v), bias_u = round(S * bias_u)   otherwise
        (bias_u is our extension, a 24-bit constant added to u each step)
    v_init = round(S * v_init_f)
    ALIF:  a_int = a * a_inc (a_inc a power of two chosen so that the trace's peak
           fits 24 bits), threshold term (beta_mant * a_int) >> beta_shift with a
           13-bit beta_mant and one shift per population:
           beta_mant / 2**beta_shift ~= beta * S / a_inc.

Choice of S (per population): the largest value such that every quantity fits its
field: vth 17 bits (after which the compare is against vth << 6 in 24 bits), bias
13-bit mantissa << 7, v_init and bias_u 24 bits, every incoming weight within 8-bit
mantissa << 7, and the peaks of |u| and of v (from a float run on the calibration data,
times a margin of 2, never above the worst case from the weights; without calibration
the worst case) within 24 bits, because u wraps around on overflow. For a population
with one threshold S = 64 K / vth with K a power of two, so the threshold is exact (and
S is a power of two whenever vth is); otherwise S is a power of two.

Weights: Lava's fixed Dense clips and truncates its weights (lava/utils/weightutils.py):
mixed-sign matrices lose their LSB (mantissas are even, -256..254), excitatory ones are
0..255, inhibitory ones -255..0. We emit mantissas that these functions leave unchanged,
with the exponent that makes the largest weight use the full range (exponents -8..7,
Loihi's weight-exponent range; Lava itself accepts any integer). ``a_out = (W @ m)``
shifted by the exponent (left for > 0, arithmetic right = floor for < 0).

Convolutional connections (netlist ``conv``, conv.py) are quantised the same way: their
kernel ``W_eff = kernel * S / (64 c)`` gets one 8-bit mantissa per kernel entry and one
exponent for the connection (the chip's shared weights in Loihi 2's weight format);
the synapse (conv.conv_fixed) accumulates mantissa x message in int64, shifts by the
exponent and sends int32, as Dense does for a matrix. Bounds that need a row of the
matrix (fan-in, the sum of |w| per target neuron) come from the kernel over the taps
that reach the input (conv.connection_fan_in / connection_abs_sums).

Inputs: a port whose calibration data is all 0/1 (or that has no calibration data) gets
binary spikes (num_message_bits = 0). Otherwise graded spikes: the payload is
``round(x * input_scale)``, with input_scale the smallest integer that puts the data on
an integer grid (exact, e.g. 16 for pixel/16), or else 2^15-1 over the data's maximum;
num_message_bits is the smallest of 8, 16, 24 that holds the signed payload. Loihi 2's
graded spikes carry up to 24 bits in Lava's models ("s_out is 24-bit graded value" in
lava/proc/clp/prototype_lif/models.py; num_message_bits=24 for the graded layers of
lava/networks/gradedvecnetwork.py and lava/proc/s4d; 8 is the default of the chip's
spike I/O, NcSpikeIOVarModel in lava/magma/compiler/var_model.py; Dense stores
num_message_bits in a 5-bit Var). Lava's CPU models do not cut payloads to those bits,
so we choose the bits that hold the payload and refuse inputs that exceed them.
Checked with real Lava 0.10.0 (tests/test_quantize.py): a fixed_pt Dense with
num_message_bits > 0 fed by a RingBuffer receives the integers unchanged although its
s_in port is declared bool (the receive buffer starts as bool zeros and numpy
promotes it to the int32 of the sender's channel), and computes ``weights.dot(s_in)``
in int32; with num_message_bits = 0 it uses ``s_in != 0`` as binary spikes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from neuromorph.errors import NeuromorphError
from . import neuron_step
from .conv import connection_abs_sums, connection_fan_in
from .netlist import Netlist, Population
from .chip_model import FloatArithmetic, check_inputs, simulate_netlist
from .synapse import FixedConv, FixedDense, message_bound

WEIGHT_EXP_MIN, WEIGHT_EXP_MAX = -8, 7
VTH_MAX = 2**17 - 1
UV_LIMIT = 2**23 - 1
BIAS_MANT_MAX = 2**12 - 1  # 13-bit signed: -4096..4095
BIAS_EXP_MAX = 7
BETA_MANT_MAX = 2**12 - 1
PAYLOAD_BITS = (8, 16, 24)
GRADED_PAYLOAD_MAX = 2**15 - 1  # off-grid inputs: 16-bit graded spikes
INT32_MAX = 2**31 - 1
PEAK_MARGIN = 2.0
GRID_MAX = 4096  # largest integer grid (1/GRID_MAX steps) searched for exact inputs


@dataclass(frozen=True, eq=False)
class QuantizedNetlist:
    net: Netlist  # the float netlist (structure, offsets, shapes)
    populations: dict[str, dict[str, np.ndarray]]  # integer params for init_fixed/step_fixed (int64)
    weights: list[np.ndarray]  # per connection: int32 mantissas, unchanged by Lava's clip/truncate
    weight_exps: list[int]  # per connection
    input_scale: dict[str, float]  # payload = round(x * scale)
    num_message_bits: dict[str, int]  # 0 = binary spikes
    v_scale: dict[str, float]  # IR membrane = v_int / v_scale + v_shift
    report: dict  # per connection / population errors (JSON-able)

    def membrane(self, population: str, v_int: np.ndarray) -> np.ndarray:
        """A population's integer membrane in IR units."""
        return v_int / self.v_scale[population] + self.net.population(population).v_shift


# ---------------------------------------------------------------- Lava's synapse arithmetic


def sign_mode(w: np.ndarray) -> str:
    """Lava's determine_sign_mode: 'excitatory' (min >= 0), 'inhibitory', or 'mixed'."""
    if w.size == 0 or np.min(w) >= 0:
        return "excitatory"
    if np.max(w) <= 0:
        return "inhibitory"
    return "mixed"


def lava_weights(w: np.ndarray) -> np.ndarray:
    """What Lava's fixed Dense makes of integer weights (clip_weights(num_bits=8), then
    truncate_weights(num_weight_bits=8), sign mode from determine_sign_mode)."""
    w = np.asarray(w).astype(np.int32)
    mode = sign_mode(w)
    if mode == "inhibitory":
        return -np.clip(-w, 0, 255)
    if mode == "excitatory":
        return np.clip(w, 0, 255)
    return (np.clip(w, -256, 255) >> 1) << 1


def dense_fixed(weights: np.ndarray, weight_exp: int, s_in: np.ndarray, graded: bool) -> np.ndarray:
    """One step of Lava's PyDenseModelBitAcc: the int32 ``a_out`` it sends for input ``s_in``
    (``synapse.FixedDense`` for one call: binary spikes summed in int64, graded payloads
    in int32 as Lava's ``weights.dot(s_in)``, then the exponent's shift)."""
    return FixedDense(weights, weight_exp, graded)(s_in)


def quantize_weights(w_eff: np.ndarray, label: str = "", mixed: bool = False) -> tuple[np.ndarray, int]:
    """8-bit mantissas and the exponent that best use the range for ``w_eff`` (integer
    units of Dense output); the mantissas survive Lava's clip/truncate unchanged.
    ``mixed``: even mantissas whatever the signs (a plastic connection: Lava's
    LearningDense treats its matrix as mixed-sign and drops the LSB before learning)."""
    mode = "mixed" if mixed else sign_mode(w_eff)
    big = float(max(np.max(w_eff), -np.min(w_eff))) if w_eff.size else 0.0  # max |w|, no temporary
    if big == 0.0:
        return np.zeros(w_eff.shape, np.int32), 0
    if mode == "mixed":
        lo, hi, step = -256, 254, 2
    else:
        lo, hi, step = (-255, 0, 1) if mode == "inhibitory" else (0, 255, 1)
    exp = max(WEIGHT_EXP_MIN, math.ceil(math.log2(big / 254.0)) - 1)
    flat = np.reshape(w_eff, -1)
    m = np.empty(flat.shape, np.int32)
    while True:
        # in blocks, so that a 10^8-weight matrix needs no float64 temporaries of its size
        low, high = math.inf, -math.inf
        for i in range(0, flat.size, _BLOCK):
            block = np.rint(flat[i:i + _BLOCK] / (step * 2.0**exp)) * step
            low, high = min(low, float(block.min())), max(high, float(block.max()))
            m[i:i + _BLOCK] = block  # kept only when every block is in range
        if (low >= lo and high <= hi) or exp >= WEIGHT_EXP_MAX:
            break
        exp += 1
    if low < lo or high > hi:
        raise NeuromorphError(f"connection {label}: weight {big:g} (in units of synaptic input) exceeds "
                              f"the 8-bit mantissa with exponent {WEIGHT_EXP_MAX}")
    return m.reshape(np.shape(w_eff)), int(exp)


_BLOCK = 2**20
"""Values per block where quantisation walks a weight matrix in blocks (memory, not speed)."""


def _weight_errors(weight: np.ndarray, m: np.ndarray, exp: int, gain: float) -> dict[str, float]:
    """The quantisation error of one connection (the dequantised ``m * 2**exp / gain``
    against ``weight``), computed in blocks: no temporary of the matrix's size."""
    w, q = np.reshape(weight, -1), np.reshape(m, -1)
    max_err, sq_err, sq_w, nonzero, zeroed = 0.0, 0.0, 0.0, 0, 0
    for i in range(0, w.size, _BLOCK):
        wb, qb = w[i:i + _BLOCK], q[i:i + _BLOCK]
        err = qb * 2.0**exp / gain - wb
        max_err = max(max_err, float(np.max(np.abs(err), initial=0)))
        sq_err += float(np.dot(err, err))
        sq_w += float(np.dot(wb, wb))
        nz = wb != 0
        nonzero += int(np.count_nonzero(nz))
        zeroed += int(np.count_nonzero(nz & (qb == 0)))
    norm = math.sqrt(sq_w / w.size) if w.size else 0.0
    return {"max_abs_error": max_err,
            "rel_rms_error": math.sqrt(sq_err / w.size) / norm if norm > 0 else 0.0,
            "zeroed": zeroed / nonzero if nonzero else 0.0}


# ---------------------------------------------------------------- inputs


def _grid(x: np.ndarray, max_payload: int) -> int | None:
    """Smallest integer g with x * g integral (the data lies on a 1/g grid)."""
    values = np.unique(x)
    probe = values[:: max(1, len(values) // 64)]
    big = float(np.max(np.abs(values)))
    for g in range(1, GRID_MAX + 1):
        if big * g > max_payload:
            return None
        for v in (probe, values):
            y = v * g
            if not np.all(np.abs(y - np.rint(y)) <= 1e-6 * np.maximum(1.0, np.abs(y))):
                break
        else:
            return g
    return None


def _input_format(name: str, data: np.ndarray | None, fan_in: int) -> tuple[float, int, dict[str, Any]]:
    """(input_scale, num_message_bits, report) of an input port."""
    if data is None:
        return 1.0, 0, {"input": name, "encoding": "binary (no calibration data)"}
    data = np.asarray(data, dtype=np.float64)
    if not np.all(np.isfinite(data)):
        raise NeuromorphError(f"calibration data for input '{name}' contains NaN or inf")
    if np.all((data == 0) | (data == 1)):
        return 1.0, 0, {"input": name, "encoding": "binary spikes"}
    # The Dense accumulates 8-bit weights times payloads in int32.
    limit = min(2**23 - 1, INT32_MAX // (256 * max(fan_in, 1)))
    big = float(np.max(np.abs(data)))
    g = _grid(data, limit)
    if g is not None:
        scale, exact = float(g), True
    else:
        top = min(GRADED_PAYLOAD_MAX, limit)
        if top < 127:
            raise NeuromorphError(
                f"input '{name}': a fan-in of {fan_in} leaves graded spikes only {top} levels "
                "before the int32 synaptic accumulator could overflow")
        scale, exact = top / big, False
    payload = int(round(big * scale))
    bits = next(b for b in PAYLOAD_BITS if payload <= 2 ** (b - 1) - 1)
    err = float(np.max(np.abs(np.rint(data * scale) / scale - data)))
    return scale, bits, {"input": name, "encoding": "graded spikes", "input_scale": scale,
                         "num_message_bits": bits, "exact": exact, "max_abs_error": err,
                         "max_payload": payload}


def input_payload(q: QuantizedNetlist, name: str, x: np.ndarray) -> np.ndarray:
    """The integer messages an input port sends (RingBuffer data) for float inputs ``x``."""
    x = np.asarray(x, dtype=np.float64)
    bits = q.num_message_bits[name]
    if bits == 0:
        if not np.all((x == 0) | (x == 1)):
            bad = x[(x != 0) & (x != 1)].flat[0]
            raise NeuromorphError(
                f"input '{name}' was compiled for binary spikes (0/1) but got the value {bad:g}: "
                "compile with calibration data that shows its range")
        return x.astype(np.int32)
    p = np.rint(x * q.input_scale[name])
    top = 2 ** (bits - 1) - 1
    if np.any(np.abs(p) > top):
        raise NeuromorphError(
            f"input '{name}': value {float(np.max(np.abs(x))):g} exceeds the calibrated range "
            f"({top / q.input_scale[name]:g} for {bits}-bit graded spikes): recompile with "
            "calibration data that covers it")
    return p.astype(np.int32)


# ---------------------------------------------------------------- peaks of the float state


class _PeakNeurons:
    """A population's float update that keeps the largest |a_in|, |u|, v (before the
    reset) and a it sees."""

    def __init__(self, neurons: neuron_step.FloatNeurons, record: dict[str, float]) -> None:
        self.neurons, self.record = neurons, record

    def init(self, lanes: int | None = None) -> dict[str, np.ndarray]:
        return self.neurons.init(lanes)

    def step(self, state: dict[str, np.ndarray], a_in: np.ndarray) -> np.ndarray:
        n, rec = self.neurons, self.record
        v_old = state["v"]
        s = n.step(state, a_in)
        v_pre = v_old * n.keep_v + state["u"] + n.bias_v
        for key, val in (("a_in", a_in), ("u", state["u"]), ("v", v_pre), ("a", state["a"])):
            if val.size:
                rec[key] = max(rec[key], float(np.max(np.abs(val))))
        return s


def _float_peaks(net: Netlist, calibration: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Largest |a_in|, |u|, v (before reset) and a per population in a float run."""
    peaks = {p.name: {"a_in": 0.0, "u": 0.0, "v": 0.0, "a": 0.0} for p in net.populations}
    arith = FloatArithmetic(net)
    arith.neurons = {k: _PeakNeurons(v, peaks[k]) for k, v in arith.neurons.items()}
    simulate_netlist(net, dict(calibration), arithmetic=arith)
    return peaks


def _bound_peaks(net: Netlist, x_max: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """Worst-case |a_in|, |u| and v from the weights (every source at its maximum)."""
    out = {}
    for p in net.populations:
        a_in = np.zeros(p.size)
        for c in net.connections:
            if c.target == p.name:
                a_in += connection_abs_sums(c.conv, c.weight) * x_max.get(c.source, 1.0)
        u = (a_in + np.abs(p.bias_u)) / np.maximum(p.du, 1 / 4096)
        # Below a fixed threshold v is at most one step of drive above it; without a
        # threshold (LI) or with a moving one (ALIF) it can charge up to the leak's limit.
        leaky = (u + np.abs(p.bias_v)) / np.maximum(p.dv, 1 / 4096)
        v = np.maximum(p.vth, 0) + u + np.abs(p.bias_v) if p.spiking else leaky
        if np.any(p.beta != 0):
            v = np.maximum(v, leaky)
        v = np.maximum(v, np.abs(p.v_init))
        out[p.name] = {"a_in": float(np.max(a_in, initial=0)), "u": float(np.max(u, initial=0)),
                       "v": float(np.max(v, initial=0)), "a": 0.0}  # a: see _adaptation
    return out


# ---------------------------------------------------------------- populations


def _decay_int(d: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(4096 * d), 0, 4095).astype(np.int64)


def _mant_exp(x: np.ndarray, mant_max: int, exp_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Per element the smallest exponent 0..exp_max with round(x / 2**e) within +-mant_max."""
    exp = np.zeros(x.shape, np.int64)
    mant = np.rint(x)
    for _ in range(exp_max):
        over = (mant > mant_max) | (mant < -mant_max - 1)
        if not np.any(over):
            break
        exp = np.where(over, exp + 1, exp)
        mant = np.rint(x / 2.0**exp)
    return mant.astype(np.int64), exp


def _v_scale(pop: Population, limits: list[tuple[float, str]], min_scale: float) -> float:
    """The largest scale within every limit (exact threshold when it is one value)."""
    cap, why = min(limits, default=(2.0**30, ""))
    cap = min(cap, 2.0**30)
    if cap < min_scale:
        raise NeuromorphError(
            f"population '{pop.name}': {why} cannot be represented: it needs a voltage scale of "
            f"at most {cap:.3g}, but the threshold {float(np.max(pop.vth)):g} needs at least "
            f"{min_scale:.3g} to stay a nonzero 17-bit integer")
    vth = pop.vth[np.isfinite(pop.vth)] if pop.spiking else np.zeros(0)
    if vth.size and np.all(vth == vth[0]) and vth[0] > 0:
        k = 2.0 ** math.floor(math.log2(vth[0] * cap / 64))
        return 64 * k / float(vth[0])
    return 2.0 ** math.floor(math.log2(cap))


def _population(pop: Population, incoming: list[tuple[str, np.ndarray, float]],
                peak: dict[str, float]) -> tuple[dict[str, np.ndarray], float, dict[str, Any]]:
    """Integer parameters, voltage scale and report of one population."""
    where = f"population '{pop.name}'"
    for key in ("du", "dv", "bias_u", "bias_v", "v_init", "da", "beta", "vth"):
        arr = getattr(pop, key)
        if np.any(np.isnan(arr)) or (key != "vth" and not np.all(np.isfinite(arr))):
            raise NeuromorphError(f"{where}: {key} is {'NaN' if np.any(np.isnan(arr)) else 'infinite'}")
    if pop.spiking:
        if not np.all(np.isfinite(pop.vth)):
            raise NeuromorphError(f"{where}: the threshold is infinite")
        if np.any(pop.vth < 0):
            raise NeuromorphError(
                f"{where}: threshold {float(np.min(pop.vth)):g} below the reset potential; Loihi's "
                "threshold is an unsigned 17-bit integer")
    du = np.clip(4095 - np.rint(4096 * (1 - pop.du)), 0, 4095).astype(np.int64)
    fold = du == 4095  # u has no memory: a constant into u is a constant into v
    bias_v = pop.bias_v + np.where(fold, pop.bias_u, 0.0)
    bias_u = np.where(fold, 0.0, pop.bias_u)

    limits: list[tuple[float, str]] = []

    def limit(value: float, room: float, what: str) -> None:
        if value > 0:
            limits.append((room / value, what))

    vmax = float(np.max(pop.vth)) if pop.spiking and pop.size else 0.0
    limit(vmax, VTH_MAX * 64, f"the threshold {vmax:g} (17-bit vth << 6)")
    b = float(np.max(np.abs(bias_v), initial=0))
    limit(b, (BIAS_MANT_MAX + 1) * 2**BIAS_EXP_MAX - 2**BIAS_EXP_MAX, f"the bias {b:g} (13-bit mantissa << 7)")
    b = float(np.max(np.abs(bias_u), initial=0))
    limit(b, UV_LIMIT, f"the current bias {b:g} (24-bit u)")
    b = float(np.max(np.abs(pop.v_init), initial=0))
    limit(b, UV_LIMIT, f"the initial membrane {b:g} (24-bit v)")
    for label, w, c in incoming:
        wmax = float(np.max(np.abs(w), initial=0)) / c
        limit(wmax, 254 * 2**WEIGHT_EXP_MAX * 64, f"the weight {wmax * c:g} of connection {label} "
              f"(8-bit mantissa << {WEIGHT_EXP_MAX})")
    limit(peak["u"], UV_LIMIT, f"the synaptic current peak {peak['u']:g} (24-bit u)")
    limit(peak["v"], UV_LIMIT, f"the membrane peak {peak['v']:g} (24-bit v)")
    positive = pop.vth[pop.vth > 0] if pop.spiking else np.zeros(0)
    min_scale = 64 / float(np.min(positive)) if positive.size else 0.0
    scale = _v_scale(pop, limits, min_scale)

    vth = np.where(np.isfinite(pop.vth), np.rint(np.nan_to_num(pop.vth, posinf=0) * scale / 64), VTH_MAX)
    vth = np.clip(vth, 0, VTH_MAX).astype(np.int64)
    if not pop.spiking:
        vth[:] = VTH_MAX  # unused (no spikes); the largest value in case a stock LIF runs it
    bias_mant, bias_exp = _mant_exp(bias_v * scale, BIAS_MANT_MAX, BIAS_EXP_MAX)
    dv = _decay_int(pop.dv)
    da = _decay_int(pop.da)
    params = {
        "du": du, "dv": dv, "bias_u": np.rint(bias_u * scale).astype(np.int64),
        "bias_mant": bias_mant, "bias_exp": bias_exp, "vth": vth,
        "v_init": np.rint(pop.v_init * scale).astype(np.int64), "da": da,
        "a_inc": np.zeros(pop.size, np.int64), "beta_mant": np.zeros(pop.size, np.int64),
        "beta_shift": np.zeros(pop.size, np.int64),
    }
    report: dict[str, Any] = {"population": pop.name, "kind": pop.kind, "v_scale": scale}
    if pop.spiking:
        report["vth"] = int(vth.max(initial=0))
        report["vth_max_abs_error"] = float(np.max(np.abs(vth * 64 / scale - pop.vth), initial=0))
    report["du_max_abs_error"] = float(np.max(np.abs((du + 1) / 4096 - pop.du), initial=0))
    report["dv_max_abs_error"] = float(np.max(np.abs(dv / 4096 - pop.dv), initial=0))
    q_bias = (bias_mant * 2.0**bias_exp) / scale
    report["bias_max_abs_error"] = float(np.max(np.abs(q_bias - bias_v), initial=0))
    if np.any(pop.beta != 0):
        _adaptation(pop, params, scale, peak, report)
    # Bits left between the expected state peaks and 24 bits, and the signed bits the
    # summed Dense output needs (Lava's LIF declares a_in int16 but does not cut it).
    report["headroom_bits"] = float(math.log2(UV_LIMIT / max(max(peak["u"], peak["v"]) * scale, 1.0)))
    report["a_in_bits"] = math.ceil(math.log2(max(peak["a_in"] * scale / 64, 1.0))) + 1
    return params, scale, report


def _adaptation(pop: Population, params: dict[str, np.ndarray], scale: float,
                peak: dict[str, float], report: dict[str, Any]) -> None:
    """ALIF: trace increment a_inc and threshold factor beta_mant / 2**beta_shift.

    a_inc is a power of two, as large as the trace's peak allows: the integer decay
    (12-bit, rounding towards 0) loses up to one unit per step, so a one-spike trace
    must be many units to decay at the right rate. The peak is the smaller of the
    worst case (a neuron firing every step) and the larger of twice the calibrated
    peak and the level at which the adaptation alone lifts the threshold above the
    largest membrane value; saturating the trace there does not change spiking.
    """
    nz = pop.beta != 0
    da_int = params["da"][nz]
    worst = 4096 / max(int(np.min(da_int)), 1)
    crossing = peak["v"] / float(np.min(np.abs(pop.beta[nz]))) + 1  # + the spike's own increment
    a_peak = max(min(worst, max(PEAK_MARGIN * peak["a"], crossing)), 1.0)
    a_inc = 2 ** min(max(0, math.floor(math.log2(UV_LIMIT / a_peak))), 22)
    factor = pop.beta * scale / a_inc  # threshold units per trace unit
    shift = math.floor(math.log2(BETA_MANT_MAX / float(np.max(np.abs(factor)))))
    beta_mant = np.rint(factor * 2.0**shift).astype(np.int64)
    if np.max(np.abs(beta_mant)) > BETA_MANT_MAX:
        shift -= 1
        beta_mant = np.rint(factor * 2.0**shift).astype(np.int64)
    params["a_inc"] = np.where(nz, a_inc, 0).astype(np.int64)
    params["beta_mant"] = beta_mant
    params["beta_shift"] = np.full(pop.size, shift, np.int64)
    q_beta = beta_mant / 2.0**shift * a_inc / scale
    report["a_inc"] = int(a_inc)
    report["a_saturates_at"] = float(UV_LIMIT / a_inc)
    report["beta_shift"] = int(shift)
    report["beta_max_rel_error"] = float(np.max(np.abs(q_beta[nz] - pop.beta[nz]) / np.abs(pop.beta[nz])))
    report["da_max_abs_error"] = float(np.max(np.abs(params["da"] / 4096 - pop.da)))
    da_eff = np.maximum(da_int / 4096, 1 / 2**24)
    report["tau_adapt_max_rel_error"] = float(np.max(np.abs(pop.da[nz] / da_eff - 1)))


# ---------------------------------------------------------------- the compiler step


def quantize(net: Netlist, calibration: Mapping[str, np.ndarray] | None = None) -> QuantizedNetlist:
    """Float netlist -> Loihi 2 integers, with the error made reported per layer.

    ``calibration`` ({input: [N, T, *shape]}) decides the input encodings and the state
    peaks that set the voltage scales; without it inputs are binary spikes and the scales
    come from worst-case bounds. Values that cannot be represented raise NeuromorphError.
    """
    data: dict[str, np.ndarray] | None = None
    if calibration is not None:
        data, _, _ = check_inputs(net, calibration)
    for i, c in enumerate(net.connections):
        if np.any(np.isnan(c.weight)) or np.any(np.isinf(c.weight)):
            raise NeuromorphError(f"connection {c.source}->{c.target}: weight matrix contains NaN or inf")

    input_scale: dict[str, float] = {}
    bits: dict[str, int] = {}
    input_reports = []
    for port in net.inputs:
        fan_in = max((int(np.max(connection_fan_in(c.conv, c.weight), initial=0))
                      for c in net.connections if c.source == port.name), default=0)
        scale, b, rep = _input_format(port.name, None if data is None else data[port.name], fan_in)
        input_scale[port.name], bits[port.name] = scale, b
        input_reports.append(rep)

    x_max = {p.name: 1.0 for p in net.inputs}
    if data is not None:
        x_max.update({k: float(np.max(np.abs(v), initial=0)) for k, v in data.items()})
    bounds = _bound_peaks(net, x_max)
    if data is not None:
        seen = _float_peaks(net, data)
        peaks = {k: {q: min(bounds[k][q], PEAK_MARGIN * seen[k][q]) for q in ("a_in", "u", "v")}
                 | {"a": PEAK_MARGIN * seen[k]["a"]} for k in bounds}
    else:
        peaks = bounds

    src_scale = {**input_scale, **{p.name: 1.0 for p in net.populations}}
    populations, v_scale, pop_reports = {}, {}, []
    for pop in net.populations:
        incoming = [(f"{c.source}->{c.target}", c.weight, src_scale[c.source])
                    for c in net.connections if c.target == pop.name]
        params, scale, rep = _population(pop, incoming, peaks[pop.name])
        populations[pop.name], v_scale[pop.name] = params, scale
        pop_reports.append(rep)

    weights, exps, conn_reports = [], [], []
    for c in net.connections:
        c_src = src_scale[c.source]
        gain = v_scale[c.target] / (64 * c_src)
        m, e = quantize_weights(c.weight * gain, f"{c.source}->{c.target}", mixed=c.plastic is not None)
        weights.append(m)
        exps.append(e)
        conn_reports.append({
            "connection": f"{c.source}->{c.target}", "sign_mode": sign_mode(m), "weight_exp": e,
            **_weight_errors(c.weight, m, e, gain),
            "max_mantissa": int(max(np.max(m, initial=0), -np.min(m, initial=0))),
        })
        if c.source in bits and bits[c.source] > 0:
            worst = int(np.max(connection_abs_sums(c.conv, m), initial=0)) * int(
                round(x_max[c.source] * c_src))
            if worst > INT32_MAX:
                raise NeuromorphError(
                    f"connection {c.source}->{c.target}: graded inputs up to {x_max[c.source]:g} could "
                    f"overflow the int32 synaptic accumulator ({worst})")

    report = {"inputs": input_reports, "connections": conn_reports, "populations": pop_reports}
    q = QuantizedNetlist(net, populations, weights, exps, input_scale, bits, v_scale, report)
    if net.learning:  # the fixed learning engine's constants (learning_model.fixed_learning)
        ranges = {}
        for name, spec in net.learning.items():
            if spec.rule == "eprop":
                terms = None
                if spec.error_output is not None:  # computed on the chip: the delta rule's range, per error neuron
                    ro = net.population(spec.v_source)
                    v_peak = (seen if data is not None else bounds)[spec.v_source]["v"]
                    label_max = (float(np.max(np.abs(data[spec.label]), initial=0))
                                 if data is not None and spec.label else 1.0)
                    terms = np.abs(spec.label_gain) * label_max + np.abs(spec.v_gain) * (v_peak + np.abs(ro.v_shift))
                ranges[name] = _eprop_ranges(spec, data, terms)
                continue
            v_peak = (seen if data is not None else bounds)[spec.target]["v"]
            v_shift = np.abs(net.population(spec.target).v_shift)
            label_max = float(np.max(np.abs(data[spec.label]), initial=0)) if data is not None and spec.label else 1.0
            rng = np.abs(spec.label_gain) * label_max + np.abs(spec.v_gain) * (v_peak + v_shift)
            ranges[name] = [float(r) for r in np.maximum(rng, 1e-9)]
        report["learning"] = [{"connection": name, "error_range": ranges[name]} if not isinstance(ranges[name], dict)
                              else {"connection": name, **ranges[name]} for name in net.learning]
        rules = learning_rules(q)
        report["learning"] = [rules[name].report() if isinstance(ranges[name], dict)
                              else {**rules[name].report(), "error_range": ranges[name]} for name in net.learning]
    return q


def _eprop_ranges(spec: Any, data: Mapping[str, np.ndarray] | None,
                  terms: np.ndarray | None = None) -> dict[str, Any]:
    """An e-prop connection's calibrated ranges (learning_model.fixed_eprop): the largest
    |L| = |feedback @ err| per post neuron over the error Input's calibration data (without
    data: sum |feedback| per row, an error within +-1; an error computed on the chip:
    ``|feedback| @ terms``, ``terms`` the error's range per error neuron, also kept as
    ``error_terms`` for learning_model.eprop_error_path), and the eligibility's bound
    ``gamma * xbar_peak / dk``, xbar_peak the presynaptic trace's peak on the calibration
    data of an Input source (a population source: 1/(1 - keep), a neuron firing every step)."""
    chip = spec.eprop
    fb = np.asarray(chip.feedback, dtype=np.float64)
    if terms is not None:
        rng = np.abs(fb) @ np.asarray(terms, dtype=np.float64)
    elif data is not None and spec.label in data:
        err = np.asarray(data[spec.label], dtype=np.float64).reshape(-1, fb.shape[1])
        rng = np.max(np.abs(err @ fb.T), axis=0) if err.size else np.zeros(fb.shape[0])
    else:
        rng = np.abs(fb).sum(axis=1)
    peak = 1.0 / max(1.0 - spec.keep, 1e-12)
    if data is not None and spec.source in data:
        x = np.asarray(data[spec.source], dtype=np.float64)
        x = x.reshape(x.shape[0], x.shape[1], -1)
        xbar, peak = np.zeros((x.shape[0], x.shape[2])), 0.0
        for k in range(x.shape[1]):
            xbar = spec.keep * xbar + x[:, k]
            peak = max(peak, float(np.max(xbar, initial=0.0)))
    out = {"error_range": [float(r) for r in np.maximum(rng, 1e-9)],
           "ebar_range": float(max(chip.gamma * peak / max(chip.dk, 1e-12), 1e-9))}
    if terms is not None:
        out["error_terms"] = [float(r) for r in np.maximum(terms, 1e-9)]
    return out


def learning_rules(q: QuantizedNetlist) -> dict[str, Any]:
    """{plastic connection: learning_model.FixedLearning}: the fixed engine's constants,
    from the quantised scales and the error ranges calibrated at compile time
    (``report["learning"]``; the worst case from the readout's 24 bits where absent)."""
    from .learning_model import fixed_learning, with_v_shift

    net = q.net
    stored = {r.get("connection"): r.get("error_range") for r in q.report.get("learning", [])
              if isinstance(r, dict)}
    rules = {}
    eprop_posts: dict[str, list] = {}
    for name, spec in net.learning.items():
        i, conn = net.plastic(name)
        pop = net.population(spec.target)
        gain = spec.gain * (q.v_scale[conn.target] / (64 * q.input_scale.get(conn.source, 1.0))) / 2.0**q.weight_exps[i]
        if spec.rule == "eprop":
            from .learning_model import fixed_eprop

            stored_e = next((r for r in q.report.get("learning", []) if isinstance(r, dict)
                             and r.get("connection") == name and "ebar_range" in r), None)
            path = None
            if spec.error_output is not None:  # the readout's integer membrane message (eprop_error_path)
                from .learning_model import eprop_error_path

                ro = net.population(spec.v_source)
                terms = stored_e.get("error_terms") if stored_e is not None else None
                if terms is None:  # the worst case: the readout's 24-bit membrane
                    terms = np.abs(spec.label_gain) + np.abs(spec.v_gain) * (UV_LIMIT / q.v_scale[spec.v_source]
                                                                            + np.abs(ro.v_shift))
                    stored_e = None
                path = eprop_error_path(spec, q.v_scale[spec.v_source], ro.v_shift, np.asarray(terms, np.float64))
            found = stored_e if stored_e is not None else _eprop_ranges(spec, None, path and path["error_terms"])
            args = (spec, gain, q.v_scale[spec.target], q.input_scale.get(spec.label, 1.0),
                    np.broadcast_to(np.asarray(found["error_range"], dtype=np.float64), gain.shape),
                    float(found["ebar_range"]))
            eprop_posts.setdefault(spec.target, []).append((name, args, path))
            rules[name] = fixed_eprop(*args, error_path=path)
            continue
        worst = np.abs(spec.label_gain) + np.abs(spec.v_gain) * (UV_LIMIT / q.v_scale[spec.target]
                                                                  + np.abs(pop.v_shift))
        rng = stored.get(name)
        rng = np.broadcast_to(np.asarray(rng, dtype=np.float64), gain.shape) if rng is not None else worst
        label_scale = q.input_scale.get(spec.label, 1.0) if spec.label else 1.0
        rule = fixed_learning(spec, gain, q.v_scale[spec.target], label_scale, rng)
        rules[name] = with_v_shift(rule, spec, pop.v_shift)
    for members in eprop_posts.values():  # several e-prop synapses into one population share its factors
        if len(members) > 1:
            _share_eprop_factors(rules, members)
    return rules


def _share_eprop_factors(rules: dict[str, Any], members: list) -> None:
    """The e-prop connections into one population take the very y1..y3 its EPropGroup sends
    (learning_model.same_post_factors): one ``Ky1`` (the smallest of theirs, so that every
    eligibility range fits tag_1), one ``Ky2`` (the smallest with that Ky1: every y2 within
    127), each synapse's own ``ea`` and ``ew`` (a power of 2 that makes up its weight scale;
    refused in one line where that is not a power of 2 within the engine's exponents)."""
    from .learning_model import fixed_eprop

    ky1 = min(rules[name].ky1 for name, _, _ in members)
    alone = {name: fixed_eprop(*args, error_path=path, shared_ky1=ky1) for name, args, path in members}
    ky2 = min((r.ky2 for r in alone.values()), key=lambda k: float(np.max(k)))
    for name, args, path in members:
        rules[name] = fixed_eprop(*args, error_path=path, shared_ky1=ky1, shared_ky2=ky2)


# ---------------------------------------------------------------- the bit-exact model


class FixedArithmetic:
    """The fixed-point chip for ``chip_model.simulate_netlist``: ``neuron_step.FixedNeurons``
    per population, ``synapse.FixedDense`` / ``FixedConv`` per connection (the mantissas
    converted once), inputs sent as their integer payloads, the membrane read back in IR
    units."""

    dtype = np.int64  # the summed Dense outputs, exact (Lava's int32 sum is the same modulo 2^32)

    def __init__(self, q: QuantizedNetlist) -> None:
        net = q.net
        self.q = q
        self.neurons = {p.name: neuron_step.FixedNeurons(q.populations[p.name], p.spiking, p.reset == "subtract")
                        for p in net.populations}
        self.synapses = []
        for i, c in enumerate(net.connections):
            bits = q.num_message_bits.get(c.source, 0)
            graded = c.source in q.input_scale and bits > 0
            kind = FixedConv if c.conv is not None else FixedDense
            args = (c.conv,) if c.conv is not None else ()
            self.synapses.append(kind(*args, q.weights[i], q.weight_exps[i], graded, message_bound(graded, bits)))

    def message(self, port: str, x: np.ndarray) -> np.ndarray:
        return np.rint(x * self.q.input_scale[port])

    def readout(self, population: str, v: np.ndarray) -> np.ndarray:
        return self.q.membrane(population, v)


def simulate_fixed(q: QuantizedNetlist, x: np.ndarray | Mapping[str, np.ndarray], *,
                   record_spikes: bool = False, lanes: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Bit-exact numpy model of the deployed integer arithmetic (Lava fixed_pt).

    Returns ({output: [N, T, *shape]}, {population: spike count}); with
    ``record_spikes`` the outputs also hold ``"<population>.spikes"`` ([N, T, *shape])
    for every spiking population. LI outputs are converted back to IR units.
    ``lanes``: samples computed side by side (chip_model.simulate_netlist); the results
    do not depend on it.
    """
    net = q.net
    inputs, _, _ = check_inputs(net, x)
    for port in net.inputs:
        input_payload(q, port.name, inputs[port.name])  # refuse what the chip would mangle
    return simulate_netlist(net, inputs, arithmetic=FixedArithmetic(q), record_spikes=record_spikes, lanes=lanes)


def compare(q: QuantizedNetlist, x: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Fixed point vs the float netlist on ``x``: per spiking population the spike counts
    and the fraction of (sample, step, neuron) entries that agree, and the Dice overlap
    of the spike sets (2 |F and Q| / (|F| + |Q|)); per output the error of the signal."""
    net = q.net
    inputs, _, _ = check_inputs(net, x)
    want, _ = simulate_netlist(net, inputs, record_spikes=True)
    got, _ = simulate_fixed(q, inputs, record_spikes=True)
    result: dict[str, Any] = {"populations": {}, "outputs": {}}
    for p in net.populations:
        if not p.spiking:
            continue
        f, g = want[f"{p.name}.spikes"] > 0, got[f"{p.name}.spikes"] > 0
        total = int(f.sum() + g.sum())
        result["populations"][p.name] = {
            "float_spikes": int(f.sum()), "fixed_spikes": int(g.sum()),
            "agreement": float(np.mean(f == g)),
            "dice": float(2 * np.sum(f & g) / total) if total else 1.0,
        }
    for o in net.outputs:
        a, b = want[o.name], got[o.name]
        if o.signal == "v":
            scale = float(np.sqrt(np.mean(a**2))) or 1.0
            result["outputs"][o.name] = {"max_abs_error": float(np.max(np.abs(a - b), initial=0)),
                                         "rel_rms_error": float(np.sqrt(np.mean((a - b) ** 2)) / scale)}
        else:
            result["outputs"][o.name] = {"agreement": float(np.mean(a == b))}
    return result
