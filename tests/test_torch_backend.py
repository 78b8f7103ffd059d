"""The torch backend: spike-for-spike with the numpy semantics, and with Norse's own steps."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from norse.torch.functional.iaf import IAFFeedForwardState, IAFParameters, iaf_feed_forward_step
from norse.torch.functional.leaky_integrator_box import LIBoxParameters, LIBoxState, li_box_feed_forward_step
from norse.torch.functional.lif import LIFFeedForwardState, LIFParameters, lif_feed_forward_step
from norse.torch.functional.lif_box import LIFBoxFeedForwardState, LIFBoxParameters, lif_box_feed_forward_step

import neuromorph as nm
from neuromorph.backends.torch import GraphNetwork, Surrogate
from neuromorph.discretize import discretize_graph
from neuromorph.errors import NeuromorphError
from neuromorph.ir import (
    ALIF, IF, LI, LIF, Affine, Conv1d, CubaLIF, Delay, Flatten, Graph, Input, Linear, Neuron,
    Output, Scale,
)
from neuromorph.models import ZOO
from neuromorph.simulate import simulate

DT = 1e-3


def _random_population(kind, n, rng):
    """A neuron population with per-neuron random parameters."""
    tau = rng.uniform(2e-3, 30e-3, n)
    vth = rng.uniform(0.5, 1.5, n)
    vreset = rng.uniform(-0.3, 0.2, n)
    vleak = rng.uniform(-0.2, 0.2, n)
    r = rng.uniform(2.0, 20.0, n)
    return {
        "IF": IF(r=r * 50, v_threshold=vth, v_reset=vreset),
        "LIF": LIF(tau=tau, r=r, v_leak=vleak, v_threshold=vth, v_reset=vreset),
        "CubaLIF": CubaLIF(tau_syn=rng.uniform(2e-3, 10e-3, n), tau_mem=tau, r=r, v_leak=vleak,
                           v_threshold=vth, v_reset=vreset, w_in=rng.uniform(1, 5, n)),
        "ALIF": ALIF(tau_mem=tau, tau_adapt=rng.uniform(5e-3, 0.2, n), beta=rng.uniform(0, 2, n),
                     r=r, v_leak=vleak, v_threshold=vth, v_reset=vreset),
        "LI": LI(tau=tau, r=r * 0.05, v_leak=vleak),  # small gain: a linear recurrent loop must stay stable
    }[kind]


def _recurrent_graph(kind, rng, n_in=6, n=12):
    nodes = {
        "x": Input((n_in,)),
        "w": Affine(rng.normal(0, 0.6, (n, n_in)), rng.normal(0, 0.05, n)),
        "pop": _random_population(kind, n, rng),
        "w_rec": Linear(rng.normal(0, 0.3, (n, n))),
        "d": Delay(rng.integers(0, 4, n) * DT),
        "s": Scale(rng.uniform(0.5, 1.5, n)),
        "y": Output(),
    }
    edges = [("x", "w"), ("w", "pop"), ("pop", "w_rec"), ("w_rec", "pop", 1),
             ("pop", "d"), ("d", "s"), ("s", "y"), ("w", "y", 2)]
    return Graph(nodes, edges, dt=DT)


def _compare(graph, x, record):
    net = GraphNetwork(graph, dtype=torch.float64)
    with torch.no_grad():
        got = net(torch.as_tensor(x), record=record)
    want = simulate(graph, x, record=record)
    return {k: (got[k].numpy(), want[k]) for k in want}


@pytest.mark.parametrize("kind", ["IF", "LIF", "CubaLIF", "ALIF", "LI"])
def test_every_neuron_type_matches_the_numpy_semantics_spike_for_spike(kind):
    rng = np.random.default_rng(7)
    graph = _recurrent_graph(kind, rng)
    x = rng.normal(0.5, 1.0, (4, 60, 6))
    record = ["pop", "pop.v"] + (["pop.a"] if kind == "ALIF" else []) + (["pop.i"] if kind == "CubaLIF" else [])
    results = _compare(graph, x, record)
    got, want = results["pop"]
    if graph.nodes["pop"].spiking:
        assert 0.02 < want.mean() < 0.8, "the test must exercise spiking"
        np.testing.assert_array_equal(got, want)
    for key, (g, w) in results.items():
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-9, err_msg=key)


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_models_match_the_numpy_semantics(name):
    graph = ZOO[name].build(1)
    rng = np.random.default_rng(1)
    x = (rng.random((2, 30, *graph.shape("input"))) < 0.3) * 2.0
    spiking = [n for n, node in graph.nodes.items() if isinstance(node, Neuron) and node.spiking]
    results = _compare(graph, x, spiking)
    for n in spiking:
        np.testing.assert_array_equal(*results[n], err_msg=n)
    np.testing.assert_allclose(*results["output"], atol=1e-9)


def test_conv1d_and_flatten_match_the_numpy_semantics():
    rng = np.random.default_rng(3)
    g = Graph({"x": Input((2, 10)), "c": Conv1d(rng.normal(0, 1, (4, 1, 3)), np.zeros(4), stride=2,
                                                  padding=1, dilation=1, groups=2),
               "lif": LIF(tau=5e-3, r=5.0), "f": Flatten(), "y": Output()},
              [("x", "c"), ("c", "lif"), ("lif", "f"), ("f", "y")], dt=DT)
    x = rng.random((3, 20, 2, 10))
    got, want = _compare(g, x, [])["y"]
    assert want.mean() > 0.05
    np.testing.assert_array_equal(got, want)


# ----------------------------------------------------- the same dynamics as Norse's


def _run_ours(node, x):
    g = Graph({"x": Input((x.shape[-1],)), "n": node, "y": Output()}, [("x", "n"), ("n", "y")], dt=DT)
    net = GraphNetwork(g, dtype=torch.float64)
    with torch.no_grad():
        out = net(torch.as_tensor(x)[None], record=["n.v"])
    return out["y"][0].numpy(), out["n.v"][0].numpy()


def _run_norse(step, state, p, x):
    zs, vs = [], []
    for t in range(len(x)):
        z, state = step(torch.as_tensor(x[t]), state, p, dt=DT)
        zs.append(z.numpy())
        vs.append(state.v.numpy())
    return np.array(zs), np.array(vs)


def test_lif_is_norse_lif_box_with_r_one():
    x = np.random.default_rng(0).normal(1.5, 1.0, (80, 5))
    ours = _run_ours(LIF(tau=10e-3, r=1.0, v_leak=0.1, v_threshold=0.6, v_reset=-0.1), x)
    p = LIFBoxParameters(tau_mem_inv=torch.tensor(100.0, dtype=torch.float64),
                         v_leak=torch.tensor(0.1, dtype=torch.float64), v_th=torch.tensor(0.6, dtype=torch.float64),
                         v_reset=torch.tensor(-0.1, dtype=torch.float64))
    norse = _run_norse(lif_box_feed_forward_step, LIFBoxFeedForwardState(v=torch.full((5,), 0.1, dtype=torch.float64)), p, x)
    assert norse[0].sum() > 5
    np.testing.assert_array_equal(ours[0], norse[0])
    np.testing.assert_allclose(ours[1], norse[1], atol=1e-12)


def test_cuba_lif_is_norse_lif_with_w_in_tau_syn_over_dt():
    x = np.random.default_rng(1).normal(0.3, 0.5, (80, 5))
    tau_syn, tau_mem = 5e-3, 10e-3
    ours = _run_ours(CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, w_in=tau_syn / DT, v_threshold=0.5), x)
    f64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    p = LIFParameters(tau_syn_inv=f64(1 / tau_syn), tau_mem_inv=f64(1 / tau_mem), v_leak=f64(0.0),
                      v_th=f64(0.5), v_reset=f64(0.0))
    state = LIFFeedForwardState(v=torch.zeros(5, dtype=torch.float64), i=torch.zeros(5, dtype=torch.float64))
    norse = _run_norse(lif_feed_forward_step, state, p, x)
    assert norse[0].sum() > 5
    np.testing.assert_array_equal(ours[0], norse[0])
    np.testing.assert_allclose(ours[1], norse[1], atol=1e-12)


def test_if_is_norse_iaf_with_r_one_over_dt():
    x = np.random.default_rng(2).normal(0.2, 0.3, (80, 5))
    ours = _run_ours(IF(r=1 / DT, v_threshold=1.0), x)
    p = IAFParameters(v_th=torch.tensor(1.0, dtype=torch.float64), v_reset=torch.tensor(0.0, dtype=torch.float64))
    norse = _run_norse(iaf_feed_forward_step, IAFFeedForwardState(v=torch.zeros(5, dtype=torch.float64)), p, x)
    assert norse[0].sum() > 5
    np.testing.assert_array_equal(ours[0], norse[0])
    np.testing.assert_allclose(ours[1], norse[1], atol=1e-12)


def test_li_is_norse_li_box():
    x = np.random.default_rng(3).normal(0.2, 1.0, (50, 4))
    ours_y, _ = _run_ours(LI(tau=20e-3, r=1.0, v_leak=0.05), x)
    p = LIBoxParameters(tau_mem_inv=torch.tensor(50.0, dtype=torch.float64), v_leak=torch.tensor(0.05, dtype=torch.float64))
    state = LIBoxState(v=torch.full((4,), 0.05, dtype=torch.float64))
    vs = []
    for t in range(len(x)):
        v, state = li_box_feed_forward_step(torch.as_tensor(x[t]), state, p, dt=DT)
        vs.append(v.numpy())
    np.testing.assert_allclose(ours_y, np.array(vs), atol=1e-12)


# ----------------------------------------------------------------- gradients


def test_fast_sigmoid_surrogate_has_the_superspike_derivative():
    x = torch.tensor([-0.5, 0.0, 0.2, 1.0], requires_grad=True)
    z = Surrogate("fast_sigmoid", alpha=4.0)(x)
    z.sum().backward()
    assert z.tolist() == [0.0, 0.0, 1.0, 1.0]  # strict threshold
    np.testing.assert_allclose(x.grad.numpy(), 1 / (4 * np.abs(x.detach().numpy()) + 1) ** 2)


def test_triangle_surrogate_has_the_triangle_derivative():
    x = torch.tensor([-1.5, -0.5, 0.0, 0.2, 1.0, 2.0], dtype=torch.float64, requires_grad=True)
    z = Surrogate("triangle", alpha=0.3)(x)
    z.sum().backward()
    assert z.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    want = 0.3 * np.maximum(0.0, 1.0 - np.abs(x.detach().numpy()))
    np.testing.assert_array_equal(x.grad.numpy(), want)
    assert torch.equal(Surrogate("triangle", alpha=0.3).derivative(x.detach()), x.grad)


def test_surrogate_alpha_is_honoured():
    x = torch.tensor([0.3], requires_grad=True)
    grads = []
    for alpha in (1.0, 10.0):
        x.grad = None
        Surrogate("triangle", alpha=alpha)(x).sum().backward()
        grads.append(float(x.grad))
    assert grads[1] == pytest.approx(10 * grads[0])


def test_unknown_surrogate_is_refused():
    with pytest.raises(NeuromorphError, match="unknown surrogate 'relu'"):
        Surrogate("relu")


def test_weights_receive_gradients_through_spikes_and_recurrence():
    graph = ZOO["lsnn-cue"].build(0)
    net = GraphNetwork(graph)
    x = (torch.rand(2, 40, 40) < 0.2).float()
    net(x)["output"].sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.any(p.grad != 0), name


def test_to_graph_returns_exactly_the_module_weights():
    graph = nm.feedforward(8, [5], 3, seed=0)
    net = GraphNetwork(graph)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.125)
    back = net.to_graph()
    assert back != graph
    np.testing.assert_array_equal(back.nodes["fc1"].weight, net.n1_weight.detach().double().numpy())
    assert GraphNetwork(back).state_dict().keys() == net.state_dict().keys()
    for k, v in GraphNetwork(back).state_dict().items():
        assert torch.equal(v, net.state_dict()[k]), k


def test_wrong_input_shape_is_a_clear_error():
    net = GraphNetwork(nm.feedforward(8, [5], 3))
    with pytest.raises(NeuromorphError, match=r"input 'input' has shape \[2, 10, 7\], expected \[batch, T, 8\]"):
        net(torch.zeros(2, 10, 7))


# ------------------------------------------- gradients: a plain loop as the reference


def _plain_bptt(graph, x, spike):
    """docs/semantics.md written out as one plain loop over steps and nodes, in torch, with
    the coefficient form of section 4 (the operation order GraphNetwork and simulate use)
    and the reset not differentiated. The reference for GraphNetwork's gradients, which
    are its own business to compute fast. Returns ({output or "neuron.v": [batch, T, ...]},
    {"node.field": leaf tensor})."""
    coeffs = discretize_graph(graph, graph.dt)
    dtype = x.dtype
    as_t = lambda a: torch.as_tensor(np.array(a, dtype=np.float64), dtype=dtype)  # noqa: E731
    params = {}
    for name, node in graph.nodes.items():
        if isinstance(node, (Affine, Linear)):
            params[f"{name}.weight"] = as_t(node.weight).requires_grad_()
        if isinstance(node, Affine):
            params[f"{name}.bias"] = as_t(node.bias).requires_grad_()
    batch, steps = x.shape[:2]
    zeros = lambda name: torch.zeros(batch, *graph.shape(name), dtype=dtype)  # noqa: E731
    state = {n: {"v": zeros(n) + as_t(coeffs[n].v_init), "i": zeros(n), "a": zeros(n)}
             for n, node in graph.nodes.items() if isinstance(node, Neuron)}
    y = {n: [] for n in graph.nodes}  # y[n][t]
    inputs = {n: [] for n in graph.nodes}  # X[n][t], for Delay nodes
    v = {n: [] for n in state}  # the membrane after the step's reset
    for t in range(steps):
        for n in graph.order():
            node, c = graph.nodes[n], coeffs.get(n)
            if isinstance(node, Input):
                y[n].append(x[:, t])
                continue
            terms = [y[e.source][t - e.delay] for e in graph.incoming(n) if t - e.delay >= 0]
            X = sum(terms[1:], terms[0]) if terms else torch.zeros(batch, *graph.input_shape(n), dtype=dtype)
            if isinstance(node, Affine):
                out = F.linear(X, params[f"{n}.weight"], params[f"{n}.bias"])
            elif isinstance(node, Linear):
                out = F.linear(X, params[f"{n}.weight"])
            elif isinstance(node, Scale):
                out = X * as_t(node.scale)
            elif isinstance(node, Output):
                out = X
            elif isinstance(node, Delay):  # y[t] = X[t - k], per element (1-d nodes here)
                inputs[n].append(X)
                k = np.broadcast_to(c.steps, X.shape[1:])
                out = torch.stack([inputs[n][t - kj][:, j] if t >= kj else torch.zeros(batch, dtype=dtype)
                                   for j, kj in enumerate(k)], 1)
            else:
                s = state[n]
                theta = as_t(c.v_threshold) + as_t(c.beta) * s["a"] if isinstance(node, ALIF) else None
                if isinstance(node, IF):
                    s["v"] = s["v"] + as_t(c.gain) * X
                elif isinstance(node, CubaLIF):
                    s["i"] = (1.0 - as_t(c.di)) * s["i"] + as_t(c.gain_i) * X
                    s["v"] = (1.0 - as_t(c.dv)) * s["v"] + as_t(c.leak) + as_t(c.gain_v) * s["i"]
                else:  # LIF, ALIF, LI
                    s["v"] = (1.0 - as_t(c.dv)) * s["v"] + as_t(c.leak) + as_t(c.gain) * X
                if isinstance(node, LI):
                    y[n].append(s["v"])
                    v[n].append(s["v"])
                    continue
                theta = as_t(c.v_threshold) if theta is None else theta
                out = spike(s["v"] - theta)
                fired = out.detach() > 0
                if node.reset == "subtract":
                    s["v"] = s["v"] - torch.where(fired, (theta - as_t(c.v_reset)).detach(), 0.0)
                else:
                    s["v"] = torch.where(fired, as_t(c.v_reset), s["v"])
                if isinstance(node, ALIF):
                    s["a"] = (1.0 - as_t(c.da)) * s["a"] + out
                v[n].append(s["v"])
            y[n].append(out)
    traces = {**{n: y[n] for n in graph.outputs}, **{f"{n}.v": v[n] for n in v}}
    return {key: torch.stack(trace, 1) for key, trace in traces.items()}, params


@pytest.mark.parametrize("kind,reset", [(k, "value") for k in ("IF", "LIF", "CubaLIF", "ALIF", "LI")]
                         + [(k, "subtract") for k in ("IF", "LIF", "CubaLIF", "ALIF")])
def test_gradients_equal_a_plain_step_loop(kind, reset):
    """Forward and backward through GraphNetwork against _plain_bptt: the recurrent test
    graph (delayed recurrence, a Delay node, a delay-2 skip edge). The outputs and the
    membrane are the same bit for bit in float64 and float32 (so are the spikes), and the
    float64 gradients agree to rounding."""
    rng = np.random.default_rng(11)
    graph = _recurrent_graph(kind, rng)
    if kind != "LI":
        graph = graph.replace_nodes(pop=graph.nodes["pop"].replace(reset=reset))
    x = rng.normal(0.5, 1.0, (3, 40, 6))
    mix = torch.as_tensor(rng.normal(0, 1, (3, 40, 12)))
    spike = Surrogate("fast_sigmoid", 5.0)
    for dtype in (torch.float64, torch.float32):
        net = GraphNetwork(graph, surrogate=spike, dtype=dtype)
        got = net(torch.as_tensor(x, dtype=dtype), record=["pop", "pop.v"])
        want, leaves = _plain_bptt(graph, torch.as_tensor(x, dtype=dtype), spike)
        for key in ("y", "pop.v"):
            assert torch.equal(got[key], want[key]), (dtype, key)
        if dtype == torch.float32:
            continue
        if kind != "LI":
            assert 0.02 < float(got["pop"].detach().mean()) < 0.8, "the test must exercise spiking"
        names = list(leaves)
        mine = torch.autograd.grad((got["y"] * mix).sum(), [net._p(*k.split(".")) for k in names])
        theirs = torch.autograd.grad((want["y"] * mix).sum(), list(leaves.values()))
        for key, a, b in zip(names, mine, theirs):
            assert float(b.norm()) > 0, key
            assert float((a - b).norm() / b.norm()) <= 1e-12, key
