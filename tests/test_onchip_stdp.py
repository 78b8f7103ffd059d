"""STDP and reward-modulated STDP on the Loihi 2 target (docs/onchip-learning.md, "STDP on
chip"): the IR's ``STDP`` / ``RewardSTDP`` with ``delay=1`` lowered to Lava's LearningDense
and our PairGroup post population (spikes on ``s_in_bap``, y1..y3 from its own post trace
and the reward Input), checked against ``neuromorph.simulate`` sample after sample; a guard
that the post's spikes and the reward reach the engine; the refusals, one line each."""
from __future__ import annotations

import numpy as np
import pytest

from neuromorph.artifact import dumps_text, loads_artifact
from neuromorph.backends.loihi2.target import learned_weights
from neuromorph.compile import compile_graph
from neuromorph.errors import IRError
from neuromorph.ir import ALIF, IF, LI, LIF, STDP, Affine, CubaLIF, Graph, Input, Linear, Output, RewardSTDP
from neuromorph.registry import target
from neuromorph.simulate import simulate

from onchip_nets import ir_samples

DT = 1e-3
REL = 1e-6
N_IN, N_OUT = 5, 4


def post_node(kind: str):
    th = np.linspace(0.8, 1.2, N_OUT)
    return {"lif": LIF(tau=0.01, r=10.0, v_threshold=th),
            "if": IF(r=200.0, v_threshold=th),
            "cuba": CubaLIF(tau_mem=0.01, tau_syn=0.004, r=10.0, v_threshold=th),
            "alif": ALIF(tau_mem=0.01, r=10.0, v_threshold=th, tau_adapt=0.05, beta=0.2)}[kind]


def graph(rule, *, post: str = "lif", reward: int = 0, hidden: bool = False, bias: bool = False,
          seed: int = 0) -> Graph:
    """x (spikes) [-> win -> hid (LIF)] -> w (plastic) -> h -> y; ``reward``: the shape of
    the reward Input 'r' (0: none)."""
    rng = np.random.default_rng(seed)
    w0 = rng.uniform(0.2, 0.8, (N_OUT, N_IN))
    conn = Affine(w0, np.full(N_OUT, 0.05), plasticity=rule) if bias else Linear(w0, plasticity=rule)
    nodes = {"x": Input((N_IN,)), "w": conn, "h": post_node(post), "y": Output()}
    edges = [("w", "h"), ("h", "y")]
    if hidden:
        nodes.update({"win": Linear(rng.uniform(0.3, 0.9, (N_IN, N_IN))), "hid": LIF(tau=0.005, r=5.0)})
        edges += [("x", "win"), ("win", "hid"), ("hid", "w")]
    else:
        edges.append(("x", "w"))
    if reward:
        nodes["r"] = Input((reward,))
    return Graph(nodes, edges, dt=DT)


def stdp(**kw) -> STDP:
    return STDP(**{"lr": 0.5, "a_plus": 0.03, "a_minus": 0.025, "tau_plus": 0.01, "tau_minus": 0.015,
                   "delay": 1, **kw})


def rstdp(**kw) -> RewardSTDP:
    return RewardSTDP(**{"reward": "r", "lr": 20.0, "a_plus": 0.03, "a_minus": 0.025, "tau_plus": 0.01,
                         "tau_minus": 0.015, "tau_e": 0.05, "delay": 1, **kw})


