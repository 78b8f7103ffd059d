"""NIR interchange: exact round trips, real snnTorch and Norse files, and their behaviour.

The behaviour tests run the imported graph in the reference simulator and compare
spike for spike with the framework that wrote the file.
"""
from __future__ import annotations

import os
import warnings

import h5py
import nir
import norse.torch as norse
import numpy as np
import pytest
import snntorch as snn
import torch
from snntorch.export_nir import export_to_nir

from neuromorph.backends.nir import NIRExportWarning, from_nir, read_nir, to_nir, write_nir
from neuromorph.errors import NIRConversionError
from neuromorph.ir import (
    ALIF, IF, LI, LIF, Affine, Conv1d, Conv2d, CubaLIF, Delay, Edge, Flatten, Graph, Input,
    Linear, Output, Plasticity, Scale, SumPool2d,
)
from neuromorph.simulate import simulate
from snntorch_reference import snntorch_run

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # nirtorch's extract_nir_graph


# ------------------------------------------------------------------ IR graphs


def dense_graph() -> Graph:
    """Every non-conv node type, scalar and per-neuron parameters, a recurrent loop,
    a feed-forward edge delay, ALIF and plasticity."""
    rng = np.random.default_rng(1)
    return Graph(
        nodes={
            "in": Input((3,)),
            "fc": Affine(rng.normal(size=(4, 3)), rng.normal(size=4)),
            "lif": LIF(tau=0.02, v_threshold=np.array([1.0, 1.1, 1.2, 1.3]), v_reset=-0.1),
            "rec": Linear(rng.normal(size=(4, 4)), plasticity=Plasticity("stdp", {"lr": 0.01})),
            "alif": ALIF(tau_mem=0.02, tau_adapt=np.full(4, 0.2), beta=np.array([0, 0.1, 0.2, 0.3])),
            "gain": Scale(np.array([1.0, 2.0, 3.0, 4.0])),
            "wait": Delay(0.002),
            "cuba": CubaLIF(tau_syn=0.005, tau_mem=np.array([0.01, 0.02, 0.03, 0.04]), w_in=2.0),
            "if": IF(r=3.0, v_threshold=0.5),
            "li": LI(tau=0.03, v_leak=0.1),
            "out": Output(),
            "adapt_out": Output((4,)),
        },
        edges=[
            ("in", "fc"), ("fc", "lif"), ("lif", "rec", 1), ("rec", "lif"), ("lif", "alif"),
            ("alif", "gain", 2), ("gain", "wait"), ("wait", "cuba"), ("cuba", "if"),
            ("if", "li"), ("li", "out"), ("alif", "adapt_out"),
        ],
        dt=1e-3,
        metadata={"name": "dense", "tags": ["a", "b"]},
    )


def conv2d_graph() -> Graph:
    rng = np.random.default_rng(2)
    return Graph(
        nodes={
            "in": Input((2, 8, 8)),
            "conv": Conv2d(rng.normal(size=(4, 1, 3, 3)), rng.normal(size=4), stride=(1, 2),
                           padding=1, dilation=1, groups=2),
            "lif": LIF(tau=0.01),
            "pool": SumPool2d(2, padding=(0, 1)),
            "flat": Flatten(),
            "fc": Linear(rng.normal(size=(3, 4 * 4 * 3))),
            "li": LI(tau=np.array([0.01, 0.02, 0.03])),
            "out": Output(),
        },
        edges=[("in", "conv"), ("conv", "lif"), ("lif", "pool"), ("pool", "flat"),
               ("flat", "fc"), ("fc", "li"), ("li", "out")],
    )


def conv1d_graph() -> Graph:
    rng = np.random.default_rng(3)
    return Graph(
        nodes={
            "in": Input((2, 10)),
            "conv": Conv1d(rng.normal(size=(3, 2, 3)), np.zeros(3), stride=2, padding=1, dilation=2),
            "if": IF(r=1000.0, v_threshold=np.full((3, 1), 0.5)),  # broadcasts over length
            "flat": Flatten(start_dim=-2, end_dim=-1),
            "fc": Affine(np.abs(rng.normal(size=(2, 12))), np.zeros(2)),
            "lif": LIF(tau=0.005, r=10.0),
            "out": Output(),
        },
        edges=[("in", "conv"), ("conv", "if"), ("if", "flat"), ("flat", "fc"), ("fc", "lif"),
               ("lif", "out")],
        dt=5e-4,
    )


