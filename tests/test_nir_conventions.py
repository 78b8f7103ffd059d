"""NIR conventions: files written as Sinabs, Rockpool, Spyx and lava-dl write them import
with the right convention and spike as that framework's neurons would.

None of these frameworks is installed here (and none is installed for the tests): each
graph is built with the ``nir`` package by tests/nir_graphs.py, mirroring the framework's
NIR writer (the builder's docstring names it), and each framework's neuron rule is written
below in numpy from its source (the reference's docstring names the file). The sources
and commits are listed in docs/nir-conventions.md. snnTorch and Norse files, written by
the real packages, are tested in tests/test_nir.py.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import neuromorph as nm
from neuromorph.backends.nir import (
    CONVENTIONS, DEFAULT_DT, NIRImportWarning, from_nir, read_nir, read_nir_report, to_nir,
)
from neuromorph.errors import NIRConversionError
from neuromorph.ir import IF, LIF, Graph, Input, Linear, Output
from neuromorph.simulate import simulate
from nir_graphs import (
    LAVA_DL_DT, SINABS_NMNIST_NEURONS, lava_dl_dense, nmnist_events, rockpool_dense, sinabs_dense,
    sinabs_nmnist_cnn, spyx_dense, write_sinabs_nmnist_cnn,
)

NEUROMORPH = str(Path(sys.executable).parent / "neuromorph")
STEPS = 20


def quiet_from_nir(g: nir.NIRGraph, **kw) -> Graph:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NIRImportWarning)
        return from_nir(g, **kw)


def import_warnings(g: nir.NIRGraph, **kw) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NIRImportWarning)
        from_nir(g, **kw)
    return [str(w.message) for w in caught if issubclass(w.category, NIRImportWarning)]


def array(value) -> np.ndarray:
    return np.asarray(value, dtype=np.float64)


# ------------------------------------------------------------------ numpy references


class SinabsNeuron:
    """sinabs/layers/functional/lif.py lif_forward_single with no synaptic state:
    v = alpha*v + x (alpha = 1 for IAF; norm_input=False, as sinabs.nir.from_nir builds
    LIF and ExpLeak); spikes = spike_fn(v); v = reset_fn(v); v clipped at min_v_mem.
    spike_fn: SingleSpike (v - thr >= 0) or MultiSpike ((v > 0) * trunc(v / thr));
    reset_fn: MembraneSubtract (v - spikes*thr), Sinabs's default. spiking=False is
    ExpLeak (the output is v)."""

    def __init__(self, threshold, tau=None, multi_spike=False, min_v_mem=None, spiking=True):
        self.thr, self.multi, self.min_v, self.spiking = array(threshold), multi_spike, min_v_mem, spiking
        self.alpha = 1.0 if tau is None else np.exp(-1.0 / array(tau))
        self.v = np.zeros_like(self.thr)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.v = self.alpha * self.v + x
        if not self.spiking:
            return self.v.copy()
        if self.multi:
            spikes = (self.v > 0) * np.trunc(self.v / self.thr)
        else:
            spikes = (self.v - self.thr >= 0).astype(np.float64)
        self.v = self.v - spikes * self.thr
        if self.min_v is not None:
            self.v = np.maximum(self.v, self.min_v)
        return spikes


def conv2d(x: np.ndarray, node: nir.Conv2d) -> np.ndarray:
    """torch.nn.Conv2d on one sample [C, H, W] (groups 1, dilation 1)."""
    w, (ph, pw), (sh, sw) = array(node.weight), node.padding, node.stride
    xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw)))
    windows = sliding_window_view(xp, w.shape[2:], axis=(1, 2))[:, ::sh, ::sw]
    return np.einsum("chwij,ocij->ohw", windows, w) + array(node.bias)[:, None, None]


def sum_pool(x: np.ndarray, node: nir.SumPool2d) -> np.ndarray:
    """sinabs.layers.SumPool2d with stride = kernel, no padding."""
    (kh, kw), (c, h, w) = node.kernel_size, x.shape
    return x[:, : h // kh * kh, : w // kw * kw].reshape(c, h // kh, kh, w // kw, kw).sum(axis=(2, 4))


def sinabs_cnn_reference(g: nir.NIRGraph, x: np.ndarray, **neuron) -> dict[str, np.ndarray]:
    """The Sinabs model of sinabs_nmnist_cnn, step by step: each layer's output per step."""
    order = [n for n in g.nodes if n not in ("input", "output")]
    cells = {n: SinabsNeuron(g.nodes[n].v_threshold, **neuron) for n in order if isinstance(g.nodes[n], nir.IF)}
    out = {n: [] for n in cells}
    for frame in x:
        y = frame
        for name in order:
            node = g.nodes[name]
            if isinstance(node, nir.Conv2d):
                y = conv2d(y, node)
            elif isinstance(node, nir.SumPool2d):
                y = sum_pool(y, node)
            elif isinstance(node, nir.Flatten):
                y = y.reshape(-1)
            elif isinstance(node, nir.Affine):
                y = array(node.weight) @ y + array(node.bias)
            else:
                y = cells[name](y)
                out[name].append(y)
    return {n: np.stack(v) for n, v in out.items()}


