"""What each framework's NIR files mean: one table (CONVENTIONS) and one of producer signs.

NIR stores continuous-time parameters but no time step, and the frameworks that write it
disagree on what ``r``, ``tau`` and ``w_in`` mean, on how an IF integrates and on how a
neuron resets. A convention turns what a framework writes into the IR's meaning (forward
Euler of the NIR ODEs at the graph's dt, docs/semantics.md). The sources each entry was
read from are listed in docs/nir-conventions.md.

Every fix below takes the NIR parameters (already arrays), the graph's dt and the reset
mode of the import, and rewrites the parameters in place.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import nir
import numpy as np
from scipy.special import lambertw

from ...documents import shown
from ...errors import NIRConversionError
from ...ir import IF, LI, LIF, CubaLIF, Node

Params = dict[str, np.ndarray]
Fix = Callable[[Params, float, str], None]
"""``fix(params, dt, reset)``: rewrite one foreign neuron's parameters in place."""

NEURON_TYPES: dict[type, type[Node]] = {nir.IF: IF, nir.LIF: LIF, nir.CubaLIF: CubaLIF, nir.LI: LI}
"""NIR neuron type -> IR type (the ones a foreign file can hold)."""


# ------------------------------------------------------------------ fixes


def _tau_over_dt(p: Params, dt: float, reset: str) -> None:
    """Norse 1.1.0 writes tau * dt (dt / tau_inv, norse#411)."""
    p["tau"] = p["tau"] / dt


def _norse_cuba_lif(p: Params, dt: float, reset: str) -> None:
    """Norse writes tau_syn, tau_mem scaled by dt and w_in = 1 for a current that jumps
    by the unscaled input (i += x): that is w_in = tau_syn / dt here."""
    p["tau_mem"] = p["tau_mem"] / dt
    p["tau_syn"] = p["tau_syn"] / dt
    p["w_in"] = p["w_in"] * p["tau_syn"] / dt


def _r_per_step(p: Params, dt: float, reset: str) -> None:
    """An IF whose r is a per-step gain (v += r*x): r = 1 adds the input unscaled."""
    p["r"] = p["r"] / dt


def _unscaled_if(p: Params, dt: float, reset: str) -> None:
    """An IF whose reader ignores r and adds the input unscaled (v += x)."""
    p["r"] = np.ones_like(p["r"]) / dt


def _lava_dl_if(p: Params, dt: float, reset: str) -> None:
    """NIR's nir_to_lava (lava-dl path) runs an IF as a CUBA neuron with no decay, the
    input unscaled and the threshold v_threshold * r: the same spikes as v += x / r."""
    p["r"] = 1.0 / (p["r"] * dt)


def _sinabs_leaky(p: Params, dt: float, reset: str) -> None:
    """Sinabs (LIF, ExpLeak as sinabs.nir.from_nir builds them, norm_input=False):
    v = exp(-1/tau) v + r x per step, tau counted in steps."""
    alpha = np.exp(-1.0 / p["tau"])
    p["tau"] = dt / (1.0 - alpha)
    p["r"] = p["r"] / (1.0 - alpha)


def _rockpool_lif(p: Params, dt: float, reset: str) -> None:
    """Rockpool LIFNeuronTorch: v = exp(-dt/tau) v + x + bias; the written r encodes dt."""
    alpha = np.exp(-dt / p["tau"])
    p["tau"] = dt / (1.0 - alpha)
    p["r"] = 1.0 / (1.0 - alpha)
    p["v_leak"] = p["v_leak"] / (1.0 - alpha)


def _rockpool_cuba_lif(p: Params, dt: float, reset: str) -> None:
    """Rockpool LIFTorch: i = exp(-dt/tau_syn) (i + x); v = exp(-dt/tau_mem) v + i + bias."""
    alpha = np.exp(-dt / p["tau_mem"])
    beta = np.exp(-dt / p["tau_syn"])
    p["tau_mem"] = dt / (1.0 - alpha)
    p["tau_syn"] = dt / (1.0 - beta)
    p["r"] = 1.0 / (1.0 - alpha)
    p["w_in"] = p["w_in"] * beta / (1.0 - beta)
    p["v_leak"] = p["v_leak"] / (1.0 - alpha)


def _rockpool_li(p: Params, dt: float, reset: str) -> None:
    """Rockpool ExpSynTorch: i = exp(-dt/tau) (i + x), the output is i."""
    beta = np.exp(-dt / p["tau"])
    p["tau"] = dt / (1.0 - beta)
    p["r"] = beta / (1.0 - beta)


