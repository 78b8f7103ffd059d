"""Plasticity in the IR: typed rule records, their discrete updates (docs/semantics.md
section 6) in the reference simulator, and their trip through model files and NIR.

Each rule's weight trajectory is checked against a small loop written here from the
document (not from simulate's code); the guard tests fail for a rule that never learns.
numpy and nir only: no torch, no Lava.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import neuromorph as nm
from neuromorph.errors import IRError, ModelFileError, NeuromorphError
from neuromorph.ir import (
    ALIF, LI, LIF, PLASTICITY_RULES, STDP, Affine, EProp, Graph, Input, Linear, Output, Plasticity,
    RewardSTDP, Scale, ThreeFactor,
)
from neuromorph.simulate import simulate

DT = 1e-3
TOL = 1e-12


def spikes(rng: np.random.Generator, steps: int, n: int, p: float) -> np.ndarray:
    return (rng.random((steps, n)) < p).astype(np.float64)


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# ------------------------------------------------------------------ the records


@pytest.mark.parametrize("make, words", [
    (lambda: STDP(tau_plus=0.0), "'tau_plus' must be a number > 0"),
    (lambda: STDP(tau_minus=float("nan")), "'tau_minus' must be a number > 0"),
    (lambda: STDP(lr=-0.1), "'lr' must be a number >= 0"),
    (lambda: STDP(a_plus="0.1"), "'a_plus' must be a finite number"),
    (lambda: STDP(a_minus=float("inf")), "'a_minus' must be a finite number"),
    (lambda: STDP(t_epoch=0), "'t_epoch' must be an int >= 1"),
    (lambda: STDP(t_epoch=2.5), "'t_epoch' must be an int >= 1"),
    (lambda: STDP(t_epoch=True), "'t_epoch' must be an int >= 1"),
    (lambda: STDP(delay=-1), "'delay' must be an int >= 0"),
    (lambda: STDP(delay=0.5), "'delay' must be an int >= 0"),
    (lambda: EProp(error="e", lr=1.0, tau_out=0.02, delay=True), "'delay' must be an int >= 0"),
    (lambda: STDP(w_min=1.0, w_max=0.5), "w_min must be < w_max"),
    (lambda: STDP(w_max=float("nan")), "'w_max' must be None or a finite number"),
    (lambda: RewardSTDP(reward="r", lr=1.0, tau_e=-1.0), "'tau_e' must be a number > 0"),
    (lambda: ThreeFactor(error="", lr=1.0, tau_pre=0.01), "'error' must be the name of a node"),
    (lambda: ThreeFactor(error=3, lr=1.0, tau_pre=0.01), "'error' must be the name of a node"),
    (lambda: EProp(error="e", lr=1.0, tau_out=0.02, feedback=[1.0, 2.0]), "'feedback' must be None or a 2-d"),
    (lambda: EProp(error="e", lr=1.0, tau_out=0.02, feedback=[[np.inf]]), "'feedback' must be None or a 2-d"),
    (lambda: EProp(error="e", lr=1.0, tau_out=0.02, gamma=0.0), "'gamma' must be a number > 0"),
    (lambda: Plasticity("hebb"), "unknown plasticity rule 'hebb' (known: stdp, reward_stdp, three_factor, eprop)"),
    (lambda: Plasticity("stdp", {"a": 0.1}), "plasticity 'stdp' has no parameter 'a'"),
    (lambda: Plasticity("three_factor", {"lr": 1.0, "tau_pre": 0.01}), "plasticity 'three_factor' needs 'error'"),
    (lambda: Plasticity("stdp", [("lr", 1.0)]), "params must be a mapping"),
])
def test_bad_rule_fields_are_refused_in_one_line(make, words):
    with pytest.raises(IRError) as exc:
        make()
    assert words in one_line(exc)


def test_records_are_typed_frozen_and_built_by_name():
    rule = Plasticity("reward_stdp", {"reward": "r", "lr": 2, "t_epoch": 4.0, "w_max": 1})
    assert type(rule) is RewardSTDP and rule.rule == "reward_stdp" and rule.third_factor == "r"
    assert rule.lr == 2.0 and isinstance(rule.lr, float) and rule.t_epoch == 4 and isinstance(rule.t_epoch, int)
    assert rule == RewardSTDP(reward="r", lr=2.0, t_epoch=4, w_max=1.0)
    assert Plasticity(rule.rule, rule.params) == rule
    with pytest.raises(AttributeError):
        rule.lr = 3.0  # type: ignore[misc]
    assert set(PLASTICITY_RULES) == {"stdp", "reward_stdp", "three_factor", "eprop"}
    assert STDP().third_factor is None


def net(rule, pre=3, post=2, w=None, post_node=None, stream=None, seed=0) -> Graph:
    """``x -> w (plastic) -> post -> y``, and a third-factor Input ``m`` if ``stream``."""
    rng = np.random.default_rng(seed)
    weight = rng.uniform(0.0, 1.0, (post, pre)) if w is None else w
    nodes = {"x": Input((pre,)), "w": Linear(weight, plasticity=rule),
             "h": post_node if post_node is not None else LIF(tau=0.01, r=30.0), "y": Output()}
    if stream is not None:
        nodes["m"] = Input(stream)
    return Graph(nodes, [("x", "w"), ("w", "h"), ("h", "y")])


@pytest.mark.parametrize("build, words", [
    (lambda: net(ThreeFactor(error="nowhere", lr=1.0, tau_pre=0.01)), "its error stream 'nowhere' is not a node"),
    (lambda: net(ThreeFactor(error="m", lr=1.0, tau_pre=0.01), stream=(3,)),
     "its error stream 'm' has shape (3,), expected (2,)"),
    (lambda: net(RewardSTDP(reward="m", lr=1.0), stream=(3,)), "expected (1,) or (2,)"),
    (lambda: net(EProp(error="m", lr=1.0, tau_out=0.02, feedback=np.ones((3, 1))), stream=(1,)),
     "feedback has shape (3, 1), expected (2, n_error)"),
    (lambda: net(STDP(w_min=0.0, w_max=0.5), w=np.full((2, 3), 0.7)), "outside the plasticity bounds [0, 0.5]"),
])
def test_a_graph_the_rule_cannot_read_is_refused_naming_the_connection(build, words):
    with pytest.raises(IRError) as exc:
        build()
    text = one_line(exc)
    assert words in text and ("node 'w'" in text or "outside" in text)


@pytest.mark.parametrize("rule, post, words", [
    (STDP(), LI(tau=0.01), "into a node of type IF/LIF/CubaLIF/ALIF (got 'h' (LI, delay 0))"),
    (EProp(error="m", lr=1.0, tau_out=0.02), ALIF(tau_mem=0.01, tau_adapt=0.1), "into a node of type LIF"),
    (STDP(tau_plus=1e-4), LIF(tau=0.01), "dt/tau_plus = 10 > 1 at dt = 0.001 s"),
])
def test_simulate_refuses_a_rule_it_cannot_run_in_one_line(rule, post, words):
    g = net(rule, post_node=post, stream=(2,) if rule.third_factor else None)
    inputs = {n: np.zeros((5, *g.shape(n))) for n in g.inputs}
    with pytest.raises(IRError) as exc:
        simulate(g, inputs, dt=DT)
    assert "node 'w'" in one_line(exc) and words in one_line(exc)


def test_weights_are_a_probe_of_plastic_connections_only():
    g = net(STDP())
    with pytest.raises(NeuromorphError, match=r"cannot record 'h.weight': 'h' \(LIF\) records 'h.v'"):
        simulate(g, np.zeros((4, 3)), record=["h.weight"])
    out = simulate(g, np.zeros((2, 4, 3)), record=["w.weight"])
    assert out["w.weight"].shape == (2, 4, 2, 3)


# ------------------------------------------------------------------ files and NIR


def every_rule_graph() -> Graph:
    """One connection per rule, awkward floats, bounds, epochs and a feedback matrix."""
    rng = np.random.default_rng(5)
    fb = np.array([[np.nextafter(0.1, 1.0), -1e-310], [3.4e38, -0.0], [0.5, 2.0]])
    return Graph(
        {
            "x": Input((4,)), "label": Input((2,)), "reward": Input((1,)),
            "w1": Linear(rng.uniform(0, 0.5, (3, 4)), plasticity=STDP(lr=0.5, a_plus=np.nextafter(0.01, 1.0),
                                                                        a_minus=-0.0, w_min=0.0, w_max=1.0)),
            "h1": LIF(tau=0.01, reset="subtract"),
            "w2": Linear(rng.normal(size=(3, 3)), plasticity=RewardSTDP(reward="reward", lr=1e3, tau_e=0.3,
                                                                         t_epoch=7)),
            "h2": ALIF(tau_mem=0.02, tau_adapt=0.2, beta=0.1),
            "w3": Linear(rng.normal(size=(3, 3)), plasticity=EProp(error="label", lr=3.0, tau_out=0.02,
                                                                    feedback=fb, gamma=0.25, w_max=9.0,
                                                                    delay=1)),
            "h3": LIF(tau=0.02),
            "w4": Affine(rng.normal(size=(2, 3)), np.zeros(2),
                         plasticity=ThreeFactor(error="label", lr=0.1, tau_pre=0.02, t_epoch=2**31 - 1)),
            "ro": LI(tau=0.02), "y": Output(),
        },
        [("x", "w1"), ("w1", "h1"), ("h1", "w2"), ("w2", "h2"), ("h2", "w3"), ("w3", "h3"), ("h3", "w4"),
         ("w4", "ro"), ("ro", "y")],
        dt=DT,
    )


def test_every_rule_round_trips_a_model_file_exactly(tmp_path):
    g = every_rule_graph()
    back = nm.load(nm.save(g, tmp_path / "m.json"))
    assert back == g
    for name in ("w1", "w2", "w3", "w4"):
        mine, theirs = g.nodes[name].plasticity.params, back.nodes[name].plasticity.params
        for key, value in mine.items():
            if isinstance(value, np.ndarray):
                assert theirs[key].tobytes() == value.tobytes()
            else:
                assert type(theirs[key]) is type(value) and theirs[key] == value
    assert np.signbit(back.nodes["w1"].plasticity.a_minus)


def _with_plasticity(entry) -> str:
    """A model file whose connection carries ``entry`` as written on disk."""
    from neuromorph.documents import dumps_document
    from neuromorph.model_file import FORMAT, VERSION, graph_to_dict

    payload = graph_to_dict(net(None))
    payload["nodes"][1]["params"]["plasticity"] = entry
    return dumps_document(FORMAT, VERSION, "model", payload)


def test_files_from_before_the_typed_rules_load_or_are_refused_in_one_line():
    from neuromorph.model_file import loads

    old = {"__plasticity__": "stdp", "params": {"a_plus": 0.02, "tau_plus": 0.01}}
    assert loads(_with_plasticity(old)).nodes["w"].plasticity == STDP(a_plus=0.02, tau_plus=0.01)
    for entry, words in (
        ({"__plasticity__": "stdp", "params": {"learning_rate": 0.1}}, "has no parameter 'learning_rate'"),
        ({"__plasticity__": "three_factor", "params": {"lr": 0.1}}, "needs 'error'"),
        ({"__plasticity__": "eprop", "params": {"error": "m", "lr": 1, "tau_out": "x"}}, "'tau_out' must be"),
    ):
        with pytest.raises(ModelFileError) as exc:
            loads(_with_plasticity(entry))
        assert "node 'w'" in one_line(exc) and words in one_line(exc)


def test_every_rule_travels_through_nir_as_metadata(tmp_path):
    import nir

    from neuromorph.backends.nir import read_nir, write_nir

    g = every_rule_graph()
    messages = write_nir(g, tmp_path / "g.nir")
    for name, rule in (("w1", "stdp"), ("w2", "reward_stdp"), ("w3", "eprop"), ("w4", "three_factor")):
        assert any(f"'{name}'" in m and f"'{rule}'" in m and "metadata" in m for m in messages)
    back = read_nir(tmp_path / "g.nir")
    assert back == g  # the stream Inputs come back without the Outputs nir gives every leaf
    raw = json.loads(nir.read(tmp_path / "g.nir").nodes["w3"].metadata["neuromorph"])
    assert raw["plasticity"]["rule"] == "eprop" and raw["plasticity"]["params"]["tau_out"] == 0.02


# ------------------------------------------------------------------ reference loops
# Written from docs/semantics.md (sections 3, 4 and 6), not from simulate's code.


def lif_step(v, X, tau, r, v_th, reset, v_leak=0.0, v_reset=0.0):
    """One LIF step in section 4's coefficients; returns (v after reset, z, u before reset)."""
    dv = DT / tau
    u = (1 - dv) * v + dv * v_leak + (dv * r) * X
    z = (u > v_th).astype(float)
    v_new = np.where(z > 0, v_reset if reset == "value" else u - (v_th - v_reset), u)
    return v_new, z, u