def chain_reference(g: nir.NIRGraph, cells: dict, x: np.ndarray) -> dict[str, np.ndarray]:
    """A feed-forward chain: weights as written, neurons by ``cells`` (name -> step)."""
    order = [n for n in g.nodes if n not in ("input", "output")]
    out = {n: [] for n in cells}
    for frame in x:
        y = frame
        for name in order:
            node = g.nodes[name]
            if isinstance(node, (nir.Affine, nir.Linear)):
                y = array(node.weight) @ y + (array(node.bias) if isinstance(node, nir.Affine) else 0)
            else:
                y = cells[name](y)
                out[name].append(y)
    return {n: np.stack(v) for n, v in out.items()}


class RockpoolNeuron:
    """rockpool/nn/modules/torch: LIFTorch (tau_syn given: isyn += x; v *= alpha;
    isyn *= beta; v += isyn), LIFNeuronTorch (v *= alpha; v += x), ExpSynTorch (spiking
    False: isyn += x; isyn *= beta; out = isyn); alpha = exp(-dt/tau_mem), beta =
    exp(-dt/tau_syn); spikes = (v >= thr) * floor(v/thr), at most max_spikes_per_dt;
    v -= spikes*thr (subtractive reset); bias 0 (to_nir writes v_leak = 0)."""

    def __init__(self, node, dt, max_spikes_per_dt=1):
        tau_mem = array(node.tau_mem if isinstance(node, nir.CubaLIF) else node.tau)
        self.alpha = np.exp(-dt / tau_mem)
        self.beta = np.exp(-dt / array(node.tau_syn)) if isinstance(node, nir.CubaLIF) else None
        self.li = isinstance(node, nir.LI)
        self.thr = None if self.li else array(node.v_threshold)
        self.max = max_spikes_per_dt
        self.v = np.zeros_like(tau_mem)
        self.i = np.zeros_like(tau_mem)

    def __call__(self, x):
        if self.li:
            self.v = (self.v + x) * self.alpha
            return self.v.copy()
        if self.beta is not None:
            self.i = self.i + x
            self.v = self.v * self.alpha
            self.i = self.i * self.beta
            self.v = self.v + self.i
        else:
            self.v = self.v * self.alpha + x
        spikes = np.minimum((self.v >= self.thr) * np.floor(self.v / self.thr), self.max)
        self.v = self.v - spikes * self.thr
        return spikes