def _spyx_lif(p: Params, dt: float, reset: str) -> None:
    """Spyx LIF: beta = 1 - dt/tau, v = beta v + x - s*thr with s from the previous v.
    The undecayed subtraction is reset "subtract" of thr/beta (v_reset = thr (1 - 1/beta))."""
    beta = np.clip(1.0 - dt / p["tau"], 0.0, 1.0)
    if np.any(beta <= 0):
        raise NIRConversionError("spyx LIF with beta = 1 - dt/tau <= 0 cannot be represented")
    p["r"] = p["tau"] / dt
    if reset == "subtract":
        p["v_reset"] = p["v_threshold"] * (1.0 - 1.0 / beta)


def _spyx_cuba_lif(p: Params, dt: float, reset: str) -> None:
    """Spyx CuBaLIF: i = alpha i + x; v = beta v + i (r and w_in written as beta and 1)."""
    p["r"] = p["tau_mem"] / dt
    p["w_in"] = p["tau_syn"] / dt


def _spyx_li(p: Params, dt: float, reset: str) -> None:
    """Spyx PSU_LIF's membrane: v = beta v + x (written with r = 1)."""
    p["r"] = p["tau"] / dt


def _unsupported(framework: str) -> Fix:
    def fix(p: Params, dt: float, reset: str) -> None:
        raise NIRConversionError(f"{framework} neither writes nor reads this neuron type in NIR")

    return fix


# ------------------------------------------------------------------ dt from the file


def rockpool_dt(leaves: Mapping[str, Any]) -> float | None:
    """The dt Rockpool wrote into r (r = tau exp(-dt/tau) / dt, so dt = tau W(1/r)), if
    every LIF/CubaLIF/LI gives the same one (to 1e-4), rounded to 6 significant digits."""
    found: list[np.ndarray] = []
    for node in leaves.values():
        tau = getattr(node, "tau_mem", getattr(node, "tau", None))
        r = getattr(node, "r", None)
        if type(node) not in (nir.LIF, nir.CubaLIF, nir.LI) or tau is None or r is None:
            continue
        tau, r = _floats(tau), _floats(r)
        if tau is None or r is None or np.any(r <= 0) or np.any(tau <= 0):
            return None
        found.append((tau * lambertw(1.0 / r).real).reshape(-1))
    if not found:
        return None
    dts = np.concatenate(found)
    if not np.all(np.isfinite(dts)) or dts.max() > dts.min() * (1 + 1e-4):
        return None
    return float(f"{float(np.median(dts)):.6g}")


def _floats(value: Any) -> np.ndarray | None:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None


# ------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Convention:
    """How one framework's NIR files are read."""

    name: str
    dt: float  # s, when neither the caller nor neuromorph's metadata gives one
    dt_known: bool  # the writer always uses this dt (a constant in its code): not a guess
    dt_note: str  # where the default dt comes from, for reports
    reset: str  # "value" or "subtract": the framework's neurons
    summary: str  # one line, for messages and `import-nir --help`
    fixes: Mapping[type[Node], Fix] = field(default_factory=dict)  # absent: as written
    per_step: frozenset[type[Node]] = frozenset()  # types whose step rule no dt changes
    delay_spikes: bool = False  # spikes leave a neuron one step late (Spyx: test before update)
    infer_dt: Callable[[Mapping[str, Any]], float | None] | None = None