def apply_epoch(t, W, P, t_epoch, w_min, w_max):
    """Section 6, step 3: the pending increments join W at the end of every t_epoch-th step."""
    if (t + 1) % t_epoch:
        return W, P
    W = W + P
    if w_min is not None or w_max is not None:
        W = np.clip(W, w_min, w_max)
    return W, np.zeros_like(P)


def test_stdp_matches_the_written_rule():
    rng = np.random.default_rng(1)
    T, tau, r = 80, 0.01, 30.0
    rule = STDP(lr=0.7, a_plus=0.05, a_minus=0.04, tau_plus=0.015, tau_minus=0.03, w_min=0.0, w_max=0.9)
    W0 = rng.uniform(0.1, 0.8, (2, 3))
    x = spikes(rng, T, 3, 0.3)
    g = net(rule, w=W0, post_node=LIF(tau=tau, r=r))
    got = simulate(g, x, dt=DT, record=["w.weight"])["w.weight"]

    W, P = W0.copy(), np.zeros_like(W0)
    xbar, ybar, v = np.zeros(3), np.zeros(2), np.zeros(2)
    want, post_spikes = [], 0
    for t in range(T):
        v, z, _ = lif_step(v, W @ x[t], tau, r, 1.0, "value")
        post_spikes += z.sum()
        xbar = (1 - DT / 0.015) * xbar + x[t]
        ybar = (1 - DT / 0.03) * ybar + z
        D = 0.7 * (0.05 * np.outer(z, xbar) - 0.04 * np.outer(ybar, x[t]))
        W, P = apply_epoch(t, W, P + D, 1, 0.0, 0.9)
        want.append(W)
    assert post_spikes > 5
    np.testing.assert_allclose(got, np.array(want), rtol=0, atol=TOL)
    assert np.abs(got[-1] - W0).max() > 0.05  # it did learn something