class SpyxNeuron:
    """spyx/nn.py: IF (s = v > thr; v = v + x - s*thr), LIF (s = v > thr; v = beta*v +
    x - s*thr) and CuBaLIF (s = v > thr; v = v - s*thr; i = alpha*i + x; v = beta*v + i),
    the spike tested on the previous step's v; beta = 1 - dt/tau, alpha = 1 - dt/tau_syn
    as spyx.nir.from_nir reads them (it ignores r and w_in)."""

    def __init__(self, node, dt):
        self.kind = type(node)
        self.thr = array(node.v_threshold)
        if isinstance(node, nir.LIF):
            self.beta = np.clip(1 - dt / array(node.tau), 0, 1)
        if isinstance(node, nir.CubaLIF):
            self.beta, self.alpha = 1 - dt / array(node.tau_mem), 1 - dt / array(node.tau_syn)
        self.v = np.zeros_like(self.thr)
        self.i = np.zeros_like(self.thr)

    def __call__(self, x):
        s = (self.v - self.thr > 0).astype(np.float64)
        if self.kind is nir.IF:
            self.v = self.v + x - s * self.thr
        elif self.kind is nir.LIF:
            self.v = self.beta * self.v + x - s * self.thr
        else:
            self.v = self.v - s * self.thr
            self.i = self.alpha * self.i + x
            self.v = self.beta * self.v + self.i
        return s


class LavaDlCuba:
    """lava-dl's CUBA neuron in floating point (slayer/neuron/cuba.py and
    dynamics/leaky_integrator.py): i = (1 - i_decay)*i + x; v = (1 - v_decay)*v + i;
    spike where v >= threshold; v reset to 0; decays = dt/tau as lava_to_nir wrote tau."""

    def __init__(self, node, dt):
        self.di, self.dv = dt / array(node.tau_syn), dt / array(node.tau_mem)
        self.thr = array(node.v_threshold)
        self.i = np.zeros_like(self.thr)
        self.v = np.zeros_like(self.thr)

    def __call__(self, x):
        self.i = (1 - self.di) * self.i + x
        self.v = (1 - self.dv) * self.v + self.i
        s = (self.v >= self.thr).astype(np.float64)
        self.v = np.where(s > 0, 0.0, self.v)
        return s


def run_ir(graph: Graph, x: np.ndarray, names) -> dict[str, np.ndarray]:
    return simulate(graph, x, record=list(names))


# ------------------------------------------------------------------ the table


def test_every_convention_has_a_default_dt_reset_and_summary():
    assert {"nir", "snntorch", "norse", "sinabs", "rockpool", "spyx", "lava-dl"} <= set(CONVENTIONS)
    for name, c in CONVENTIONS.items():
        assert c.name == name and c.dt > 0 and c.reset in ("value", "subtract") and c.summary
        assert DEFAULT_DT[name] == c.dt
    assert {n for n, c in CONVENTIONS.items() if c.reset == "subtract"} == {"sinabs", "rockpool", "spyx"}
    assert (DEFAULT_DT["nir"], DEFAULT_DT["sinabs"], DEFAULT_DT["lava-dl"]) == (1e-4, 1.0, 1e-4)


# ------------------------------------------------------------------ Sinabs


def test_sinabs_nmnist_cnn_has_the_nir_papers_size():
    g = sinabs_nmnist_cnn(0)
    graph = quiet_from_nir(g, convention="sinabs")
    assert sum(int(np.prod(graph.shape(n))) for n in SINABS_NMNIST_NEURONS) == 8970
    assert sum(np.asarray(v.weight).size for v in g.nodes.values() if hasattr(v, "weight")) == 39584
    assert graph.shape("4") == (16, 8, 8) and graph.shape("7") == (8, 4, 4)  # SumPool2d kept