GRAPHS = {"dense": dense_graph, "conv2d": conv2d_graph, "conv1d": conv1d_graph}


def strip_our_metadata(g: nir.NIRGraph) -> nir.NIRGraph:
    """The same NIR graph as a tool that drops unknown metadata would pass it on."""
    for node in g.nodes.values():
        node.metadata = {}
    g.metadata = {}
    return g


def quiet_to_nir(graph: Graph) -> nir.NIRGraph:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NIRExportWarning)
        return to_nir(graph)


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize("make", GRAPHS.values(), ids=GRAPHS.keys())
def test_round_trip_in_memory_is_exact(make):
    graph = make()
    assert from_nir(quiet_to_nir(graph)) == graph


@pytest.mark.parametrize("make", GRAPHS.values(), ids=GRAPHS.keys())
def test_round_trip_through_file_is_exact(make, tmp_path):
    graph = make()
    write_nir(graph, tmp_path / "g.nir")
    back = read_nir(tmp_path / "g.nir")
    assert back == graph
    assert list(back.nodes) == list(graph.nodes)  # nir.read sorts nodes; ours restores order


@pytest.mark.parametrize("make", GRAPHS.values(), ids=GRAPHS.keys())
def test_written_file_passes_nirs_own_type_check(make, tmp_path):
    graph = make()
    write_nir(graph, tmp_path / "g.nir")
    g = nir.read(tmp_path / "g.nir")  # type_check=True by default
    for name in graph.nodes:
        node = g.nodes[name]
        if not isinstance(node, nir.Input):
            assert tuple(node.output_type["output"]) == graph.shape(name), name


@pytest.mark.parametrize("make", [conv2d_graph, conv1d_graph], ids=["conv2d", "conv1d"])
def test_what_other_tools_read_behaves_like_the_original(make):
    """Without our metadata (grouped conv written dense, parameters broadcast) the
    graph must still mean the same thing."""
    graph = make()
    foreign = from_nir(strip_our_metadata(quiet_to_nir(graph)))
    x = np.random.default_rng(7).uniform(0, 3, size=(20, *graph.shape("in")))
    expected = simulate(graph, x, dt=1e-3)["out"]
    assert np.abs(expected).sum() > 5, "the comparison needs activity"
    np.testing.assert_allclose(simulate(foreign, x, dt=1e-3)["out"], expected, rtol=1e-12, atol=1e-12)


def test_scalar_neuron_parameters_are_broadcast_in_nir_and_restored():
    graph = dense_graph()
    g = quiet_to_nir(graph)
    assert g.nodes["lif"].tau.shape == (4,)
    assert g.nodes["lif"].v_threshold.tolist() == [1.0, 1.1, 1.2, 1.3]
    back = from_nir(g)
    assert back.nodes["lif"].tau.shape == ()
    assert back.nodes["if"].r.shape == ()


def test_conv_input_shape_and_flatten_input_type_come_from_the_graph():
    g = quiet_to_nir(conv2d_graph())
    assert tuple(g.nodes["conv"].input_shape) == (8, 8)
    assert g.nodes["flat"].input_type["input"].tolist() == [4, 4, 3]
    assert quiet_to_nir(conv1d_graph()).nodes["conv"].input_shape == 10


def test_recurrent_delay_1_on_the_loop_entry_edge_is_a_plain_nir_edge():
    g = quiet_to_nir(dense_graph())
    assert ("lif", "rec") in g.edges and ("rec", "lif") in g.edges
    back = from_nir(strip_our_metadata(g), dt=1e-3)  # as a foreign file: the NIR rule
    assert Edge("lif", "rec", 1) in back.edges and Edge("rec", "lif", 0) in back.edges


