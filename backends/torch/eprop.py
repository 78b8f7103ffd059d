"""e-prop (Bellec et al. 2020, Nat Commun 11:3625): online, memory-flat gradients for
recurrent spiking networks, registered as the training method ``eprop``.

The gradient of a weight W_ji into neuron j is factorised as sum_t L_j(t) e_ji(t): an
eligibility trace e computed forward in time from quantities local to the synapse, and
a learning signal L that says how the loss depends on the neuron's spike. The traces are
derived from this project's own discrete update (docs/semantics.md), with the reset not
differentiated exactly as in the torch network's BPTT; docs/eprop.md has the derivation
for each neuron type and where it differs from the paper. With the true learning signal
(the total derivative of the loss with respect to each spike) the factorisation is BPTT's
gradient; e-prop replaces it by what reaches the readout directly:

* ``symmetric``  the readout weights transposed (the paper's e-prop);
* ``random``     fixed random feedback weights (Lillicrap et al. 2016; the paper's
                 "random e-prop");
* ``broadcast``  one global error vector sent to every neuron through fixed weights of
                 one magnitude whose signs match the readout weights at initialisation
                 (Clark et al. 2021);
* ``adaptive``   Kolen-Pollack: random feedback weights that receive each update of the
                 readout weights (transposed), both decaying by ``kp_decay`` per update.

Nothing is stored per time step: every state, trace and accumulated sum has the size of
a weight matrix times the batch, so memory does not grow with the sequence length. The
loss is BPTT's (cross-entropy of the readout averaged over the task's decision steps),
so its error is known at the end of the decision window; the weights are updated once
per batch of sequences, at their end.

Trainable graphs: Affine/Linear connections whose source is the Input or a spiking
population (LIF, IF, CubaLIF, ALIF; any delay on the edge into the connection) and that
feed a spiking population or the single LI readout, which feeds the Output. Anything
else is refused with one line naming the node.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, fields
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from neuromorph.errors import NeuromorphError
from neuromorph.ir import ALIF, IF, LI, LIF, Affine, CubaLIF, Graph, Input, Linear, Output
from neuromorph.tasks import Dataset
from neuromorph.training import Progress, TrainConfig, TrainResult

from .bptt import fit, network_for
from .distributed import Cluster
from .network import NEURON_STEPS, GraphNetwork, reset, threshold_of

SIGNALS = ("symmetric", "random", "broadcast", "adaptive")
SPIKING = (LIF, IF, CubaLIF, ALIF)
DEFAULT_SURROGATE = "triangle"  # the paper's pseudo-derivative, gamma = 0.3 (surrogate.DEFAULT_ALPHA)


@dataclass(frozen=True)
class EpropOptions:
    """The method's own options (``TrainConfig.options``; CLI flags of the same name)."""

    learning_signal: str = "symmetric"
    rate_target: float = 10.0  # Hz: the firing rate the regulariser pulls toward
    rate_reg: float = 0.0  # its strength (0: off): E_reg = rate_reg/2 * sum_j (rate_j - target)^2
    kp_decay: float = 1e-3  # adaptive: weight decay of readout and feedback per update

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> "EpropOptions":
        known = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in options.items():
            if value is None:
                continue
            if key == "learning_signal":
                if value not in SIGNALS:
                    raise NeuromorphError(f"unknown learning signal '{value}' (known: {', '.join(SIGNALS)})")
                values[key] = value
            elif key in known:
                number = float(value)
                if not np.isfinite(number) or number < 0:
                    raise NeuromorphError(f"e-prop option {key} must be a finite number >= 0, got {value}")
                if key == "kp_decay" and number >= 1:
                    raise NeuromorphError(f"e-prop option kp_decay must be < 1 (a fraction per update), got {value}")
                values[key] = number
        return cls(**values)


OPTIONS = {
    "learning_signal": f"how the error reaches the hidden neurons: {', '.join(SIGNALS)} (default symmetric)",
    "rate_target": "firing-rate regularisation: target rate in Hz (default 10)",
    "rate_reg": "firing-rate regularisation strength (default 0: off)",
    "kp_decay": "adaptive signal: weight decay of readout and feedback weights per update (default 1e-3)",
}