def inputs_for(g: Graph, n: int = 3, steps: int = 40, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {"x": (rng.random((n, steps, N_IN)) < 0.4).astype(np.float64)}
    if "r" in g.nodes:
        out["r"] = rng.normal(0.0, 1.0, (n, steps, g.shape("r")[0]))
    return out


def rel_change(got: np.ndarray, want: np.ndarray, w0: np.ndarray) -> float:
    """Relative error of the weight change (stricter than of the weights)."""
    assert np.abs(want - w0).max() > 1e-3, "no learning: the comparison would be empty"
    return float(np.abs((got - w0) - (want - w0)).max() / np.abs(want - w0).max())


def with_rule(g: Graph, **changes) -> Graph:
    return g.replace_nodes(w=g.nodes["w"].replace(plasticity=g.nodes["w"].plasticity.replace(**changes)))


CASES = {
    "stdp-lif": lambda: graph(stdp()),
    "stdp-if-from-lif-bias": lambda: graph(stdp(a_minus=-0.01), post="if", hidden=True, bias=True),
    "stdp-alif-trace-of-one-step": lambda: graph(stdp(tau_plus=DT, tau_minus=DT), post="alif"),
    "rstdp-scalar-reward": lambda: graph(rstdp(), reward=1),
    "rstdp-per-neuron-reward-cuba": lambda: graph(rstdp(), post="cuba", reward=N_OUT),
    "rstdp-no-potentiation-from-lif": lambda: graph(rstdp(a_plus=0.0, tau_plus=DT), reward=1, hidden=True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_target_learns_as_the_ir_with_delay_one_sample_after_sample(case):
    g = CASES[case]()
    inputs = inputs_for(g)
    art = loads_artifact(dumps_text(compile_graph(g, backend="lava", precision="float")))  # through the file
    rec = target("lava").run(art, inputs, learn=True)
    want_w, want_out = ir_samples(g, inputs)
    got = rec.probes["w.weight"]
    w0 = g.nodes["w"].weight
    assert got.shape == (3, *w0.shape)
    prev = w0
    for j in range(3):  # every sample learns, and the chip's change equals the IR's
        assert rel_change(got[j], want_w[j], prev) <= REL
        np.testing.assert_allclose(got[j], want_w[j], rtol=REL, atol=0)
        prev = want_w[j]
    assert rec.outputs["y"].sum() > 20  # the post spikes: the pairings are exercised
    np.testing.assert_array_equal(rec.outputs["y"], want_out["y"])
    assert np.array_equal(learned_weights(rec)["w"], got[-1])
    # the latency is real: the IR without it ends elsewhere
    now, _ = ir_samples(with_rule(g, delay=0), inputs)
    assert rel_change(now[-1], want_w[-1], w0) > 1e-3


def test_a_post_trace_of_one_step_pairs_same_step_spikes_both_ways():
    """With dt/tau = 1 both traces hold only this step's spikes: a pre and a post spike of
    the same step add lr*(a_plus - a_minus) (docs/semantics.md section 6), on the chip too."""
    g = graph(stdp(a_plus=0.05, a_minus=0.02, tau_plus=DT, tau_minus=DT))
    inputs = inputs_for(g, n=1)
    rec = target("lava").run(compile_graph(g, backend="lava"), inputs, learn=True)
    res = simulate(g, {"x": inputs["x"][0]}, record=["w.weight"])
    z, x = res["y"], inputs["x"][0]
    pairs = z.T @ x  # same-step pairings, per synapse
    assert pairs.max() > 0
    lr = g.nodes["w"].plasticity.lr
    np.testing.assert_allclose(res["w.weight"][-1] - g.nodes["w"].weight, lr * (0.05 - 0.02) * pairs, atol=1e-12)
    np.testing.assert_allclose(rec.probes["w.weight"][0], res["w.weight"][-1], rtol=REL, atol=0)


# ------------------------------------------------------------------ guards


@pytest.mark.parametrize("rule", ["stdp", "reward_stdp"])
def test_guard_the_post_spikes_reach_the_engine(rule, monkeypatch):
    """Potentiation only (a_minus = 0): every weight change needs a post spike on s_in_bap.
    Wired, the chip moves as the IR; with s_in_bap left unconnected (Lava reads zeros) the
    weights come back as compiled: the test above would fail."""
    from neuromorph.backends.loihi2.lava import runner

    g = graph(stdp(a_minus=0.0), seed=3) if rule == "stdp" else graph(rstdp(a_minus=0.0), reward=1, seed=3)
    inputs = inputs_for(g, n=1)
    art = compile_graph(g, backend="lava")
    w0 = g.nodes["w"].weight
    wired = target("lava").run(art, inputs, learn=True).probes["w.weight"][0]
    want, _ = ir_samples(g, inputs)
    assert rel_change(wired, want[0], w0) <= REL

    def without_bap(group, syn, spec):  # y1..y3 as the runner connects them, s_in_bap left unconnected
        for k in (1, 2, 3):
            getattr(group, f"y{k}_out").connect(getattr(syn, f"s_in_y{k}"))

    monkeypatch.setattr(runner, "connect_post_factors", without_bap)
    unwired = target("lava").run(art, inputs, learn=True).probes["w.weight"][0]
    np.testing.assert_allclose(unwired, w0, rtol=1e-14, atol=0)


def test_guard_the_reward_reaches_the_engine():
    """A zero reward stream leaves the compiled weights (to the round-off of the gain folded
    into the chip's weights); the reward the test gives moves them by the IR's amount."""
    g = graph(rstdp(), reward=N_OUT, seed=4)
    inputs = inputs_for(g, n=1)
    art = compile_graph(g, backend="lava")
    w0 = g.nodes["w"].weight
    quiet = target("lava").run(art, {**inputs, "r": np.zeros_like(inputs["r"])}, learn=True)
    np.testing.assert_allclose(quiet.probes["w.weight"][0], w0, rtol=1e-14, atol=0)
    moved = target("lava").run(art, inputs, learn=True).probes["w.weight"][0]
    want, _ = ir_samples(g, inputs)
    assert np.abs(moved - w0).max() > 1e-2, "the reward stayed zero: nothing learnt"
    assert rel_change(moved, want[0], w0) <= REL


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize("make, precision, words", [
    (lambda: graph(stdp(delay=0)), "float", "set delay=1"),
    (lambda: graph(rstdp(delay=2), reward=1), "float", "set delay=1"),
    (lambda: graph(stdp(t_epoch=2)), "float", "t_epoch = 2"),
    (lambda: graph(rstdp(t_epoch=3), reward=1), "float", "t_epoch = 3"),
    (lambda: graph(stdp(w_min=0.0, w_max=1.0)), "float", "does not clip weights"),
    (lambda: graph(rstdp(w_max=1.0), reward=1), "float", "does not clip weights"),
    (lambda: graph(stdp()), "fixed", "float precision only"),
    (lambda: graph(rstdp(), reward=1), "fixed", "float precision only"),
    (lambda: graph(rstdp(tau_plus=DT), reward=1), "float", "needs tau_plus > dt"),
    (lambda: Graph({"x": Input((N_IN,)), "w": Linear(np.ones((N_OUT, N_IN)), plasticity=rstdp()), "h": LIF(tau=0.01),
                    "y": Output(), "r": Output()}, [("x", "w"), ("w", "h"), ("h", "y"), ("h", "r")], dt=DT),
     "float", "give the reward as an Input stream"),
    (lambda: Graph({"x": Input((N_IN,)), "win": Linear(np.ones((N_IN, N_IN))), "li": LI(tau=0.01),
                    "w": Linear(np.ones((N_OUT, N_IN)), plasticity=stdp()), "h": LIF(tau=0.01), "y": Output()},
                   [("x", "win"), ("win", "li"), ("li", "w"), ("w", "h"), ("h", "y")], dt=DT),
     "float", "non-spiking"),
    (lambda: Graph({"x": Input((N_IN,)), "w": Linear(np.ones((N_OUT, N_IN)), plasticity=stdp()), "h": LI(tau=0.01),
                    "y": Output()}, [("x", "w"), ("w", "h"), ("h", "y")], dt=DT),
     "float", "reads the population this connection feeds"),
], ids=["stdp-delay0", "rstdp-delay2", "stdp-epoch", "rstdp-epoch", "stdp-bounds", "rstdp-bounds", "stdp-fixed",
        "rstdp-fixed", "rstdp-tau-plus-dt", "rstdp-reward-in-graph", "stdp-non-spiking-source", "stdp-li-post"])
def test_what_the_chip_cannot_run_is_refused_at_compile_time_in_one_line(make, precision, words):
    g = make()
    with pytest.raises(IRError) as exc:
        compile_graph(g, backend="lava", precision=precision, calibration=inputs_for(g, n=1, steps=5))
    text = str(exc.value)
    assert words in text and "node 'w'" in text and "\n" not in text