def test_feed_forward_edge_delay_becomes_a_nir_delay_node():
    g = quiet_to_nir(dense_graph())
    inserted = [n for n, node in g.nodes.items() if isinstance(node, nir.Delay) and n != "wait"]
    assert len(inserted) == 1
    assert np.allclose(g.nodes[inserted[0]].delay, 2e-3)
    assert ("alif", inserted[0]) in g.edges and (inserted[0], "gain") in g.edges
    assert Edge("alif", "gain", 2) in from_nir(g).edges


def test_other_tools_see_an_inserted_delay_as_a_delay_node():
    back = from_nir(strip_our_metadata(quiet_to_nir(dense_graph())), dt=1e-3)
    delay_nodes = [n for n, node in back.nodes.items() if isinstance(node, Delay) and n != "wait"]
    assert len(delay_nodes) == 1 and np.allclose(back.nodes[delay_nodes[0]].delay, 2e-3)


def test_edge_delay_without_dt_is_refused():
    graph = Graph({"in": Input((2,)), "lif": LIF(tau=0.01), "out": Output()},
                  [("in", "lif", 3), ("lif", "out")])
    with pytest.raises(NIRConversionError, match=r"in -> lif.*3 steps.*dt"):
        to_nir(graph)


def test_graph_without_dt_round_trips_with_dt_unset(tmp_path):
    graph = conv2d_graph()
    assert graph.dt is None
    write_nir(graph, tmp_path / "g.nir")
    assert read_nir(tmp_path / "g.nir").dt is None


def test_alif_is_written_as_lif_with_a_warning_and_restored(tmp_path):
    messages = write_nir(dense_graph(), tmp_path / "g.nir")
    assert any("'alif'" in m and "plain LIF" in m for m in messages)
    assert isinstance(nir.read(tmp_path / "g.nir").nodes["alif"], nir.LIF)
    restored = read_nir(tmp_path / "g.nir").nodes["alif"]
    assert restored == dense_graph().nodes["alif"]


def test_plasticity_travels_in_metadata_with_a_warning(tmp_path):
    messages = write_nir(dense_graph(), tmp_path / "g.nir")
    assert any("'rec'" in m and "stdp" in m for m in messages)
    assert read_nir(tmp_path / "g.nir").nodes["rec"].plasticity == Plasticity("stdp", {"lr": 0.01})


def test_to_nir_reports_losses_as_warnings():
    with pytest.warns(NIRExportWarning) as record:
        to_nir(dense_graph())
    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 2
    assert "'alif'" in messages[0] and "plain LIF" in messages[0]
    assert "'rec'" in messages[1] and "plasticity" in messages[1]


def test_write_into_a_missing_directory_is_refused(tmp_path):
    with pytest.raises(NIRConversionError, match="cannot write NIR file"):
        write_nir(conv2d_graph(), tmp_path / "missing" / "g.nir")


def test_zero_delay_edge_closing_a_loop_is_warned_about_and_restored():
    graph = Graph(
        {"in": Input((2,)), "lif": LIF(tau=0.01), "rec": Linear(np.eye(2)), "out": Output()},
        [("in", "lif"), ("lif", "rec", 0), ("rec", "lif", 1), ("lif", "out")], dt=1e-3,
    )
    with pytest.warns(NIRExportWarning, match="lif -> rec has delay 0 but is where NIR readers put"):
        g = to_nir(graph)
    assert from_nir(g) == graph