def test_reward_stdp_matches_the_written_rule_with_epochs_and_bounds():
    rng = np.random.default_rng(2)
    T, tau, r = 90, 0.01, 25.0
    rule = RewardSTDP(reward="m", lr=40.0, a_plus=0.05, a_minus=0.06, tau_plus=0.02, tau_minus=0.01,
                      tau_e=0.05, t_epoch=4, w_min=-0.5, w_max=1.0)
    W0 = rng.uniform(0.0, 0.9, (2, 4))
    x, reward = spikes(rng, T, 4, 0.35), rng.normal(0.5, 1.0, (T, 1))
    g = net(rule, pre=4, w=W0, post_node=LIF(tau=tau, r=r), stream=(1,))
    got = simulate(g, {"x": x, "m": reward}, dt=DT, record=["w.weight"])["w.weight"]

    W, P = W0.copy(), np.zeros_like(W0)
    xbar, ybar, c, v = np.zeros(4), np.zeros(2), np.zeros((2, 4)), np.zeros(2)
    want = []
    for t in range(T):
        v, z, _ = lif_step(v, W @ x[t], tau, r, 1.0, "value")
        xbar = (1 - DT / 0.02) * xbar + x[t]
        ybar = (1 - DT / 0.01) * ybar + z
        c = (1 - DT / 0.05) * c + (0.05 * np.outer(z, xbar) - 0.06 * np.outer(ybar, x[t]))
        D = (DT * 40.0) * reward[t, 0] * c
        W, P = apply_epoch(t, W, P + D, 4, -0.5, 1.0)
        want.append(W)
    want = np.array(want)
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
    # the weights change only at the end of steps 3, 7, 11, ... (t_epoch = 4)
    assert np.all(got[:3] == W0) and np.any(got[3] != W0) and np.all(got[4:7] == got[3])
    assert np.abs(got[-1] - W0).max() > 0.05


