"""The asynchronous learning plan (backends/loihi2/lava/learning_async.py; docs/onchip-learning.md):
the same Lava process graph as the synchronous plan (RingBuffers, Lava's Dense / DelayDense,
NeuronGroups, Lava's LearningDense running Lava's learning engine, our post populations),
every process under AsyncProtocol. Each case runs both ways and must agree exactly: outputs,
spike counts, probes and the learnt weights after every sample, float and fixed point, for
the delta rule (three_factor), e-prop (error Input, and computed on chip through a Dense
or DelayDense, float and fixed) and STDP / reward-STDP. The async plan is the default of a
learning run; the synchronous plan stays selectable, and is used when a process has no
asynchronous model."""
from __future__ import annotations

import numpy as np
import pytest

from neuromorph.compile import compile_graph
from neuromorph.errors import NeuromorphError
from neuromorph.ir import LI, LIF, STDP, Affine, EProp, Graph, Input, Linear, Output, RewardSTDP, Scale, ThreeFactor

from onchip_nets import recurrent_net

DT = 1e-3
SYNC = "LoihiProtocol"
ASYNC = "AsyncProtocol"


def spikes(rng: np.random.Generator, shape: tuple, p: float) -> np.ndarray:
    return (rng.random(shape) < p).astype(np.float64)


def delta(rng: np.random.Generator, *, hidden: bool = False, n: int = 3, t: int = 40):
    """The delta rule: x [-> win -> h (LIF)] -> w (ThreeFactor) -> ro (LI), the error
    ``label/2 - v_ro`` computed on chip (a TeacherGroup and its label RingBuffer)."""
    w = rng.normal(0.0, 0.3, (2, 3))
    rule = ThreeFactor(error="err", lr=200.0, tau_pre=0.01)
    nodes = {"x": Input((3,)), "label": Input((2,)), "w": Linear(w, plasticity=rule), "ro": LI(tau=0.01),
             "neg": Scale(-1.0), "half": Scale(0.5), "err": Output(), "y": Output()}
    edges = [("w", "ro"), ("ro", "y"), ("ro", "neg", 1), ("neg", "err"), ("label", "half", 1 if hidden else 0),
             ("half", "err")]
    if hidden:
        nodes.update({"win": Linear(np.full((3, 3), 0.6)), "h": LIF(tau=0.005, r=4.0)})
        edges += [("x", "win"), ("win", "h"), ("h", "w")]
    else:
        edges.append(("x", "w"))
    label = np.broadcast_to(rng.uniform(-1, 1, (n, 1, 2)), (n, t, 2)).copy()
    return Graph(nodes, edges, dt=DT), {"x": spikes(rng, (n, t, 3), 0.5), "label": label}


def host_error(rng: np.random.Generator, n: int = 3, t: int = 40):
    """An Affine connection whose error is an Input stream."""
    rule = ThreeFactor(error="m", lr=50.0, tau_pre=0.004)
    g = Graph({"x": Input((3,)), "m": Input((2,)), "w": Affine(rng.normal(0.0, 0.3, (2, 3)), np.full(2, 0.5),
                                                                 plasticity=rule),
               "ro": LI(tau=0.02), "y": Output()}, [("x", "w"), ("w", "ro"), ("ro", "y")], dt=DT)
    return g, {"x": spikes(rng, (n, t, 3), 0.5), "m": rng.normal(0.0, 1.0, (n, t, 2))}


def eprop(rng: np.random.Generator, *, lr: float = 10.0, n: int = 3, t: int = 40, p_err: float = 0.4):
    """x -> w (EProp, error Input 'err', random feedback) -> h (LIF, reset by subtraction)
    -> w_out -> ro (LI) -> y (tests/test_onchip_eprop.py's target_graph)."""
    n_in, n_h, n_err = 5, 6, 3
    rule = EProp(error="err", lr=lr, tau_out=0.02, feedback=rng.normal(0.0, 1.0, (n_h, n_err)), gamma=0.3,
                 delay=1)
    nodes = {"x": Input((n_in,)), "w": Linear(rng.uniform(0.0, 0.6, (n_h, n_in)), plasticity=rule),
             "h": LIF(tau=0.02, r=25.0, v_threshold=np.linspace(0.8, 1.2, n_h), v_leak=0.1, reset="subtract"),
             "w_out": Linear(rng.normal(0.0, 0.5, (n_err, n_h))), "ro": LI(tau=0.03, r=10.0), "y": Output(),
             "err": Input((n_err,))}
    g = Graph(nodes, [("x", "w"), ("w", "h"), ("h", "w_out"), ("w_out", "ro"), ("ro", "y")], dt=DT)
    err = rng.normal(0.0, 1.0, (n, t, n_err)) * (rng.random((n, t, 1)) < p_err)
    return g, {"x": spikes(rng, (n, t, n_in), 0.4), "err": err}