def test_write_nir_never_leaves_a_half_written_file(tmp_path, monkeypatch):
    path = tmp_path / "g.nir"
    write_nir(conv2d_graph(), path)
    before = path.read_bytes()
    real_write = nir.write

    def write_then_fail(filename, graph):
        real_write(filename, graph)
        with open(filename, "r+b") as f:
            f.truncate(100)
        raise OSError("disk full")

    monkeypatch.setattr(nir, "write", write_then_fail)
    with pytest.raises(NIRConversionError, match="disk full"):
        write_nir(dense_graph(), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["g.nir"]


# ------------------------------------------------------------- hand-written NIR


def _lif(n: int, **kw) -> nir.LIF:
    return nir.LIF(tau=np.full(n, 0.01), r=np.ones(n), v_leak=np.zeros(n),
                   v_threshold=np.ones(n), v_reset=np.zeros(n), **kw)


def _rnn_subgraph(n: int) -> nir.NIRGraph:
    return nir.NIRGraph(
        nodes={"input": nir.Input(np.array([n])), "lif": _lif(n),
               "w_rec": nir.Linear(np.eye(n)), "output": nir.Output(np.array([n]))},
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
    )


@pytest.mark.parametrize(
    "into, out_of", [("rnn", "rnn"), ("rnn.input", "rnn.output"), ("rnn.lif", "rnn.lif")]
)
def test_nested_subgraph_is_flattened_with_dotted_names(into, out_of):
    g = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([2])), "fc": nir.Linear(np.ones((3, 2))),
               "rnn": _rnn_subgraph(3), "output": nir.Output(np.array([3]))},
        edges=[("input", "fc"), ("fc", into), (out_of, "output")],
        type_check=False,
    )
    graph = from_nir(g)
    assert set(graph.nodes) == {"input", "fc", "rnn.lif", "rnn.w_rec", "output"}
    assert sorted(graph.edges) == sorted([
        Edge("input", "fc"), Edge("fc", "rnn.lif"), Edge("rnn.lif", "rnn.w_rec", 1),
        Edge("rnn.w_rec", "rnn.lif"), Edge("rnn.lif", "output"),
    ])


def test_nested_subgraph_survives_a_nir_file(tmp_path):
    g = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([3])), "rnn": _rnn_subgraph(3),
               "output": nir.Output(np.array([3]))},
        edges=[("input", "rnn"), ("rnn", "output")],
    )
    nir.write(tmp_path / "nested.nir", g)
    graph = read_nir(tmp_path / "nested.nir")
    assert Edge("rnn.lif", "rnn.w_rec", 1) in graph.edges and Edge("input", "rnn.lif") in graph.edges


def test_recurrent_cycle_gets_delay_1_on_the_edge_leaving_its_entry_only():
    g = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([2])), "fc": nir.Affine(np.ones((3, 2)), np.zeros(3)),
               "lif": _lif(3), "w_rec": nir.Affine(np.eye(3), np.zeros(3)),
               "output": nir.Output(np.array([3]))},
        edges=[("w_rec", "lif"), ("input", "fc"), ("lif", "w_rec"), ("fc", "lif"), ("lif", "output")],
    )
    delays = {(e.source, e.target): e.delay for e in from_nir(g).edges}
    assert delays == {("w_rec", "lif"): 0, ("input", "fc"): 0, ("lif", "w_rec"): 1,
                      ("fc", "lif"): 0, ("lif", "output"): 0}


def _conv_nir(padding, n_flat: int = 18) -> nir.NIRGraph:
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(np.array([1, 6, 6])),
            "conv": nir.Conv2d(None, np.ones((2, 1, 3, 3)), 1, padding, 1, 1, np.zeros(2)),
            "lif": _lif(1),  # (1,)-shaped parameters broadcast to the (2, 6, 6) population
            "pool": nir.SumPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0])),
            "flat": nir.Flatten(None, start_dim=0, end_dim=-1),
            "fc": nir.Linear(np.ones((4, n_flat))),
            "output": nir.Output(np.array([4])),
        },
        edges=[("input", "conv"), ("conv", "lif"), ("lif", "pool"), ("pool", "flat"),
               ("flat", "fc"), ("fc", "output")],
        type_check=False,
    )


def test_conv_sumpool_flatten_graph_imports_with_inferred_shapes():
    graph = from_nir(_conv_nir("same"))
    assert graph.nodes["conv"].padding == (1, 1)
    assert [graph.shape(n) for n in ("conv", "pool", "flat", "fc")] == [
        (2, 6, 6), (2, 3, 3), (18,), (4,)]
    assert graph.nodes["pool"] == SumPool2d(2, 2, 0)


def test_valid_padding_is_zero():
    graph = from_nir(_conv_nir("valid", n_flat=8))
    assert graph.nodes["conv"].padding == (0, 0) and graph.shape("conv") == (2, 4, 4)