def test_three_factor_delta_rule_matches_the_written_rule():
    rng = np.random.default_rng(3)
    T = 60
    rule = ThreeFactor(error="m", lr=50.0, tau_pre=0.004, t_epoch=3, w_max=0.6)
    W0 = rng.uniform(-0.5, 0.5, (3, 4))
    x = rng.uniform(0.0, 1.0, (T, 4)) * spikes(rng, T, 4, 0.5)  # graded inputs
    err = rng.normal(0.0, 1.0, (T, 3))
    g = Graph({"x": Input((4,)), "m": Input((3,)), "w": Affine(W0, np.ones(3), plasticity=rule),
               "ro": LI(tau=0.02), "y": Output()}, [("x", "w"), ("w", "ro"), ("ro", "y")])
    got = simulate(g, {"x": x, "m": err}, dt=DT, record=["w.weight", "ro.v"])

    W, P, xbar, v = W0.copy(), np.zeros_like(W0), np.zeros(4), np.zeros(3)
    want, readout = [], []
    for t in range(T):
        v = (1 - DT / 0.02) * v + (DT / 0.02) * (W @ x[t] + 1.0)  # LI with this step's W(t)
        readout.append(v)
        xbar = (1 - DT / 0.004) * xbar + x[t]
        W, P = apply_epoch(t, W, P + (DT * 50.0) * np.outer(err[t], xbar), 3, None, 0.6)
        want.append(W)
    np.testing.assert_allclose(got["w.weight"], np.array(want), rtol=0, atol=TOL)
    np.testing.assert_allclose(got["ro.v"], np.array(readout), rtol=0, atol=TOL)
    assert np.abs(got["w.weight"][-1] - W0).max() > 0.05