def eprop_recurrent(rng: np.random.Generator, n: int = 3, t: int = 40, frozen_readout: bool = False,
                    lr: float = 4.0):
    """``build.eprop_rule`` on a recurrent net: e-prop on w_in and w_rec, the delta rule on
    w_out, the error Output read through a delay-2 edge (a Dense from the readout's
    TeacherGroup). ``frozen_readout``: w_out does not learn and the error reads the
    readout (a ReadoutGroup) through a delay-3 edge (a DelayDense)."""
    from neuromorph.build import eprop_rule

    n_in, n_out = 5, 3
    g = eprop_rule(recurrent_net(rng, n_in=n_in, n_out=n_out), lr=lr, lr_readout=3.0, seed=1)
    if frozen_readout:  # tests/test_onchip_eprop.py's readout-lag case
        drop = {"error", "error_output"}
        edges = [(e.source, e.target, 3 if (e.source, e.target) == ("ro", "error_eprop_output") else e.delay)
                 for e in g.edges if e.source not in drop and e.target not in drop]
        nodes = {k: v for k, v in g.nodes.items() if k not in drop}
        g = Graph(dict(nodes, w_out=g.nodes["w_out"].replace(plasticity=None)), edges, dt=DT)
    label = np.zeros((n, t, n_out))
    for j in range(n):
        label[j, :, j % n_out] = 1.0
    return g, {"x": spikes(rng, (n, t, n_in), 0.4), "label": label}


def pairing(rng: np.random.Generator, *, reward: bool, n: int = 3, t: int = 40):
    """STDP (or reward-STDP with a scalar reward Input 'r') into a LIF population
    (tests/test_onchip_stdp.py), from a hidden LIF population for reward-STDP."""
    n_in, n_out = 5, 4
    if reward:
        rule = RewardSTDP(reward="r", lr=20.0, a_plus=0.03, a_minus=0.025, tau_plus=0.01, tau_minus=0.015,
                          tau_e=0.05, delay=1)
    else:
        rule = STDP(lr=0.5, a_plus=0.03, a_minus=0.025, tau_plus=0.01, tau_minus=0.015, delay=1)
    nodes = {"x": Input((n_in,)), "w": Linear(rng.uniform(0.2, 0.8, (n_out, n_in)), plasticity=rule),
             "h": LIF(tau=0.01, r=10.0, v_threshold=np.linspace(0.8, 1.2, n_out)), "y": Output()}
    edges = [("w", "h"), ("h", "y")]
    inputs = {"x": spikes(rng, (n, t, n_in), 0.4)}
    if reward:
        nodes.update({"win": Linear(rng.uniform(0.3, 0.9, (n_in, n_in))), "hid": LIF(tau=0.005, r=5.0),
                      "r": Input((1,))})
        edges += [("x", "win"), ("win", "hid"), ("hid", "w")]
        inputs["r"] = rng.normal(0.0, 1.0, (n, t, 1))
    else:
        edges.append(("x", "w"))
    return Graph(nodes, edges, dt=DT), inputs


CASES = {
    "delta-readout": lambda rng: delta(rng),
    "delta-hidden": lambda rng: delta(rng, hidden=True),
    "delta-host-error": host_error,
    "eprop": eprop,
    "eprop-recurrent-error-on-chip": eprop_recurrent,
    "eprop-frozen-readout-delayed-error": lambda rng: eprop_recurrent(rng, frozen_readout=True),
    "stdp": lambda rng: pairing(rng, reward=False),
    "rstdp-from-hidden": lambda rng: pairing(rng, reward=True),
}
FIXED_CASES = {
    "delta-readout": lambda rng: delta(rng),
    "delta-hidden": lambda rng: delta(rng, hidden=True),
    "eprop": lambda rng: eprop(rng, lr=30.0, p_err=0.1),
    "eprop-recurrent-error-on-chip": lambda rng: eprop_recurrent(rng, lr=4.0),
    "eprop-frozen-readout-delayed-error": lambda rng: eprop_recurrent(rng, frozen_readout=True, lr=4.0),
}


def runs(graph: Graph, inputs: dict, precision: str, **kwargs):
    """The network learnt both ways: {plan protocol: (outputs, counts, info)}."""
    from neuromorph.backends.loihi2.lava.runner import Plan, run_lava

    kw = {"calibration": inputs} if precision == "fixed" else {}
    art = compile_graph(graph, backend="lava", precision=precision, **kw)
    net, q = art.payload.netlist, art.payload.quantized if precision == "fixed" else None
    probes = [(p.name, s) for p in net.populations for s in ("spikes", "v")]
    out = {}
    for plan in (Plan(1, asynchronous=False), None):  # None: the default plan of a learning run
        res = run_lava(net, inputs, precision, q, probes=probes, plan=plan, learn=True, **kwargs)
        out[res[2].plan.describe().rsplit(", ", 1)[1].rstrip(")")] = res
    return out


def assert_identical(both: dict) -> None:
    (o1, c1, i1), (o2, c2, i2) = both[SYNC], both[ASYNC]
    assert i1.plan.learning and i2.plan.learning
    assert (i1.plan.asynchronous, i2.plan.asynchronous) == (False, True)
    assert c1 == c2
    assert o1.keys() == o2.keys() and i1.probes.keys() == i2.probes.keys() and i1.learned.keys() == i2.learned.keys()
    for name in o1:
        assert np.array_equal(o1[name], o2[name]), name
    for key in i1.probes:
        assert np.array_equal(i1.probes[key], i2.probes[key]), key
    for name, w in i1.learned.items():
        assert np.array_equal(w, i2.learned[name]), name  # after every sample
        assert not np.array_equal(w[0], w[-1]), f"{name} did not learn: the comparison would be empty"
    assert i1.chip_steps == i2.chip_steps and i1.processes == i2.processes