# ------------------------------------------------------------------ what is trained


@dataclass(frozen=True)
class Synapse:
    """One trainable connection: its Affine/Linear node, where its input comes from (the
    Input or a spiking population, ``delay`` steps late) and what it feeds."""

    name: str
    source: str
    delay: int
    target: str
    bias: bool


@dataclass(frozen=True)
class Plan:
    input: str
    readout: str  # the LI node that feeds the Output
    output: str
    populations: tuple[str, ...]  # spiking populations, in evaluation order
    synapses: tuple[Synapse, ...]  # in evaluation order
    order: tuple[str, ...]

    def into(self, target: str) -> list[Synapse]:
        return [s for s in self.synapses if s.target == target]


def _refuse(name: str, why: str) -> NeuromorphError:
    return NeuromorphError(f"e-prop cannot train this graph: node '{name}' {why} (e-prop trains Affine/Linear "
                           "connections into LIF, IF, CubaLIF and ALIF populations read out by one LI node; "
                           "use --method bptt)")


def make_plan(graph: Graph, learning_signal: str = "symmetric") -> Plan:
    """The e-prop view of ``graph``, or one line saying what it cannot train."""
    inputs = [n for n, node in graph.nodes.items() if isinstance(node, Input)]
    outputs = list(graph.outputs)
    if len(inputs) != 1 or len(outputs) != 1:
        raise NeuromorphError(f"e-prop needs one Input and one Output node, got {len(inputs)} and {len(outputs)}")
    out = outputs[0]
    feeding = graph.incoming(out)
    if len(feeding) != 1 or not isinstance(graph.nodes[feeding[0].source], LI) or feeding[0].delay:
        raise _refuse(out, "is not fed by exactly one LI readout (delay 0)")
    readout = feeding[0].source
    synapses: list[Synapse] = []
    populations: list[str] = []
    for name in graph.order():
        node = graph.nodes[name]
        leaving = graph.outgoing(name)
        if isinstance(node, (Input, Output)):
            continue
        if isinstance(node, SPIKING):
            if len(graph.shape(name)) != 1:
                raise _refuse(name, f"has shape {graph.shape(name)}; e-prop trains one-dimensional populations")
            populations.append(name)
        elif isinstance(node, LI):
            if name != readout:
                raise _refuse(name, "is an LI population that is not the readout")
            if any(e.target != out for e in leaving):
                raise _refuse(name, "(the readout) feeds something other than the Output")
        elif isinstance(node, (Affine, Linear)):
            arriving = graph.incoming(name)
            if len(arriving) != 1:
                raise _refuse(name, f"has {len(arriving)} inputs; a trained connection reads one source")
            src = arriving[0].source
            if not isinstance(graph.nodes[src], (Input, *SPIKING)):
                raise _refuse(name, f"reads '{src}' ({graph.nodes[src].type_name}), not the Input or a spiking population")
            if len(leaving) != 1 or leaving[0].delay:
                raise _refuse(name, "must feed exactly one population with delay 0 (put a delay on the edge "
                              "into the connection)")
            target = leaving[0].target
            if not isinstance(graph.nodes[target], (*SPIKING, LI)):
                raise _refuse(name, f"feeds '{target}' ({graph.nodes[target].type_name}), not a population")
            if target == readout and arriving[0].delay and src != inputs[0]:
                raise _refuse(name, "reads a population with a delay into the readout")
            synapses.append(Synapse(name, src, arriving[0].delay, target, isinstance(node, Affine)))
        else:
            raise _refuse(name, f"is a {node.type_name}")
    for name in [*populations, readout]:
        for e in graph.incoming(name):
            if not isinstance(graph.nodes[e.source], (Affine, Linear)):
                raise _refuse(name, f"receives '{e.source}' directly; its inputs must be Affine/Linear connections")
    if learning_signal in ("symmetric", "adaptive"):
        reaching = {s.source for s in synapses if s.target == readout}
        for pop in populations:
            if pop not in reaching:
                raise NeuromorphError(f"e-prop --learning-signal {learning_signal} needs a connection from every "
                                      f"population to the readout; '{pop}' has none (use random or broadcast)")
    return Plan(inputs[0], readout, out, tuple(populations), tuple(synapses), tuple(graph.order()))