def test_same_padding_that_would_be_asymmetric_is_refused():
    g = _conv_nir("same")
    g.nodes["conv"] = nir.Conv2d(None, np.ones((2, 1, 2, 2)), 1, "same", 1, 1, np.zeros(2))
    with pytest.raises(NIRConversionError, match=r"node 'conv'.*same.*unevenly"):
        from_nir(g)


def test_avgpool_becomes_sumpool_then_scale():
    g = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([1, 4, 4])),
               "avg": nir.AvgPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0])),
               "output": nir.Output(np.array([1, 2, 2]))},
        edges=[("input", "avg"), ("avg", "output")],
    )
    graph = from_nir(g)
    assert graph.nodes["avg"] == SumPool2d(2, 2, 0)
    assert graph.nodes["avg.scale"] == Scale(0.25)
    assert Edge("avg", "avg.scale") in graph.edges and Edge("avg.scale", "output") in graph.edges


def test_identity_nodes_are_bypassed():
    from nir.ir.graph import Identity

    g = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([2])), "id": Identity({"input": np.array([2])}),
               "lif": _lif(2), "output": nir.Output(np.array([2]))},
        edges=[("input", "id"), ("id", "lif"), ("lif", "output")],
        type_check=False,
    )
    graph = from_nir(g)
    assert "id" not in graph.nodes and Edge("input", "lif") in graph.edges


@pytest.mark.parametrize("node, kind", [
    (nir.I(r=np.ones(2)), "I"),
    (nir.CubaLI(tau_syn=np.ones(2), tau_mem=np.ones(2), r=np.ones(2), v_leak=np.zeros(2)), "CubaLI"),
    (nir.Threshold(threshold=np.ones(2)), "Threshold"),
])
def test_unsupported_node_type_is_refused_naming_node_and_type(node, kind):
    g = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([2])), "odd": node, "output": nir.Output(np.array([2]))},
        edges=[("input", "odd"), ("odd", "output")],
    )
    with pytest.raises(NIRConversionError, match=rf"node 'odd': NIR node type {kind} is not supported"):
        from_nir(g)


def test_invalid_parameter_is_refused_naming_node():
    g = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([2])), "lif": _lif(2), "output": nir.Output(np.array([2]))},
        edges=[("input", "lif"), ("lif", "output")],
    )
    g.nodes["lif"].tau = np.array([0.01, -0.01])
    with pytest.raises(NIRConversionError, match=r"node 'lif': parameter 'tau' must be > 0"):
        from_nir(g)


def test_unknown_node_type_in_a_file_is_refused_naming_node(tmp_path):
    path = tmp_path / "g.nir"
    write_nir(conv2d_graph(), path)
    with h5py.File(path, "r+") as f:
        del f["node/nodes/lif/type"]
        f["node/nodes/lif"].create_dataset("type", data="Spiky", dtype=h5py.string_dtype())
    with pytest.raises(NIRConversionError, match="node 'lif': unknown NIR node type 'Spiky'"):
        read_nir(path)


def test_non_nir_file_is_refused(tmp_path):
    path = tmp_path / "notes.nir"
    path.write_text("not a NIR file\n")
    with pytest.raises(NIRConversionError, match="not HDF5") as info:
        read_nir(path)
    assert "\n" not in str(info.value)


def test_hdf5_file_without_a_nir_graph_is_refused(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.arange(3))
    with pytest.raises(NIRConversionError, match="not a NIR graph"):
        read_nir(path)