@pytest.mark.parametrize("case", list(CASES))
def test_float_async_learning_equals_the_synchronous_plan_exactly(case):
    assert_identical(runs(*CASES[case](np.random.default_rng(3)), "float"))


@pytest.mark.parametrize("case", list(FIXED_CASES))
def test_fixed_async_learning_equals_the_synchronous_plan_exactly(case):
    both = runs(*FIXED_CASES[case](np.random.default_rng(7)), "fixed", rng_seed=5)  # stochastic rounding
    assert_identical(both)


def test_async_learning_runs_in_chunks_with_progress_and_the_plan_is_selectable():
    from neuromorph.backends.loihi2.lava.runner import Plan, run_lava

    g, inputs = delta(np.random.default_rng(1), hidden=True)
    net = compile_graph(g, backend="lava").payload.netlist
    seen: list[tuple[int, int]] = []
    whole = run_lava(net, inputs, learn=True)
    chunked = run_lava(net, inputs, learn=True, plan=Plan(1, asynchronous=True), chunk=7,
                       progress=lambda done, total: seen.append((done, total)))
    total = whole[2].chip_steps
    assert seen[-1] == (total, total) and len(seen) == -(-total // 7)
    for res in (whole, chunked):
        assert res[2].plan.describe() == "one sample at a time, learning (Lava Dense and LearningDense, AsyncProtocol)"
    assert np.array_equal(whole[2].learned["w"], chunked[2].learned["w"])
    assert np.array_equal(whole[0]["y"], chunked[0]["y"]) and whole[1] == chunked[1]
    sync = run_lava(net, inputs, learn=True, plan=Plan(1, asynchronous=False))
    assert sync[2].plan.describe() == "one sample at a time, learning (Lava Dense and LearningDense, LoihiProtocol)"
    frozen = run_lava(net, inputs)  # not learning: the default stays one sample at a time, synchronous
    assert frozen[2].plan.describe() == "one sample at a time (Lava Dense, LoihiProtocol)"


def test_a_process_without_an_async_model_runs_synchronously_or_is_refused(monkeypatch):
    from lava.proc.dense.process import Dense

    from neuromorph.backends.loihi2.lava import learning_async
    from neuromorph.backends.loihi2.lava.runner import Plan, run_lava

    g, inputs = delta(np.random.default_rng(1), hidden=True)
    net = compile_graph(g, backend="lava").payload.netlist
    want = run_lava(net, inputs, learn=True)[2].learned["w"]
    monkeypatch.delitem(learning_async.MODELS, (Dense, "float"))
    got = run_lava(net, inputs, learn=True)
    assert got[2].plan.describe().endswith("LoihiProtocol)")
    assert np.array_equal(got[2].learned["w"], want)
    with pytest.raises(NeuromorphError) as exc:
        run_lava(net, inputs, learn=True, plan=Plan(1, asynchronous=True))
    assert "no asynchronous float model for Dense" in str(exc.value) and "\n" not in str(exc.value)


def test_a_failing_learning_engine_ends_an_async_run_in_one_line(monkeypatch):
    import multiprocessing

    from neuromorph.backends.loihi2.lava import learning
    from neuromorph.backends.loihi2.lava.runner import run_lava

    def broken(self):
        if self.time_step == 30:
            raise ValueError("engine broke")
        learning.PyLearningDenseModelFloat.run_lrn(self)

    monkeypatch.setattr(learning.PlasticDenseFloat, "run_lrn", broken)
    g, inputs = delta(np.random.default_rng(1))
    net = compile_graph(g, backend="lava").payload.netlist
    with pytest.raises(NeuromorphError) as exc:
        run_lava(net, inputs, learn=True, stall_timeout=20)
    text = str(exc.value)
    assert "engine broke" in text and "\n" not in text
    assert not multiprocessing.active_children()


def test_a_stuck_learning_engine_ends_an_async_run_at_the_stall_timeout(monkeypatch):
    import multiprocessing
    import time

    from neuromorph.backends.loihi2.lava import learning
    from neuromorph.backends.loihi2.lava.runner import run_lava

    def stuck(self):
        if self.time_step == 30:
            time.sleep(3600)
        learning.PyLearningDenseModelFloat.run_lrn(self)

    monkeypatch.setattr(learning.PlasticDenseFloat, "run_lrn", stuck)
    g, inputs = delta(np.random.default_rng(1))
    net = compile_graph(g, backend="lava").payload.netlist
    start = time.monotonic()
    with pytest.raises(NeuromorphError) as exc:
        run_lava(net, inputs, learn=True, stall_timeout=1.5)
    assert "stalled" in str(exc.value) and "\n" not in str(exc.value)
    assert time.monotonic() - start < 30
    assert not multiprocessing.active_children()