CONVENTIONS: dict[str, Convention] = {c.name: c for c in (
    Convention(
        "nir", dt=1e-4, dt_known=False, dt_note="assumed: the nir convention's default, snnTorch's step",
        reset="value",
        summary="NIR's own meaning: the ODEs' parameters in seconds, reset to v_reset (dt not stored)"),
    Convention(
        "snntorch", dt=1e-4, dt_known=True, dt_note="snnTorch's export_to_nir constant", reset="value",
        summary="snnTorch export_to_nir: tau = dt/(1-beta), r = tau/dt, w_in = tau_syn/dt at dt = 1e-4"),
    Convention(
        "norse", dt=1e-3, dt_known=False, dt_note="assumed: Norse's default step", reset="value",
        summary="Norse 1.1.0 to_nir: tau written times dt (norse#411), w_in = 1 and IF r = 1 for "
                "unscaled input",
        fixes={LIF: _tau_over_dt, LI: _tau_over_dt, CubaLIF: _norse_cuba_lif, IF: _r_per_step},
        per_step=frozenset({IF})),
    Convention(
        "sinabs", dt=1.0, dt_known=False,
        dt_note="one step: Sinabs's neurons are per-step, dt only labels time", reset="subtract",
        summary="Sinabs to_nir: per-step neurons (IF r = 1 adds the input unscaled, LIF/ExpLeak "
                "tau in steps), reset by subtraction",
        fixes={IF: _r_per_step, LIF: _sinabs_leaky, LI: _sinabs_leaky, CubaLIF: _unsupported("Sinabs")},
        per_step=frozenset({IF, LIF, LI, CubaLIF})),
    Convention(
        "rockpool", dt=1e-3, dt_known=False, dt_note="assumed: Rockpool's default step", reset="subtract",
        summary="Rockpool to_nir: exact exponential decays, r = tau exp(-dt/tau)/dt (dt read back "
                "from r), reset by subtraction",
        fixes={LIF: _rockpool_lif, CubaLIF: _rockpool_cuba_lif, LI: _rockpool_li,
               IF: _unsupported("Rockpool")},
        infer_dt=rockpool_dt),
    Convention(
        "spyx", dt=1.0, dt_known=False, dt_note="assumed: Spyx's default (to_nir(..., dt=1))",
        reset="subtract",
        summary="Spyx to_nir: tau = dt/(1-beta) (dt = 1 by default), IF input unscaled, spike "
                "test before the update (one step late), reset by subtraction",
        fixes={IF: _unscaled_if, LIF: _spyx_lif, CubaLIF: _spyx_cuba_lif, LI: _spyx_li},
        per_step=frozenset({IF}), delay_spikes=True),
    Convention(
        "lava-dl", dt=1e-4, dt_known=True, dt_note="lava_to_nir's constant", reset="value",
        summary="lava-dl through NIR's lava_to_nir / nir_to_lava: CUBA neurons written as "
                "snnTorch's at dt = 1e-4, IF input unscaled with threshold v_threshold*r, reset to 0",
        fixes={IF: _lava_dl_if}, per_step=frozenset({IF})),
)}
"""Every convention, by name; ``auto`` (AUTO) picks one from the file (recognise)."""

AUTO = "auto"


def get_convention(name: Any) -> Convention:
    """The convention called ``name``; a one-line error listing the known ones."""
    if not isinstance(name, str) or name not in CONVENTIONS:
        known = ", ".join([*CONVENTIONS, AUTO])
        raise NIRConversionError(f"unknown convention {shown(name)} (known: {known})")
    return CONVENTIONS[name]


def reads_alike(a: Convention, b: Convention, kinds: Any = None) -> bool:
    """Two conventions that turn a file holding neurons of ``kinds`` (IR types; None: any)
    into the same graph, e.g. nir and snntorch always, lava-dl and snntorch without IF."""
    if (a.dt, a.reset, a.delay_spikes, a.infer_dt) != (b.dt, b.reset, b.delay_spikes, b.infer_dt):
        return False
    kinds = set(a.fixes) | set(b.fixes) if kinds is None else set(kinds)
    return all(a.fixes.get(k) is b.fixes.get(k) for k in kinds)


# ------------------------------------------------------------------ recognising the producer


@dataclass(frozen=True)
class Recognition:
    convention: str
    reason: str


PRODUCER_KEYS = ("producer", "framework", "exported_by", "exporter", "source", "library", "tool")
"""Graph metadata fields that may name the writer (none of the writers read here sets
one today; a file that does is believed)."""

PRODUCER_NAMES = {"snntorch": "snntorch", "sinabs": "sinabs", "norse": "norse", "rockpool": "rockpool",
                  "spyx": "spyx", "lava-dl": "lava-dl", "lava_dl": "lava-dl", "lava": "lava-dl"}


def _by_metadata(g: Any, leaves: Mapping[str, Any]) -> Recognition | None:
    meta = getattr(g, "metadata", None) or {}
    for key in PRODUCER_KEYS:
        value = meta.get(key) if isinstance(meta, Mapping) else None
        if isinstance(value, np.ndarray) and value.shape == ():
            value = value.item()
        if isinstance(value, bytes):
            value = value.decode("utf8", errors="replace")
        if not isinstance(value, str):
            continue
        for word, name in PRODUCER_NAMES.items():
            if word in value.lower():
                return Recognition(name, f"its metadata says {key} = {value[:40]!r}")
    return None


_SPYX_NAME = re.compile(r"^(input|output|layer_\d+(_threshold)?)(\..*)?$")
_ROCKPOOL_NAME = re.compile(r"^\d+_\w*Torch$")


def _by_spyx_names(g: Any, leaves: Mapping[str, Any]) -> Recognition | None:
    names = list(leaves)
    if any(n.startswith("layer_") for n in names) and all(_SPYX_NAME.match(n) for n in names):
        return Recognition("spyx", "nodes named input, layer_0, layer_1, ..., output, as "
                                   "spyx.nir.to_nir names them")
    return None