def test_sinabs_cnn_with_sinabs_convention_spikes_exactly_as_sinabs_iaf():
    """The issue's case: the N-MNIST CNN as Sinabs writes it, every IF layer, spike for spike
    against Sinabs's IAF (SingleSpike, MembraneSubtract) over 20 steps of event input."""
    g = sinabs_nmnist_cnn(0)
    graph = from_nir(g, convention="sinabs")
    assert graph.dt == 1.0 and all(graph.nodes[n].reset == "subtract" for n in SINABS_NMNIST_NEURONS)
    x = nmnist_events(STEPS, seed=1)
    got = run_ir(graph, x, SINABS_NMNIST_NEURONS)
    want = sinabs_cnn_reference(g, x)
    for name in SINABS_NMNIST_NEURONS:
        assert want[name].sum() > 10, f"layer {name} needs spikes for the comparison"
        np.testing.assert_array_equal(got[name], want[name], err_msg=f"layer {name}")
    np.testing.assert_array_equal(got["output"], want["12"])


def test_sinabs_cnn_with_the_default_convention_warns_and_never_spikes():
    g = sinabs_nmnist_cnn(0)
    messages = import_warnings(g)
    dt_warning = [m for m in messages if "was assumed" in m]
    assert len(dt_warning) == 1 and "dt = 0.0001 s" in dt_warning[0] and "--dt" in dt_warning[0]
    producer = [m for m in messages if "looks written by sinabs" in m]
    assert len(producer) == 1 and "--convention sinabs" in producer[0] and "SumPool2d" in producer[0]
    graph = quiet_from_nir(g)
    assert graph.dt == 1e-4
    got = run_ir(graph, nmnist_events(STEPS, seed=1), SINABS_NMNIST_NEURONS)
    assert sum(got[n].sum() for n in SINABS_NMNIST_NEURONS) == 0  # dt*r = 1e-4 of the input


def test_sinabs_convention_is_per_step_whatever_dt_labels_the_step():
    g = sinabs_nmnist_cnn(0)
    x = nmnist_events(8, seed=2)
    one = run_ir(from_nir(g, convention="sinabs"), x, SINABS_NMNIST_NEURONS)
    ms = run_ir(from_nir(g, convention="sinabs", dt=1e-3), x, SINABS_NMNIST_NEURONS)
    assert not import_warnings(g, convention="sinabs")
    for name in SINABS_NMNIST_NEURONS:
        np.testing.assert_array_equal(one[name], ms[name])


def test_sinabs_multi_spike_and_min_v_mem_are_where_the_import_stops_being_exact():
    """NIR cannot say MultiSpike (Sinabs's default spike_fn) nor min_v_mem (its from_nir sets
    -v_threshold for IF): the import is Sinabs's SingleSpike rule without clipping, which
    agrees with them only while v stays in [-thr, 2*thr)."""
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([3])}),
                            "0": nir.IF(r=np.ones(3), v_threshold=np.ones(3)),
                            "output": nir.Output(output_type={"output": np.array([3])})},
                     edges=[("input", "0"), ("0", "output")])
    x = np.array([[2.5, -3.0, 0.4]] + [[0.0, 1.5, 0.4]] * 5)
    got = run_ir(from_nir(g, convention="sinabs"), x, ["0"])["0"]
    single = chain_reference(g, {"0": SinabsNeuron(np.ones(3))}, x)["0"]
    multi = chain_reference(g, {"0": SinabsNeuron(np.ones(3), multi_spike=True, min_v_mem=-1.0)}, x)["0"]
    np.testing.assert_array_equal(got, single)
    assert not np.array_equal(got, multi)
    assert multi[0, 0] == 2 and got[0, 0] == 1  # two spikes in one step
    assert got[:, 1].sum() < multi[:, 1].sum()  # v clipped at -1 recovers sooner


def test_sinabs_lif_and_expleak_follow_sinabs_from_nir():
    """LIF and ExpLeak as sinabs.nir.from_nir builds them (norm_input=False): v =
    exp(-1/tau) v + x with tau in steps; the LIF resets by subtraction."""
    g = sinabs_dense(0)
    graph = from_nir(g, convention="sinabs")
    x = (np.random.default_rng(3).random((40, 6)) < 0.4).astype(np.float64)
    got = run_ir(graph, x, ["1", "3", "5"])
    cells = {"1": SinabsNeuron(np.ones(8)), "3": SinabsNeuron(np.ones(8), tau=5.0),
             "5": SinabsNeuron(np.ones(4), tau=5.0, spiking=False)}
    want = chain_reference(g, cells, x)
    assert want["1"].sum() > 5 and want["3"].sum() > 5
    np.testing.assert_array_equal(got["1"], want["1"])
    np.testing.assert_array_equal(got["3"], want["3"])
    np.testing.assert_allclose(got["5"], want["5"], rtol=1e-9, atol=1e-9)