@pytest.mark.parametrize("reset", ["value", "subtract"])
def test_eprop_matches_the_written_rule(reset):
    rng = np.random.default_rng(4)
    T, n_pre, n_post, n_err = 100, 4, 3, 2
    tau = np.array([0.01, 0.02, 0.015])
    v_th = np.array([1.0, 0.8, 1.2])
    r = 20.0
    fb = rng.normal(0.0, 1.0, (n_post, n_err))
    rule = EProp(error="m", lr=20.0, tau_out=0.02, feedback=fb, gamma=0.3)
    W0 = rng.uniform(0.0, 0.8, (n_post, n_pre))
    x, err = spikes(rng, T, n_pre, 0.4), rng.normal(0.0, 1.0, (T, n_err))
    g = net(rule, pre=n_pre, post=n_post, w=W0, post_node=LIF(tau=tau, r=r, v_threshold=v_th, reset=reset),
            stream=(n_err,))
    got = simulate(g, {"x": x, "m": err}, dt=DT, record=["w.weight"])["w.weight"]

    dv, gain = DT / tau, (DT / tau) * r
    W, P = W0.copy(), np.zeros_like(W0)
    v, z_prev = np.zeros(n_post), np.zeros(n_post)
    eps, ebar = np.zeros((n_post, n_pre)), np.zeros((n_post, n_pre))
    want, psi_seen = [], 0.0
    for t in range(T):
        v, z, u = lif_step(v, W @ x[t], tau, r, v_th, reset)
        rho = 1 - z_prev if reset == "value" else np.ones(n_post)
        eps = (1 - dv)[:, None] * rho[:, None] * eps + gain[:, None] * x[t][None, :]
        psi = 0.3 * np.maximum(0.0, 1 - np.abs(u - v_th))
        psi_seen += psi.sum()
        ebar = (1 - DT / 0.02) * ebar + psi[:, None] * eps
        L = fb @ err[t]
        W, P = apply_epoch(t, W, P + (DT * 20.0) * L[:, None] * ebar, 1, None, None)
        want.append(W)
        z_prev = z
    assert psi_seen > 1.0
    np.testing.assert_allclose(got, np.array(want), rtol=0, atol=TOL)
    assert np.abs(got[-1] - W0).max() > 0.01