def test_truncated_file_is_refused(tmp_path):
    path = tmp_path / "g.nir"
    write_nir(conv2d_graph(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(NIRConversionError, match="g.nir") as info:
        read_nir(path)
    assert "\n" not in str(info.value)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(NIRConversionError, match="does not exist"):
        read_nir(tmp_path / "nope.nir")


def test_unknown_convention_is_refused():
    with pytest.raises(NIRConversionError, match="unknown convention 'brian'"):
        from_nir(_conv_nir(1), convention="brian")


def test_dt_argument_wins_over_stored_dt():
    assert from_nir(quiet_to_nir(dense_graph()), dt=2e-4).dt == 2e-4


@pytest.mark.parametrize("convention, dt", [("nir", 1e-4), ("snntorch", 1e-4), ("norse", 1e-3)])
def test_foreign_graph_gets_the_conventions_default_dt(convention, dt):
    assert from_nir(_conv_nir(1), convention=convention).dt == dt


# -------------------------------------------------------------------- snnTorch

T = 40  # time steps for behaviour comparisons


def _leaky(n, beta=0.9, **kw):
    # NIR's type check needs per-neuron beta/threshold; NIR resets to v_reset: "zero".
    return snn.Leaky(beta=torch.full((n,), beta), threshold=torch.ones(n), init_hidden=True,
                     reset_mechanism="zero", **kw)


def _synaptic(n, **kw):
    return snn.Synaptic(alpha=torch.full((n,), 0.8), beta=torch.full((n,), 0.9),
                        threshold=torch.ones(n), init_hidden=True, reset_mechanism="zero", **kw)


def _snntorch_file(net, shape, tmp_path) -> str:
    g = export_to_nir(net, torch.zeros(1, *shape), ignore_dims=[0])
    path = str(tmp_path / "snntorch.nir")
    nir.write(path, g)
    return path


def _assert_snntorch_matches(net, shape, tmp_path, rate=0.3, amplitude=2.0):
    graph = read_nir(_snntorch_file(net, shape, tmp_path), convention="snntorch")
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(T, *shape, generator=gen) < rate).float() * amplitude
    expected = snntorch_run(net, x)
    got = simulate(graph, x.numpy())["output"]
    assert expected.sum() > 5, "the comparison needs spikes"
    np.testing.assert_array_equal(got, expected)


def test_snntorch_file_imports_with_expected_structure_and_parameters(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 4), _leaky(4, beta=0.8),
                              torch.nn.Linear(4, 3, bias=False), _synaptic(3))
    graph = read_nir(_snntorch_file(net, (5,), tmp_path), convention="snntorch")
    assert graph.dt == 1e-4
    assert [type(graph.nodes[n]).__name__ for n in ("input", "0", "1", "2", "3", "output")] == [
        "Input", "Affine", "LIF", "Linear", "CubaLIF", "Output"]
    lif, cuba = graph.nodes["1"], graph.nodes["3"]
    beta, alpha = np.float32(0.8), np.float32(0.8)
    np.testing.assert_allclose(lif.tau, 1e-4 / (1 - beta), rtol=1e-6)
    np.testing.assert_allclose(lif.r, 1 / (1 - beta), rtol=1e-6)
    np.testing.assert_allclose(cuba.w_in, 1 / (1 - alpha), rtol=1e-6)  # tau_syn / dt
    np.testing.assert_array_equal(graph.nodes["0"].weight, net[0].weight.detach().numpy())
    assert all(e.delay == 0 for e in graph.edges)


def test_snntorch_rsynaptic_file_imports_a_recurrent_loop(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(5, 4),
        snn.RSynaptic(alpha=0.8, beta=0.9, linear_features=4, init_hidden=True, reset_mechanism="zero"),
    )
    graph = read_nir(_snntorch_file(net, (5,), tmp_path), convention="snntorch")
    assert isinstance(graph.nodes["1.lif"], CubaLIF) and isinstance(graph.nodes["1.w_rec"], Affine)
    assert Edge("1.lif", "1.w_rec", 1) in graph.edges and Edge("1.w_rec", "1.lif", 0) in graph.edges


def test_imported_snntorch_leaky_synaptic_spikes_match_snntorch(tmp_path):
    torch.manual_seed(0)
    # reset_delay=False: Synaptic's default zeroes the step *after* a spike, see the xfail below.
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), _leaky(8), torch.nn.Linear(8, 4),
                              _synaptic(4, reset_delay=False))
    _assert_snntorch_matches(net, (5,), tmp_path)