def _by_rockpool(g: Any, leaves: Mapping[str, Any]) -> Recognition | None:
    named = [n for n in leaves if _ROCKPOOL_NAME.match(n.split(".")[0])]
    if named:
        return Recognition("rockpool", f"node names such as '{named[0]}', as Rockpool's "
                                       "Sequential names its modules")
    if _snntorch_like(leaves):
        return None
    dt = rockpool_dt(leaves)
    if dt is not None and float(f"{dt:.2g}") == dt:
        return Recognition("rockpool", f"every neuron's r = tau*exp(-dt/tau)/dt with one dt = "
                                       f"{dt:g} s, as Rockpool's to_nir writes r")
    return None


def _neurons(leaves: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [(n, v) for n, v in leaves.items() if type(v) in NEURON_TYPES]


def _close(a: Any, b: Any) -> bool:
    a, b = _floats(a), _floats(b)
    return a is not None and b is not None and bool(np.allclose(a, b, rtol=1e-5, atol=0))


def _snntorch_like(leaves: Mapping[str, Any]) -> bool:
    """LIF/CubaLIF with r = tau/1e-4 (and w_in = tau_syn/1e-4): snnTorch's export."""
    leaky = [v for _, v in _neurons(leaves) if type(v) in (nir.LIF, nir.CubaLIF)]
    for v in leaky:
        tau = v.tau_mem if isinstance(v, nir.CubaLIF) else v.tau
        tau = _floats(tau)
        if tau is None or not _close(v.r, tau / 1e-4):
            return False
        if isinstance(v, nir.CubaLIF) and not _close(v.w_in, _floats(v.tau_syn) / 1e-4):
            return False
    return bool(leaky)


def _by_snntorch(g: Any, leaves: Mapping[str, Any]) -> Recognition | None:
    if _snntorch_like(leaves):
        return Recognition("snntorch", "LIF/CubaLIF neurons with r = tau/dt and w_in = tau_syn/dt "
                                       "at dt = 1e-4 s, as snnTorch's export_to_nir writes them")
    return None


def _by_norse(g: Any, leaves: Mapping[str, Any]) -> Recognition | None:
    neurons = _neurons(leaves)
    scalar = neurons and all(np.ndim(_floats(getattr(v, "v_leak", getattr(v, "r", None)))) == 0
                             for _, v in neurons)
    batched = any(isinstance(v, nir.Input) and len(np.asarray(v.input_type.get("input", ())).reshape(-1)) > 1
                  and int(np.asarray(v.input_type["input"]).reshape(-1)[0]) == 1 for v in leaves.values()
                  if isinstance(getattr(v, "input_type", None), dict))
    if scalar and batched:
        return Recognition("norse", "0-d neuron parameters and a batch dim of 1 in Input, as "
                                    "Norse 1.1.0's to_nir writes them")
    return None


def _sinabs_neuron(v: Any) -> bool:
    """A neuron as sinabs.nir writes one: r = 1; IF v_reset = 0; LIF/LI v_leak = 0 and a
    tau counted in steps (>= 1; a tau in seconds is < 1)."""
    if isinstance(v, nir.CubaLIF) or not _close(v.r, 1.0):
        return False
    if isinstance(v, nir.IF):
        return bool(np.all(_floats(v.v_reset) == 0))
    return bool(np.all(_floats(v.v_leak) == 0) and np.all(_floats(v.tau) >= 1.0))


def _by_sinabs(g: Any, leaves: Mapping[str, Any]) -> Recognition | None:
    neurons = _neurons(leaves)
    if not neurons:
        return None
    if not all(_sinabs_neuron(v) for _, v in neurons):
        return None
    pooled = any(isinstance(v, nir.SumPool2d) for v in leaves.values())
    kinds = sorted({type(v).__name__ for _, v in neurons})
    sign = f"{'/'.join(kinds)} neurons with r = 1 everywhere" + (" and SumPool2d" if pooled else "")
    return Recognition("sinabs", f"{sign}, as Sinabs's to_nir writes them")


RECOGNISERS: tuple[Callable[[Any, Mapping[str, Any]], Recognition | None], ...] = (
    _by_metadata, _by_spyx_names, _by_norse, _by_snntorch, _by_rockpool, _by_sinabs,
)
"""Tried in this order; the first sign found names the producer."""


def recognise(g: Any, leaves: Mapping[str, Any]) -> Recognition | None:
    """The framework that most likely wrote a foreign graph, and the sign that says so."""
    for rule in RECOGNISERS:
        try:
            found = rule(g, leaves)
        except (TypeError, ValueError, AttributeError, KeyError, IndexError):
            found = None  # a damaged file is refused later, naming the node
        if found is not None:
            return found
    return None