def test_samples_of_a_batch_learn_independently():
    rng = np.random.default_rng(6)
    g = net(STDP(a_plus=0.05), post_node=LIF(tau=0.01, r=30.0))
    x = spikes(rng, 40, 3, 0.4)[None].repeat(2, 0)
    x[1] = spikes(rng, 40, 3, 0.4)
    both = simulate(g, x, record=["w.weight"])["w.weight"]
    for b in range(2):
        assert np.array_equal(both[b], simulate(g, x[b], record=["w.weight"])["w.weight"])
    assert not np.array_equal(both[0], both[1])


# ------------------------------------------------------------------ guards


def _third_factor_case(kind: str):
    """A small network whose rule reads the third-factor Input 'm'."""
    rng = np.random.default_rng(7)
    x = spikes(rng, 60, 3, 0.4)
    if kind == "three_factor":
        g = net(ThreeFactor(error="m", lr=10.0, tau_pre=0.01), post_node=LI(tau=0.02), stream=(2,))
    elif kind == "reward_stdp":
        g = net(RewardSTDP(reward="m", lr=100.0, a_plus=0.05, tau_e=0.05), post_node=LIF(tau=0.01, r=30.0),
                stream=(1,))
    else:
        g = net(EProp(error="m", lr=50.0, tau_out=0.02), post_node=LIF(tau=0.01, r=30.0), stream=(2,))
    return g, x


@pytest.mark.parametrize("kind", ["three_factor", "reward_stdp", "eprop"])
def test_a_zero_third_factor_leaves_the_weights_and_a_nonzero_one_changes_them(kind):
    g, x = _third_factor_case(kind)
    shape = g.shape("m")
    w0 = g.nodes["w"].weight
    still = simulate(g, {"x": x, "m": np.zeros((len(x), *shape))}, record=["w.weight"])["w.weight"]
    assert np.array_equal(still, np.broadcast_to(w0, still.shape))
    moved = simulate(g, {"x": x, "m": np.ones((len(x), *shape))}, record=["w.weight"])["w.weight"]
    assert np.abs(moved[-1] - w0).max() > 1e-3, f"{kind}: a nonzero third factor did not change the weights"


def test_a_rule_with_zero_learning_rate_computes_exactly_the_static_network():
    rng = np.random.default_rng(8)
    x = spikes(rng, 50, 3, 0.4)
    plastic = net(STDP(lr=0.0), post_node=LIF(tau=0.01, r=30.0))
    static = net(None, post_node=LIF(tau=0.01, r=30.0))
    assert np.array_equal(simulate(plastic, x)["y"], simulate(static, x)["y"])