def test_imported_snntorch_conv_avgpool_flatten_spikes_match_snntorch(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, padding=1),
        snn.Leaky(beta=torch.full((2, 6, 6), 0.9), threshold=torch.ones(2, 6, 6),
                  init_hidden=True, reset_mechanism="zero"),
        torch.nn.AvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(18, 3), _leaky(3),
    )
    with torch.no_grad():
        net[4].weight.mul_(4.0)
    _assert_snntorch_matches(net, (1, 6, 6), tmp_path, rate=0.5, amplitude=3.0)


def test_imported_snntorch_rleaky_spikes_match_snntorch_with_zero_recurrent_bias(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(5, 8),
        snn.RLeaky(beta=torch.full((8,), 0.9), threshold=torch.ones(8), linear_features=8,
                   init_hidden=True, reset_mechanism="zero", reset_delay=False),
    )
    with torch.no_grad():
        net[1].recurrent.bias.zero_()  # the next test keeps the bias
    _assert_snntorch_matches(net, (5,), tmp_path)


def test_imported_snntorch_rleaky_with_recurrent_bias_matches_snntorch(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(5, 8),
        snn.RLeaky(beta=torch.full((8,), 0.9), threshold=torch.ones(8), linear_features=8,
                   init_hidden=True, reset_mechanism="zero", reset_delay=False),
    )
    _assert_snntorch_matches(net, (5,), tmp_path)


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "snnTorch's default reset_delay=True with reset 'zero' in Synaptic/RLeaky/RSynaptic sets "
    "the whole membrane of the step after a spike to 0 (that step's input is lost); NIR "
    "resets to v_reset and integrates the next input. RSynaptic cannot run reset_delay=False."))
def test_imported_snntorch_default_synaptic_matches_snntorch(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), _synaptic(8))
    _assert_snntorch_matches(net, (5,), tmp_path)


# ----------------------------------------------------------------------- Norse

NORSE_CELLS = {
    "LIFBoxCell": lambda: norse.LIFBoxCell(norse.LIFBoxParameters(tau_mem_inv=torch.tensor(200.0))),
    "LIFCell": lambda: norse.LIFCell(norse.LIFParameters(tau_syn_inv=torch.tensor(250.0),
                                                         tau_mem_inv=torch.tensor(125.0))),
    "IAFCell": lambda: norse.IAFCell(),
    "LIBoxCell": lambda: norse.LIBoxCell(norse.LIBoxParameters(tau_mem_inv=torch.tensor(50.0))),
}


def _norse_graph(model, shape) -> nir.NIRGraph:
    # Norse's to_nir output has 0-d parameters that nir.write cannot store: in memory.
    return norse.to_nir(model, torch.zeros(1, *shape))


def _norse_run(model, x: torch.Tensor) -> np.ndarray:
    state, out = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            y, state = model(x[t : t + 1], state)
            out.append((y.to_dense() if y.is_sparse else y)[0].numpy())
    return np.array(out)


def test_norse_lifbox_imports_with_corrected_tau():
    torch.manual_seed(0)
    model = norse.SequentialState(torch.nn.Linear(4, 3), NORSE_CELLS["LIFBoxCell"]())
    g = _norse_graph(model, (4,))
    assert float(g.nodes["1"].tau) == pytest.approx(0.001 / 200)  # norse#411: tau * dt
    lif = from_nir(g, convention="norse").nodes["1"]
    assert isinstance(lif, LIF) and float(lif.tau) == pytest.approx(1 / 200)


def test_norse_cuba_lif_imports_with_corrected_taus_and_input_weight():
    model = norse.SequentialState(torch.nn.Linear(4, 3), NORSE_CELLS["LIFCell"]())
    cuba = from_nir(_norse_graph(model, (4,)), convention="norse").nodes["1"]
    assert isinstance(cuba, CubaLIF)
    assert float(cuba.tau_syn) == pytest.approx(1 / 250)
    assert float(cuba.tau_mem) == pytest.approx(1 / 125)
    assert float(cuba.w_in) == pytest.approx((1 / 250) / 1e-3)  # Norse adds input unscaled