# ------------------------------------------------------------------ running the network


@dataclass
class Step:
    """What one time step produced: each node's output, each synapse's input (with a
    column of ones for a bias), and each population's membrane before the reset and its
    spike test's threshold."""

    y: dict[str, torch.Tensor]
    pre: dict[str, torch.Tensor]
    u: dict[str, torch.Tensor]
    threshold: dict[str, torch.Tensor]


class Runner:
    """The network of ``plan`` advanced one step at a time (GraphNetwork's neuron rules).

    ``taps`` adds a zero tensor to each population's outgoing spikes (so autograd gives the
    total derivative of the loss with respect to them: the true learning signal), and
    ``detach_delayed`` cuts the gradient through delayed spike paths (the recurrence):
    both only for the autograd reference.
    """

    def __init__(self, net: GraphNetwork, plan: Plan, batch: int, ref: torch.Tensor,
                 detach_delayed: bool = False) -> None:
        self.net, self.plan, self.detach_delayed = net, plan, detach_delayed
        self.state = {n: net._initial_state(n, batch, ref) for n in (*plan.populations, plan.readout)}
        depth: dict[str, int] = {}
        for s in plan.synapses:
            depth[s.source] = max(depth.get(s.source, 0), s.delay)
        self.history = {n: deque(maxlen=d) for n, d in depth.items() if d}
        self.batch, self.ref = batch, ref
        graph = net.graph
        self.synapse = {s.name: s for s in plan.synapses}
        self.drives = {n: [e.source for e in graph.incoming(n)] for n in self.state}
        self.params = {n: net.coefficients(n) for n in self.state}

    def step(self, x: torch.Tensor, taps: Mapping[str, torch.Tensor] | None = None) -> Step:
        net, plan, graph = self.net, self.plan, self.net.graph
        out = Step({plan.input: x.to(self.ref.dtype)}, {}, {}, {})
        for name in plan.order:
            node = graph.nodes[name]
            syn = self.synapse.get(name)
            if syn is not None:
                pre = self._source(syn, out.y)
                out.pre[name] = torch.cat([pre, torch.ones_like(pre[:, :1])], 1) if syn.bias else pre
                out.y[name] = F.linear(pre, net._p(name, "weight"), net._p(name, "bias") if syn.bias else None)
            elif name in self.state:
                s = self.state[name]
                drive = sum(out.y[src] for src in self.drives[name])
                p = self.params[name]
                if isinstance(node, LI):
                    out.y[name] = NEURON_STEPS[LI](p, s, drive, net.surrogate, None)
                    continue
                threshold = threshold_of(node, p, s)
                z = NEURON_STEPS[type(node)](p, s, drive, net.surrogate, threshold)
                out.u[name], out.threshold[name] = s["v"], threshold
                reset(node, p, s, z, threshold)
                out.y[name] = z + taps[name] if taps is not None else z
        for name, past in self.history.items():
            past.append(out.y[name])
        return out

    def _source(self, syn: Synapse, y: dict[str, torch.Tensor]) -> torch.Tensor:
        if syn.delay == 0:
            return y[syn.source]
        past = self.history[syn.source]
        if len(past) < syn.delay:  # before the stream started: zero
            n = self.net.graph.shape(syn.source)[0]
            return torch.zeros(self.batch, n, dtype=self.ref.dtype, device=self.ref.device)
        value = past[-syn.delay]
        delayed_spikes = self.detach_delayed and syn.source in self.plan.populations
        return value.detach() if delayed_spikes else value


# ------------------------------------------------------------------ e-prop