def test_a_neuron_the_framework_does_not_have_is_refused_naming_node_and_convention():
    cuba = nir.CubaLIF(tau_syn=np.full(2, 5.0), tau_mem=np.full(2, 5.0), r=np.ones(2), v_leak=np.zeros(2),
                       v_threshold=np.ones(2))
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([2])}), "c": cuba,
                            "output": nir.Output(output_type={"output": np.array([2])})},
                     edges=[("input", "c"), ("c", "output")])
    with pytest.raises(NIRConversionError, match="node 'c': Sinabs neither writes nor reads"):
        quiet_from_nir(g, convention="sinabs")
    g.nodes["c"] = nir.IF(r=np.ones(2), v_threshold=np.ones(2))
    with pytest.raises(NIRConversionError, match="node 'c': Rockpool neither writes nor reads"):
        quiet_from_nir(g, convention="rockpool")


# ------------------------------------------------------------------ Rockpool


@pytest.mark.parametrize("dt", [1e-3, 2e-4])
def test_rockpool_dt_is_read_back_from_r(dt):
    graph = from_nir(rockpool_dense(0, dt=dt), convention="rockpool")
    assert graph.dt == dt
    assert graph.metadata["dt_source"].startswith("read from the file")


def test_rockpool_graph_spikes_as_rockpool_neurons_with_one_spike_per_step():
    dt = 1e-3
    g = rockpool_dense(0, dt=dt)
    graph = from_nir(g, convention="rockpool")
    assert all(graph.nodes[n].reset == "subtract" for n in ("1_LIFTorch", "3_LIFNeuronTorch"))
    x = (np.random.default_rng(4).random((60, 5)) < 0.4).astype(np.float64)
    names = ["1_LIFTorch", "3_LIFNeuronTorch", "5_ExpSynTorch"]
    got = run_ir(graph, x, names)
    want = chain_reference(g, {n: RockpoolNeuron(g.nodes[n], dt) for n in names}, x)
    assert want["1_LIFTorch"].sum() > 5 and want["3_LIFNeuronTorch"].sum() > 5
    for n in names[:2]:
        np.testing.assert_array_equal(got[n], want[n], err_msg=n)
    np.testing.assert_allclose(got[names[2]], want[names[2]], rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------ Spyx


def test_spyx_graph_spikes_as_spyx_neurons_one_step_late_per_layer():
    g = spyx_dense(0)
    with pytest.warns(NIRImportWarning, match=r"dt = 1 s was assumed \(the spyx convention's default\)"):
        graph = from_nir(g, convention="spyx")  # Spyx's to_nir may have been given another dt
    assert graph.dt == 1.0
    late = {(e.source, e.target): e.delay for e in graph.edges}
    assert late[("layer_1", "layer_2")] == 1 and late[("layer_0", "layer_1")] == 0
    x = (np.random.default_rng(5).random((50, 5)) < 0.4).astype(np.float64)
    names = ["layer_1", "layer_3", "layer_5"]
    want = chain_reference(g, {n: SpyxNeuron(g.nodes[n], 1.0) for n in names}, x)
    got = run_ir(graph, x, [])["output"]
    assert all(want[n].sum() > 5 for n in names)
    np.testing.assert_array_equal(got, want["layer_5"])


# ------------------------------------------------------------------ lava-dl


def test_lava_dl_cuba_graph_spikes_as_lava_dl_float_neurons():
    g = lava_dl_dense(0)
    graph = from_nir(g, convention="lava-dl")
    assert graph.dt == LAVA_DL_DT and graph.nodes["1"].reset == "value"
    x = (np.random.default_rng(6).random((60, 5)) < 0.3).astype(np.float64)
    want = chain_reference(g, {n: LavaDlCuba(g.nodes[n], LAVA_DL_DT) for n in ("1", "3")}, x)
    got = run_ir(graph, x, ["1", "3"])
    assert want["1"].sum() > 5 and want["3"].sum() > 5
    for n in ("1", "3"):
        np.testing.assert_array_equal(got[n], want[n], err_msg=n)
    assert not import_warnings(g, convention="lava-dl")  # its dt is lava_to_nir's constant


# ------------------------------------------------------------------ producers


def _named_metadata(g: nir.NIRGraph) -> nir.NIRGraph:
    g.metadata = {"producer": "lava-dl 0.6"}
    return g


PRODUCERS = {
    "sinabs-cnn": (lambda: sinabs_nmnist_cnn(0), "sinabs", "SumPool2d"),
    "sinabs-dense": (lambda: sinabs_dense(0), "sinabs", "r = 1"),
    "rockpool": (lambda: rockpool_dense(0), "rockpool", "Rockpool's Sequential"),
    "spyx": (lambda: spyx_dense(0), "spyx", "layer_0"),
    "lava-dl/snntorch": (lambda: lava_dl_dense(0), "snntorch", "r = tau/dt"),
    "metadata": (lambda: _named_metadata(lava_dl_dense(0)), "lava-dl", "producer = 'lava-dl 0.6'"),
}


@pytest.mark.parametrize("make, convention, sign", PRODUCERS.values(), ids=PRODUCERS.keys())
def test_auto_picks_the_recognised_producer_and_says_why(make, convention, sign):
    got = read_report(make(), "auto")
    assert got.convention == convention and got.reason.startswith("auto: ")
    assert sign in got.reason


def test_a_norse_style_graph_is_recognised_in_memory():
    """Norse 1.1.0's to_nir (norse/torch/utils/export_nir.py) writes 0-d parameters and a
    batch dim in Input, which nir.write refuses: such graphs only arrive in memory."""
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([1, 3])}),
                            "0": nir.Affine(weight=np.eye(3), bias=np.zeros(3)),
                            "1": nir.IF(r=np.array(1.0), v_threshold=np.array(1.0), v_reset=np.array(0.0)),
                            "output": nir.Output(output_type={"output": np.array([1, 3])})},
                     edges=[("input", "0"), ("0", "1"), ("1", "output")], type_check=False)
    graph = from_nir(g, convention="auto")
    assert graph.metadata["convention"] == "norse" and "batch dim" in graph.metadata["convention_reason"]
    assert graph.nodes["1"].reset == "value" and graph.dt == 1e-3