def test_norse_iaf_imports_with_r_of_one_over_dt():
    model = norse.SequentialState(torch.nn.Linear(4, 3), NORSE_CELLS["IAFCell"]())
    node = from_nir(_norse_graph(model, (4,)), convention="norse").nodes["1"]
    assert isinstance(node, IF) and float(node.r) == pytest.approx(1e3)


def test_norse_libox_imports_with_corrected_tau():
    model = norse.SequentialState(torch.nn.Linear(4, 3), NORSE_CELLS["LIBoxCell"]())
    node = from_nir(_norse_graph(model, (4,)), convention="norse").nodes["1"]
    assert isinstance(node, LI) and float(node.tau) == pytest.approx(1 / 50)


def test_norse_batch_dim_in_input_is_dropped():
    model = norse.SequentialState(torch.nn.Linear(4, 3), NORSE_CELLS["LIFBoxCell"]())
    g = _norse_graph(model, (4,))
    assert g.nodes["input"].input_type["input"].tolist() == [1, 4]
    graph = from_nir(g, convention="norse")
    assert graph.nodes["input"] == Input((4,)) and graph.shape("output") == (3,)


def test_norse_conv2d_keeps_a_single_channel_dim_after_dropping_batch():
    model = norse.SequentialState(torch.nn.Conv2d(1, 2, 3), NORSE_CELLS["LIFBoxCell"]())
    graph = from_nir(_norse_graph(model, (1, 6, 6)), convention="norse")
    assert graph.nodes["input"] == Input((1, 6, 6)) and graph.shape("output") == (2, 4, 4)


@pytest.mark.parametrize("cell", ["LIFBoxCell", "LIFCell", "IAFCell"])
def test_imported_norse_model_spikes_match_norse(cell):
    torch.manual_seed(0)
    model = norse.SequentialState(torch.nn.Linear(5, 6), NORSE_CELLS[cell]())
    graph = from_nir(_norse_graph(model, (5,)), convention="norse")
    x = (torch.rand(T, 5, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    x = x * (1.0 if cell == "IAFCell" else 20.0)
    expected = _norse_run(model, x)
    assert expected.sum() > 5, "the comparison needs spikes"
    np.testing.assert_array_equal(simulate(graph, x.numpy())["output"], expected)


def test_imported_norse_leaky_integrator_matches_norse():
    torch.manual_seed(0)
    model = norse.SequentialState(torch.nn.Linear(5, 6), NORSE_CELLS["LIBoxCell"]())
    graph = from_nir(_norse_graph(model, (5,)), convention="norse")
    x = torch.rand(T, 5, generator=torch.Generator().manual_seed(1)) * 5
    expected = _norse_run(model, x)
    np.testing.assert_allclose(simulate(graph, x.numpy())["output"], expected, rtol=1e-5, atol=1e-5)


def test_imported_norse_conv2d_model_spikes_match_norse():
    torch.manual_seed(0)
    model = norse.SequentialState(torch.nn.Conv2d(1, 2, 3), NORSE_CELLS["LIFBoxCell"]())
    graph = from_nir(_norse_graph(model, (1, 6, 6)), convention="norse")
    x = (torch.rand(T, 1, 6, 6, generator=torch.Generator().manual_seed(1)) < 0.5).float() * 20
    expected = _norse_run(model, x)
    assert expected.sum() > 5
    np.testing.assert_array_equal(simulate(graph, x.numpy())["output"], expected)


def test_norse_layer_that_to_nir_cannot_convert_is_refused_naming_node():
    model = norse.SequentialState(torch.nn.Conv2d(1, 2, 3), norse.LIFBoxCell(), torch.nn.Flatten(),
                                  torch.nn.Linear(32, 2))
    g = _norse_graph(model, (1, 6, 6))
    assert g.nodes["2"] is None  # Norse 1.1.0's to_nir has no Flatten
    with pytest.raises(NIRConversionError, match="node '2': the NIR graph holds None"):
        from_nir(g, convention="norse")


def test_norse_convention_is_refused_for_a_file_written_by_neuromorph():
    with pytest.raises(NIRConversionError, match="written by neuromorph"):
        from_nir(quiet_to_nir(dense_graph()), convention="norse")