class Feedback:
    """The learning signal's feedback matrices B_p [n_p, n_out], one per population."""

    def __init__(self, net: GraphNetwork, plan: Plan, kind: str, seed: int) -> None:
        self.net, self.plan, self.kind = net, plan, kind
        gen = torch.Generator().manual_seed(seed + 7919)
        ref = net._p(plan.synapses[0].name, "weight")
        n_out = net.graph.shape(plan.readout)[0]
        self.fixed: dict[str, torch.Tensor] = {}
        for pop in plan.populations:
            n = net.graph.shape(pop)[0]
            random = torch.randn(n, n_out, generator=gen, dtype=torch.float64) / np.sqrt(n)
            if kind == "broadcast":
                direct = self._direct(pop)
                signs = torch.sign(direct) if direct is not None else torch.sign(random)
                signs[signs == 0] = 1.0
                random = signs / np.sqrt(n)
            self.fixed[pop] = random.to(ref.dtype).to(ref.device)
        self.last = self._readout_weights()

    def _direct(self, pop: str) -> torch.Tensor | None:
        """The sum of the transposed weights from ``pop`` into the readout, if any."""
        ws = [self.net._p(s.name, "weight").detach().T for s in self.plan.into(self.plan.readout) if s.source == pop]
        return sum(ws) if ws else None  # type: ignore[return-value]

    def matrix(self, pop: str) -> torch.Tensor:
        if self.kind == "symmetric":
            return self._direct(pop)  # type: ignore[return-value]
        return self.fixed[pop]

    def _readout_weights(self) -> dict[str, torch.Tensor]:
        return {s.name: self.net._p(s.name, "weight").detach().clone() for s in self.plan.into(self.plan.readout)}

    def after_update(self, decay: float) -> None:
        """Kolen-Pollack: the feedback receives the readout's update (what the optimiser
        changed since the last call); then both decay by ``decay``."""
        if self.kind != "adaptive":
            return
        with torch.no_grad():
            for s in self.plan.into(self.plan.readout):
                if s.source not in self.fixed:
                    continue
                weight = self.net._p(s.name, "weight")
                self.fixed[s.source] += (weight - self.last[s.name]).T
                if decay:
                    weight.mul_(1.0 - decay)
                    self.fixed[s.source].mul_(1.0 - decay)
        self.last = self._readout_weights()