def test_auto_without_a_recognised_producer_is_nir():
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([2])}),
                            "lif": nir.LIF(tau=np.full(2, 0.02), r=np.ones(2), v_leak=np.zeros(2),
                                           v_threshold=np.ones(2)),
                            "output": nir.Output(output_type={"output": np.array([2])})},
                     edges=[("input", "lif"), ("lif", "output")])
    got = read_report(g, "auto")
    assert got.convention == "nir" and "no producer recognised" in got.reason
    assert any("dt = 0.0001 s was assumed" in w for w in got.warnings)


def test_a_convention_that_disagrees_with_the_producer_is_warned_about():
    messages = import_warnings(rockpool_dense(0))
    assert any("looks written by rockpool" in m and "--convention rockpool" in m for m in messages)
    assert not import_warnings(rockpool_dense(0), convention="rockpool")


def test_nir_and_snntorch_read_alike_so_an_snntorch_file_is_not_warned_about():
    g = lava_dl_dense(0)  # snnTorch's form of r and w_in at dt = 1e-4
    assert not import_warnings(g)  # nir at 1e-4 reads it as snnTorch does
    assert not import_warnings(g, convention="snntorch")


def test_a_given_dt_is_never_warned_about():
    messages = import_warnings(sinabs_nmnist_cnn(0), dt=1.0)
    assert not any("was assumed" in m for m in messages)
    assert any("--convention sinabs" in m for m in messages)  # nir resets to a value: still differs