def test_the_delta_rule_learns_a_readout_from_an_error_computed_in_the_graph():
    """err = label - readout, summed by an Output node: the rule closes the loop, and the
    squared error at the end is a small part of what it is without learning."""
    rng = np.random.default_rng(9)
    T, tau = 400, 0.01
    x, label = spikes(rng, T, 3, 0.5), np.broadcast_to([0.3, -0.2], (T, 2))

    def late_error(lr: float) -> float:
        g = Graph({"x": Input((3,)), "label": Input((2,)),
                   "w": Linear(np.zeros((2, 3)), plasticity=ThreeFactor(error="err", lr=lr, tau_pre=tau)),
                   "ro": LI(tau=tau), "neg": Scale(-1.0), "err": Output(), "y": Output()},
                  [("x", "w"), ("w", "ro"), ("ro", "y"), ("ro", "neg"), ("neg", "err"), ("label", "err")])
        err = simulate(g, {"x": x, "label": label})["err"]
        return float((err[-100:] ** 2).mean())

    assert late_error(200.0) < 0.1 * late_error(0.0)


@pytest.mark.parametrize("name", ["lava", "torch"])  # [torch] imports torch for its node rules
def test_every_target_refuses_every_rule_naming_the_connection(name):
    from neuromorph.registry import target

    chosen = target(name)
    for rule in (STDP(), RewardSTDP(reward="m", lr=1.0), ThreeFactor(error="m", lr=1.0, tau_pre=0.01),
                 EProp(error="m", lr=1.0, tau_out=0.02)):
        if rule.rule in chosen.plasticity:  # a target that runs a rule is tested with its lowering
            continue
        g = net(rule, stream=(1,) if isinstance(rule, RewardSTDP) else (2,) if rule.third_factor else None)
        with pytest.raises(IRError) as exc:
            chosen.check(g, chosen.precisions[0])
        assert f"node 'w': target '{name}' cannot run plasticity rule '{rule.rule}'" in one_line(exc)


# ------------------------------------------------------------------ learning delay


def test_delay_zero_is_the_default_and_stays_out_of_the_repr():
    rule = ThreeFactor(error="m", lr=1.0, tau_pre=0.01)
    assert rule.delay == 0 and rule == rule.replace(delay=0.0) and "delay" not in repr(rule)
    late = rule.replace(delay=2.0)
    assert late.delay == 2 and isinstance(late.delay, int) and "delay=2" in repr(late) and late != rule
    assert list(late.params)[-4:] == ["t_epoch", "w_min", "w_max", "delay"]
    assert Plasticity("three_factor", dict(late.params)) == late
    assert Plasticity("three_factor", {"error": "m", "lr": 1.0, "tau_pre": 0.01}).delay == 0  # older files


def _delta_graph(delay: int, t_epoch: int = 1) -> Graph:
    rng = np.random.default_rng(11)
    rule = ThreeFactor(error="m", lr=40.0, tau_pre=0.005, delay=delay, t_epoch=t_epoch)
    return Graph({"x": Input((4,)), "m": Input((3,)), "w": Linear(rng.uniform(-0.5, 0.5, (3, 4)), plasticity=rule),
                  "ro": LI(tau=0.02), "y": Output()}, [("x", "w"), ("w", "ro"), ("ro", "y")], dt=DT)