class Traces:
    """Per synapse: the eligibility vector (one component per state variable of the
    target neuron), the eligibility trace filtered by the readout's decay, and its sum over
    the decision steps. Readout synapses: the filtered input and its sum."""

    def __init__(self, net: GraphNetwork, plan: Plan, batch: int, ref: torch.Tensor,
                 regularised: bool = False) -> None:
        self.net, self.plan, self.regularised = net, plan, regularised
        graph = net.graph
        zeros = lambda *shape: torch.zeros(*shape, dtype=ref.dtype, device=ref.device)  # noqa: E731
        self.eps: dict[str, dict[str, torch.Tensor]] = {}
        self.e: dict[str, torch.Tensor] = {}  # this step's eligibility trace (a reused buffer)
        self.coefficients = {p: _coefficients(net, p) for p in plan.populations}
        self.into = {t: plan.into(t) for t in (*plan.populations, plan.readout)}  # not per step
        self.filtered: dict[str, torch.Tensor] = {}
        self.window: dict[str, torch.Tensor] = {}  # sum over decision steps of the filtered trace
        self.total: dict[str, torch.Tensor] = {}  # sum over batch and time of e (regulariser)
        self.signal: dict[str, torch.Tensor] = {}  # sum_t L(t) e(t) for a given learning signal
        self.rho = {p: torch.ones(batch, graph.shape(p)[0], dtype=ref.dtype, device=ref.device)
                    for p in plan.populations}
        self.spikes = {p: zeros(graph.shape(p)[0]) for p in plan.populations}
        for s in plan.synapses:
            n_post = graph.shape(s.target)[0]
            n_pre = graph.shape(s.source)[0] + int(s.bias)
            if s.target == plan.readout:
                self.filtered[s.name] = zeros(batch, n_pre)
                self.window[s.name] = zeros(batch, n_pre)
                continue
            kind = type(graph.nodes[s.target])
            parts = {"u": None, "i": CubaLIF, "a": ALIF}
            self.eps[s.name] = {k: zeros(batch, n_post, n_pre) for k, t in parts.items() if t in (None, kind)}
            self.e[s.name] = zeros(batch, n_post, n_pre)
            self.filtered[s.name] = zeros(batch, n_post, n_pre)
            self.window[s.name] = zeros(batch, n_post, n_pre)
            self.total[s.name] = zeros(n_post, n_pre)
            self.signal[s.name] = zeros(n_post, n_pre)
        kappa = 1.0 - net._p(plan.readout, "dv")
        if kappa.numel() > 1 and not bool((kappa == kappa.reshape(-1)[0]).all()):
            raise _refuse(plan.readout, "has several time constants; e-prop filters with one readout decay")
        self.kappa = float(kappa.reshape(-1)[0])

    def update(self, step: Step, in_window: bool, signal: Mapping[str, torch.Tensor] | None) -> None:
        net, plan = self.net, self.plan
        for pop in plan.populations:
            node, c = net.graph.nodes[pop], self.coefficients[pop]
            psi = net.surrogate.derivative(step.u[pop] - step.threshold[pop]).unsqueeze(2)
            carry = (self.rho[pop] if c["decay"] is None else c["decay"] * self.rho[pop]).unsqueeze(2)
            for syn in self.into[pop]:
                x = step.pre[syn.name].unsqueeze(1)  # [batch, 1, n_pre]
                eps, e = self.eps[syn.name], self.e[syn.name]
                if isinstance(node, CubaLIF):
                    eps["i"].mul_(c["keep_i"]).addcmul_(c["gain_i"], x)
                    eps["u"].mul_(carry).addcmul_(c["gain"], eps["i"])
                else:
                    eps["u"].mul_(carry).addcmul_(c["gain"], x)
                if isinstance(node, ALIF):  # e = psi * (eps_u - beta * eps_a), then eps_a
                    torch.addcmul(eps["u"], eps["a"], c["beta"], value=-1.0, out=e).mul_(psi)
                    torch.addcmul(e, eps["a"], c["keep_a"], out=eps["a"])
                else:
                    torch.mul(eps["u"], psi, out=e)
                torch.add(e, self.filtered[syn.name], alpha=self.kappa, out=self.filtered[syn.name])
                if in_window:
                    self.window[syn.name].add_(self.filtered[syn.name])
                if self.regularised:
                    self.total[syn.name].add_(e.sum(0))
                if signal is not None:
                    self.signal[syn.name].add_(torch.einsum("bj,bji->ji", signal[pop], e))
            z = step.y[pop]
            self.spikes[pop].add_(z.sum(0))
            self.rho[pop] = torch.ones_like(z) if node.reset == "subtract" else 1.0 - z
        for syn in self.into[plan.readout]:
            torch.add(step.pre[syn.name], self.filtered[syn.name], alpha=self.kappa, out=self.filtered[syn.name])
            if in_window:
                self.window[syn.name].add_(self.filtered[syn.name])


def _coefficients(net: GraphNetwork, pop: str) -> dict[str, torch.Tensor | None]:
    """The population's coefficients (GraphNetwork.coefficients), shaped to multiply
    [batch, n_post, n_pre]: ``decay`` carries the membrane over a step (none for IF),
    ``gain`` scales its input (for CubaLIF: the current), ``keep_i``/``gain_i`` the CubaLIF
    current, ``keep_a`` and ``beta`` the ALIF adaptation."""
    c = net.coefficients(pop)
    gain = "gain_v" if isinstance(net.graph.nodes[pop], CubaLIF) else "gain"
    shaped: dict[str, torch.Tensor | None] = {"decay": c.get("keep"), "gain": _column(c[gain])}
    shaped.update({k: _column(c[k]) for k in ("keep_i", "gain_i", "keep_a", "beta") if k in c})
    return shaped


def _column(value: torch.Tensor) -> torch.Tensor:
    """A per-neuron coefficient shaped to multiply [batch, n_post, n_pre]."""
    return value.reshape(-1, 1) if value.numel() > 1 else value


def _split(grads: dict[str, torch.Tensor], syn: Synapse, g: torch.Tensor) -> None:
    if syn.bias:
        grads[f"{syn.name}.weight"] = g[:, :-1]
        grads[f"{syn.name}.bias"] = g[:, -1]
    else:
        grads[f"{syn.name}.weight"] = g