def test_files_written_by_neuromorph_are_restored_and_refuse_a_rescaling_convention():
    graph = Graph({"in": Input((2,)), "w": Linear(np.eye(2)), "lif": LIF(tau=0.02), "if": IF(r=2.0),
                   "out": Output()}, [("in", "w"), ("w", "lif"), ("lif", "if"), ("if", "out")], dt=1e-3)
    g = to_nir(graph)
    assert not import_warnings(g) and not import_warnings(g, convention="auto")
    assert from_nir(g, convention="auto") == graph
    with pytest.raises(NIRConversionError, match="written by neuromorph.*convention='sinabs' does not apply"):
        from_nir(g, convention="sinabs")


def test_unknown_convention_is_one_line():
    with pytest.raises(NIRConversionError, match=r"unknown convention 'brian' \(known: nir, .*auto\)"):
        from_nir(sinabs_dense(0), convention="brian")


def read_report(g: nir.NIRGraph, convention: str):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "g.nir"
        nir.write(str(path), g)
        return read_nir_report(path, convention=convention)


# ------------------------------------------------------------------ the command


def cli(*args):
    return subprocess.run([NEUROMORPH, *map(str, args)], capture_output=True, text=True, timeout=120)


def test_cli_import_nir_with_sinabs_convention_says_which_convention_dt_and_reset(tmp_path):
    source = write_sinabs_nmnist_cnn(tmp_path / "cnn.nir", seed=0)
    proc = cli("import-nir", source, "-o", tmp_path / "s.json", "--convention", "sinabs")
    assert proc.returncode == 0, proc.stderr
    assert "sinabs convention" in proc.stdout and "dt 1 s" in proc.stdout and "reset subtract" in proc.stdout
    assert "8970 neurons" in proc.stdout and "warning" not in proc.stderr
    assert nm.load(tmp_path / "s.json") == read_nir(source, convention="sinabs")



def test_cli_import_nir_auto_json_names_the_producer_sign(tmp_path):
    source = write_sinabs_nmnist_cnn(tmp_path / "cnn.nir", seed=0)
    data = json.loads(cli("import-nir", source, "-o", tmp_path / "a.json", "--convention", "auto",
                          "--json").stdout)
    assert data["convention"] == "sinabs" and "SumPool2d" in data["convention_reason"]
    assert data["dt"] == 1.0 and data["reset"] == ["subtract"] and data["warnings"] == []


def test_cli_import_nir_without_dt_warns_on_stderr_about_the_assumed_dt(tmp_path):
    source = write_sinabs_nmnist_cnn(tmp_path / "cnn.nir", seed=0)
    proc = cli("import-nir", source, "-o", tmp_path / "d.json")
    assert proc.returncode == 0, proc.stderr
    assert "nir convention" in proc.stdout and "dt 0.0001 s (assumed" in proc.stdout
    warned = [line for line in proc.stderr.splitlines() if line.startswith("neuromorph: warning: ")]
    assert len(warned) == len(proc.stderr.splitlines()) == 2, proc.stderr
    assert any("dt = 0.0001 s was assumed" in w and "--dt SECONDS" in w for w in warned), proc.stderr
    assert any("looks written by sinabs" in w and "--convention sinabs" in w for w in warned), proc.stderr


def test_cli_unknown_convention_is_one_line_and_exit_2(tmp_path):
    source = write_sinabs_nmnist_cnn(tmp_path / "cnn.nir")
    proc = cli("import-nir", source, "-o", tmp_path / "m.json", "--convention", "brian")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("neuromorph: error: unknown convention 'brian'")
    assert not (tmp_path / "m.json").exists()