def test_delay_lags_the_trajectory_and_the_final_weights_hold_every_increment():
    """The delta rule with an Input error computes increments that do not depend on the
    weights, so with delay 1 the weights are those of delay 0 one step later, and the
    run's last step applies the increment still in flight."""
    rng = np.random.default_rng(2)
    T = 40
    x, err = spikes(rng, T, 4, 0.5), rng.normal(0.0, 1.0, (T, 3))
    now = simulate(_delta_graph(0), {"x": x, "m": err}, record=["w.weight"])["w.weight"]
    late = simulate(_delta_graph(1), {"x": x, "m": err}, record=["w.weight"])["w.weight"]
    w0 = _delta_graph(0).nodes["w"].weight
    assert np.abs(now[-1] - w0).max() > 0.05
    # W_late(t + 1) = W(0) + D(0) + ... + D(t - 1) = W_now(t): the recorded trajectory lags one step
    np.testing.assert_array_equal(late[0], w0)
    np.testing.assert_array_equal(late[1:-1], now[:-2])
    # the final weights: every increment (as the chip's, which runs one more step)
    np.testing.assert_allclose(late[-1], now[-1], rtol=0, atol=TOL)
    assert not np.array_equal(late[-1], late[-2])


def test_delay_zero_is_bit_for_bit_what_it_was():
    """delay=0 runs the same code path as before the field existed: the written rule's loop."""
    rng = np.random.default_rng(2)
    T = 30
    x, err = spikes(rng, T, 4, 0.5), rng.normal(0.0, 1.0, (T, 3))
    g = _delta_graph(0)
    got = simulate(g, {"x": x, "m": err}, record=["w.weight"])["w.weight"]
    W, xbar, want = g.nodes["w"].weight.copy(), np.zeros(4), []
    for t in range(T):
        xbar = (1 - DT / 0.005) * xbar + x[t]
        P = np.zeros_like(W)
        P += (DT * 40.0) * err[t][:, None] * xbar[None, :]
        W = W + P
        want.append(W)
    np.testing.assert_array_equal(got, np.array(want))


def test_eprop_with_delay_one_feeds_back_the_lagged_weights():
    """EProp's increments read u(t), which depends on the weights: with delay 1 the run
    differs from delay 0 (the increment of step t first transmits x(t + 2)), and equals a
    loop written with that latency."""
    rng = np.random.default_rng(4)
    T, n_pre, n_post = 80, 4, 3
    tau, r, v_th = 0.02, 25.0, np.array([0.9, 1.0, 1.1])
    W0 = rng.uniform(0.0, 0.8, (n_post, n_pre))
    x, err = spikes(rng, T, n_pre, 0.5), rng.normal(0.0, 1.0, (T, n_post))
    runs = {}
    for delay in (0, 1):
        rule = EProp(error="m", lr=40.0, tau_out=0.02, gamma=0.3, delay=delay)
        g = net(rule, pre=n_pre, post=n_post, w=W0, post_node=LIF(tau=tau, r=r, v_threshold=v_th, reset="subtract"),
                stream=(n_post,))
        runs[delay] = simulate(g, {"x": x, "m": err}, dt=DT, record=["w.weight"])["w.weight"]
    dv, gain = DT / tau, (DT / tau) * r
    W, v, eps, ebar, flight, want = W0.copy(), np.zeros(n_post), np.zeros((n_post, n_pre)), np.zeros((n_post, n_pre)), [], []
    for t in range(T):
        v, z, u = lif_step(v, W @ x[t], tau, r, v_th, "subtract")
        eps = (1 - dv) * eps + gain * x[t][None, :]
        ebar = (1 - DT / 0.02) * ebar + (0.3 * np.maximum(0.0, 1 - np.abs(u - v_th)))[:, None] * eps
        flight.append((DT * 40.0) * err[t][:, None] * ebar)
        if t >= 1:
            W = W + flight.pop(0)
        if t == T - 1:
            W = W + flight.pop(0)
        want.append(W)
    np.testing.assert_allclose(runs[1], np.array(want), rtol=0, atol=TOL)
    assert np.abs(runs[1][-1] - runs[0][-1]).max() > 1e-3  # the latency matters here
    assert np.abs(runs[1][-1] - W0).max() > 0.01