class Eprop:
    """e-prop gradients of the network ``net`` (whose parameters it reads) for ``plan``."""

    def __init__(self, net: GraphNetwork, plan: Plan, options: EpropOptions, seed: int = 0,
                 cluster: Cluster | None = None) -> None:
        self.net, self.plan, self.options = net, plan, options
        self.cluster = cluster or Cluster.single()
        self.feedback = Feedback(net, plan, options.learning_signal, seed)

    @torch.no_grad()
    def gradients(
        self,
        x: torch.Tensor,
        labels: torch.Tensor,
        decision: slice,
        global_batch: int | None = None,
        signal: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[float, dict[str, torch.Tensor]]:
        """(summed loss of the batch, gradients {"node.weight"/"node.bias": tensor}) of the
        batch's summed loss divided by ``global_batch`` (default: the batch size).

        ``signal``: a learning signal per step ({population: [batch, n]}) to use instead
        of the feedback (the true one, from :func:`reference_gradients`, in the tests)."""
        net, plan = self.net, self.plan
        batch, steps = x.shape[0], x.shape[1]
        global_batch = global_batch or batch
        ref = net._p(plan.synapses[0].name, "weight")
        runner = Runner(net, plan, batch, ref)
        traces = Traces(net, plan, batch, ref, regularised=bool(self.options.rate_reg))
        window = range(steps)[decision]
        scores = torch.zeros(batch, net.graph.shape(plan.readout)[0], dtype=ref.dtype, device=ref.device)
        for t in range(steps):
            step = runner.step(x[:, t])
            inside = t in window
            traces.update(step, inside, signal[t] if signal is not None else None)
            if inside:
                scores += step.y[plan.readout]
        scores /= len(window)
        loss = F.cross_entropy(scores, labels, reduction="sum")
        # dE/dscores for E = summed loss / global_batch; each decision step gets 1/|window|.
        delta = (torch.softmax(scores, 1) - F.one_hot(labels, scores.shape[1]).to(scores.dtype)) / global_batch
        error = delta * net._p(plan.readout, "gain").reshape(-1) / len(window)  # [batch, n_out]
        excess = self._rate_excess(traces.spikes, global_batch * steps) if signal is None else {}
        grads: dict[str, torch.Tensor] = {}
        for syn in plan.synapses:
            if syn.target == plan.readout:
                _split(grads, syn, error.T @ traces.window[syn.name])
            elif signal is not None:
                _split(grads, syn, traces.signal[syn.name])
            else:
                learning = error @ self.feedback.matrix(syn.target).T  # [batch, n_post]
                g = torch.einsum("bj,bji->ji", learning, traces.window[syn.name])
                if syn.target in excess:  # d/dW of the rate regulariser
                    g = g + excess[syn.target].unsqueeze(1) * traces.total[syn.name]
                _split(grads, syn, g)
        return float(loss), grads

    def _rate_excess(self, spikes: Mapping[str, torch.Tensor], count: int) -> dict[str, torch.Tensor]:
        """Per population, d E_reg / d z_j(t) for E_reg = rate_reg/2 sum_j (rate_j - target)^2,
        rate_j = spikes per step over the global batch and the sequence (``count`` = global
        batch x steps). Spike counts are summed over ranks: one collective per population,
        which :meth:`idle` matches on a rank with no samples."""
        o = self.options
        if not o.rate_reg:
            return {}
        rates = {p: self.cluster.sum_tensor(spikes[p].clone()) / count for p in self.plan.populations}
        return {p: o.rate_reg * (r - o.rate_target * self.net.dt) / count for p, r in rates.items()}

    def idle(self) -> None:
        """A rank whose shard of a batch is empty: it joins the collectives of
        :meth:`gradients` with nothing to add (its gradients are zero)."""
        ref = self.net._p(self.plan.synapses[0].name, "weight")
        zeros = {p: torch.zeros(self.net.graph.shape(p)[0], dtype=ref.dtype, device=ref.device)
                 for p in self.plan.populations}
        self._rate_excess(zeros, 1)

    def apply(self, grads: Mapping[str, torch.Tensor]) -> None:
        """Write ``grads`` into the parameters' ``.grad`` (for the optimiser)."""
        for key, g in grads.items():
            node, field = key.rsplit(".", 1)
            param = self.net._p(node, field)
            param.grad = g.to(param.dtype).reshape(param.shape).clone()


def reference_gradients(
    net: GraphNetwork,
    plan: Plan,
    x: torch.Tensor,
    labels: torch.Tensor,
    decision: slice,
    *,
    detach_delayed: bool = False,
    rate_reg: float = 0.0,
    rate_target: float = 10.0,
) -> tuple[float, dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    """The same loss by autograd through time: (loss, gradients, per step the total
    derivative of the loss with respect to each population's spikes).

    With ``detach_delayed`` the delayed spike paths (the recurrence) are cut: the
    authors' construction, whose gradient symmetric e-prop must equal exactly."""
    batch, steps = x.shape[0], x.shape[1]
    ref = net._p(plan.synapses[0].name, "weight")
    runner = Runner(net, plan, batch, ref, detach_delayed=detach_delayed)
    taps = [{p: torch.zeros(batch, net.graph.shape(p)[0], dtype=ref.dtype, device=ref.device, requires_grad=True)
             for p in plan.populations} for _ in range(steps)]
    window = range(steps)[decision]
    readout, spikes = [], {p: 0.0 for p in plan.populations}
    for t in range(steps):
        step = runner.step(x[:, t], taps[t])
        if t in window:
            readout.append(step.y[plan.readout])
        for p in plan.populations:
            spikes[p] = spikes[p] + step.y[p].sum(0)
    scores = torch.stack(readout).mean(0)
    loss = F.cross_entropy(scores, labels, reduction="sum") / batch
    for p in plan.populations:
        rate = spikes[p] / (batch * steps)
        loss = loss + rate_reg / 2 * ((rate - rate_target * net.dt) ** 2).sum()
    params = {}
    for syn in plan.synapses:
        params[f"{syn.name}.weight"] = net._p(syn.name, "weight")
        if syn.bias:
            params[f"{syn.name}.bias"] = net._p(syn.name, "bias")
    flat_taps = [tap for step_taps in taps for tap in step_taps.values()]
    found = torch.autograd.grad(loss, [*params.values(), *flat_taps], allow_unused=True)
    grads = dict(zip(params, found[: len(params)]))
    signal_iter = iter(found[len(params):])
    signal = [{p: _zero_if_none(next(signal_iter), tap) for p, tap in step_taps.items()} for step_taps in taps]
    return float(loss.detach()), grads, signal


def _zero_if_none(g: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if g is None else g


# ------------------------------------------------------------------ the training method


def train_eprop(
    graph: Graph,
    data: Dataset,
    config: TrainConfig = TrainConfig(),
    progress: Progress | None = None,
    cluster: Cluster | None = None,
) -> TrainResult:
    """Online e-prop with Adam; data-parallel under ``torchrun`` as BPTT is."""
    data.check_model(graph)
    options = EpropOptions.of(config.options)
    plan = make_plan(graph, options.learning_signal)
    if cluster is None:
        with Cluster.from_environment(config.device) as made:
            return train_eprop(graph, data, config, progress, made)
    device, net = network_for(graph, data, config, cluster, DEFAULT_SURROGATE)
    eprop = Eprop(net, plan, options, config.seed, cluster)

    def batch_gradients(x: torch.Tensor, y: torch.Tensor, global_batch: int) -> float:
        loss, grads = eprop.gradients(x, y, data.decision_steps, global_batch)
        eprop.apply(grads)
        return loss

    def after_step() -> None:
        eprop.feedback.after_update(options.kp_decay)

    history, seconds = fit(net, data, config, cluster, batch_gradients, progress, after_step, eprop.idle)
    extra = {"learning_signal": options.learning_signal}
    return TrainResult(net.to_graph(), history[-1]["test_accuracy"], history, seconds, str(device),
                       "eprop", cluster.rank, cluster.world_size, extra)


train_eprop.options = OPTIONS  # type: ignore[attr-defined]
