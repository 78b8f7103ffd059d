"""Convolutions kept as convolutions, from the IR to the artifact to Lava.

The lowering keeps a Conv / SumPool chain as one kernel where that is exact (and expands
it where not); the chip model, the fixed-point model and the Lava process compute the
same convolution; an artifact stores kernels and checks every geometry field; Lava's float
run is spike-exact against the float netlist model and its fixed-point run bit-exact
against the numpy integer model.
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import neuromorph as nm
from neuromorph.backends.loihi2 import conv as convs
from neuromorph.backends.loihi2.chip_model import simulate_netlist
from neuromorph.backends.loihi2.conv import ConvGeometry, ConvOp
from neuromorph.backends.loihi2.netlist import Netlist, lower
from neuromorph.backends.loihi2.payload import decode
from neuromorph.backends.loihi2.quantize import quantize, simulate_fixed
from neuromorph.backends.loihi2.target import LAVA
from neuromorph.compile import compile_graph, save_artifact
from neuromorph.documents import decode_tree, encode_tree
from neuromorph.errors import ModelFileError
from neuromorph.ir import LI, LIF, Conv1d, Conv2d, Flatten, Graph, Input, Output, Scale, SumPool2d
from neuromorph.simulate import simulate

DT = 1e-3
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from conv_memory import nmnist_cnn  # noqa: E402


def expanded(net: Netlist) -> Netlist:
    """The same netlist with every convolution expanded into its matrix."""
    return replace(net, connections=[replace(c, weight=convs.dense(c.conv, c.weight), conv=None)
                                     if c.conv is not None else c for c in net.connections])


def kinds(net: Netlist) -> list[tuple[str, str, str, tuple[int, ...]]]:
    return [(c.source, c.target, c.kind, c.weight.shape) for c in net.connections]


def small_cnn(seed: int = 0) -> Graph:
    """2x12x12 -> conv -> LIF -> conv -> LIF -> pool -> conv -> LIF -> dense -> LI, and a
    skip convolution from the input into the second LIF (an extra synaptic delay)."""
    rng = np.random.default_rng(seed)

    def conv(ci: int, co: int, **kw) -> Conv2d:
        return Conv2d(rng.normal(0.4, 1.0, (co, ci, 3, 3)) * 3 / np.sqrt(9 * ci), np.zeros(co), **kw)

    nodes = {"x": Input((2, 12, 12)), "c1": conv(2, 4, padding=1), "l1": LIF(tau=5e-3, r=5.0),
             "c2": conv(4, 4, padding=1), "skip": conv(2, 4, padding=1), "l2": LIF(tau=5e-3, r=5.0),
             "p": SumPool2d(2), "c3": conv(4, 4, padding=1), "l3": LIF(tau=5e-3, r=5.0), "f": Flatten(),
             "w": nm.dense(144, 10, scale=3.0, seed=seed), "ro": LI(tau=10e-3, r=10.0), "y": Output()}
    edges = [("x", "c1"), ("c1", "l1"), ("l1", "c2"), ("c2", "l2"), ("x", "skip"), ("skip", "l2"),
             ("l2", "p"), ("p", "c3"), ("c3", "l3"), ("l3", "f"), ("f", "w"), ("w", "ro"), ("ro", "y")]
    return Graph(nodes, edges, dt=DT)


# ---------------------------------------------------------------- lowering


def test_the_nmnist_cnn_keeps_its_convolutions_and_its_artifact_is_small(tmp_path):
    net = lower(nmnist_cnn())
    assert kinds(net) == [("input", "if1", "conv", (16, 2, 5, 5)), ("if1", "if2", "conv", (16, 16, 3, 3)),
                          ("if2", "if3", "conv", (8, 16, 6, 6)),  # the pooling composed into conv3
                          ("if3", "if4", "dense", (256, 512)), ("if4", "if5", "dense", (10, 256))]
    pooled = net.connections[2].conv
    assert (pooled.stride, pooled.padding, pooled.in_shape, pooled.out_shape) == \
        ((2, 2), (2, 2), (16, 16, 16), (8, 8, 8))
    for precision, limit in (("float", 5e6), ("fixed", 8e6)):  # were 305 MB and 610 MB
        path = save_artifact(compile_graph(nmnist_cnn(), backend="lava", precision=precision),
                             tmp_path / f"{precision}.art")
        assert path.stat().st_size < limit


CASES = {
    # name: (nodes, edges, input shape, kinds of the connections)
    "pool then conv": (
        {"c": Conv2d(np.ones((3, 2, 3, 3)) * 0.3, np.full(3, 0.1), padding=1), "l": LIF(tau=5e-3, r=5.0),
         "p": SumPool2d(2), "c2": Conv2d(np.linspace(-1, 1, 54).reshape(2, 3, 3, 3), np.zeros(2), padding=1)},
        [("x", "c"), ("c", "l"), ("l", "p"), ("p", "c2"), ("c2", "ro")], (2, 8, 8), ["conv", "conv"]),
    "pool then conv, odd map (expanded)": (
        {"c": Conv2d(np.ones((3, 2, 3, 3)) * 0.3, np.zeros(3), padding=1), "l": LIF(tau=5e-3, r=5.0),
         "p": SumPool2d(2), "c2": Conv2d(np.linspace(-1, 1, 54).reshape(2, 3, 3, 3), np.zeros(2), padding=1)},
        [("x", "c"), ("c", "l"), ("l", "p"), ("p", "c2"), ("c2", "ro")], (2, 9, 9), ["conv", "dense"]),
    "conv then pool, dilated, with bias": (
        {"c": Conv2d(np.linspace(-1, 2, 72).reshape(4, 2, 3, 3), np.arange(4) * 0.1, dilation=2),
         "p": SumPool2d(2)},
        [("x", "c"), ("c", "p"), ("p", "ro")], (2, 9, 9), ["conv"]),
    "groups, per-channel scale, pool": (
        {"c": Conv2d(np.linspace(-1, 1, 108).reshape(6, 2, 3, 3), np.zeros(6), padding=1, groups=2),
         "s": Scale(np.arange(1.0, 7.0).reshape(6, 1, 1)), "p": SumPool2d(2)},
        [("x", "c"), ("c", "s"), ("s", "p"), ("p", "ro")], (4, 8, 8), ["conv"]),
    "per-element scale (expanded)": (
        {"c": Conv2d(np.linspace(-1, 1, 54).reshape(3, 2, 3, 3), np.zeros(3), padding=1),
         "s": Scale(np.linspace(0.5, 2, 75).reshape(3, 5, 5))},
        [("x", "c"), ("c", "s"), ("s", "ro")], (2, 5, 5), ["dense"]),
    "conv1d, strided": (
        {"c": Conv1d(np.linspace(-1, 1, 60).reshape(4, 3, 5), np.zeros(4), stride=2, padding=2)},
        [("x", "c"), ("c", "ro")], (3, 20), ["conv"]),
    "two convolutions summed (skip)": (
        {"a": Conv2d(np.full((3, 2, 3, 3), 0.2), np.zeros(3), padding=1),
         "b": Conv2d(np.linspace(-1, 1, 54).reshape(3, 2, 3, 3), np.zeros(3), padding=1)},
        [("x", "a"), ("x", "b"), ("a", "ro"), ("b", "ro")], (2, 6, 6), ["conv"]),
    "pool then flatten then dense": (
        {"l": LIF(tau=5e-3, r=50.0), "p": SumPool2d(2), "f": Flatten(),
         "w": nm.dense(18, 4, seed=1)},
        [("x", "l"), ("l", "p"), ("p", "f"), ("f", "w"), ("w", "ro")], (2, 6, 6), ["dense", "dense"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_kept_composed_and_expanded_convolutions_equal_the_ir(case):
    nodes, edges, shape, want = CASES[case]
    g = Graph({"x": Input(shape), **nodes, "ro": LI(tau=5e-3, r=5.0), "y": Output()}, [*edges, ("ro", "y")], dt=DT)
    net = lower(g)
    assert [c.kind for c in net.connections] == want
    x = (np.random.default_rng(1).random((2, 12, *shape)) < 0.4) * 1.0
    got, _ = simulate_netlist(net, x)
    np.testing.assert_allclose(got["y"], simulate(g, x)["y"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["y"], simulate_netlist(expanded(net), x)[0]["y"], rtol=0, atol=1e-12)


GEOMETRIES = [  # (in_shape, C_out, kernel, stride, padding, dilation, groups)
    ((2, 7, 6), 4, (3, 2), (2, 1), (1, 0), (1, 2), 2),
    ((3, 9, 9), 3, (3, 3), (1, 1), (4, 1), (1, 1), 3),  # padding beyond the kernel
    ((4, 11), 2, (4,), (3,), (2,), (2,), 1),
    ((1, 4, 4), 2, (4, 4), (1, 1), (0, 0), (1, 1), 1),
]


@pytest.mark.parametrize("spec", GEOMETRIES, ids=[str(g[0]) + str(g[2]) for g in GEOMETRIES])
def test_conv_op_and_counts_equal_the_expanded_matrix(spec):
    in_shape, c_out, k, stride, padding, dilation, groups = spec
    out = tuple(convs.conv_out(*a) for a in zip(in_shape[1:], k, stride, padding, dilation))
    geom = ConvGeometry(in_shape, (c_out, *out), k, stride, padding, dilation, groups)
    rng = np.random.default_rng(2)
    kernel = rng.normal(size=geom.kernel_shape) * (rng.random(geom.kernel_shape) < 0.7)
    matrix = convs.dense(geom, kernel)
    x = rng.normal(size=geom.n_in)
    np.testing.assert_allclose(ConvOp(geom, kernel).apply(x), matrix @ x, rtol=1e-12, atol=1e-12)
    torch_style = nm.simulate.conv(x.reshape(1, *in_shape), kernel, np.zeros(c_out), stride, padding,
                                   dilation, groups)
    np.testing.assert_allclose(matrix @ x, torch_style.reshape(-1), rtol=1e-12, atol=1e-12)
    assert np.array_equal(convs.fan_in(geom, kernel), np.count_nonzero(matrix, axis=1))
    assert np.array_equal(convs.fan_out(geom, kernel), np.count_nonzero(matrix, axis=0))
    m = rng.integers(-255, 256, geom.kernel_shape)
    s = rng.integers(0, 2, geom.n_in)
    want = convs.dense(geom, m).astype(np.int64) @ s
    assert np.array_equal(convs.conv_fixed(ConvOp(geom, m.astype(np.int64)), -3, s, graded=False), want >> 3)


def test_composition_is_refused_where_padding_would_read_real_inputs():
    pool = ConvGeometry((2, 9, 9), (2, 4, 4), (3, 3), (2, 2), (0, 0), (1, 1), 2)  # overlapping windows
    conv = ConvGeometry((2, 4, 4), (3, 4, 4), (3, 3), (1, 1), (1, 1), (1, 1), 1)
    assert convs.compose_geometry(pool, conv) is None  # conv's padding row would read x[0]
    flush = ConvGeometry((2, 8, 8), (2, 4, 4), (2, 2), (2, 2), (0, 0), (1, 1), 2)
    both = convs.compose_geometry(flush, replace(conv, in_shape=(2, 4, 4)))
    assert both == ConvGeometry((2, 8, 8), (3, 4, 4), (6, 6), (2, 2), (2, 2), (1, 1), 1)


# ---------------------------------------------------------------- fixed point


@pytest.mark.parametrize("graded", [False, True])
def test_fixed_point_convolution_equals_its_expanded_matrix_bit_for_bit(graded):
    net = lower(small_cnn())
    rng = np.random.default_rng(3)
    x = (rng.random((2, 12, 2, 12, 12)) < 0.3) * (rng.integers(1, 5, (2, 12, 2, 12, 12)) / 4 if graded else 1)
    q = quantize(net, {"x": x})
    assert (q.num_message_bits["x"] > 0) == graded
    dense = replace(q, net=expanded(net), weights=[convs.dense(c.conv, w).astype(np.int32) if c.conv else w
                                                   for c, w in zip(net.connections, q.weights)])
    got, _ = simulate_fixed(q, x, record_spikes=True)
    want, _ = simulate_fixed(dense, x, record_spikes=True)
    for key in want:
        assert np.array_equal(got[key], want[key]), key
    assert all(got[f"{p}.spikes"].sum() > 0 for p in ("l1", "l2", "l3"))


# ---------------------------------------------------------------- artifact


def _encoded(precision: str = "float") -> tuple[Graph, dict]:
    """The payload as an artifact file carries it (JSON lists, decoded arrays)."""
    graph = small_cnn()
    art = compile_graph(graph, backend="lava", precision=precision)
    return graph, decode_tree(encode_tree(LAVA.encode_payload(art.payload)), "test")


def test_dense_connections_are_stored_as_before_and_conv_ones_as_kernels():
    _, data = _encoded()
    records = data["netlist"]["connections"]
    dense = [r for r in records if "conv" not in r]
    assert dense and all(set(r) == {"source", "target", "weight", "ir_delay", "extra_delay"} for r in dense)
    conv = next(r for r in records if "conv" in r)
    assert conv["weight"].shape == (4, 2, 3, 3)
    assert conv["conv"] == {"in_shape": [2, 12, 12], "out_shape": [4, 12, 12], "stride": [1, 1],
                            "padding": [1, 1], "dilation": [1, 1], "groups": 1}


BAD_CONV = [
    ("in_shape", [2, 12, 13], "is not (C, 1 or 2 dims) of the source's 288"),
    ("in_shape", [288], "is not (C, 1 or 2 dims)"),
    ("out_shape", [4, 12, 11], "is not the target's 576"),
    ("out_shape", [16, 6, 6], "give [12, 12], not the out_shape"),
    ("stride", [0, 1], "outside 1.."),
    ("stride", [1], "must be a list of 2 ints"),
    ("padding", [-1, 1], "outside 0.."),
    ("padding", [2, 1], "give [14, 12]"),
    ("dilation", [1, True], "must be an int"),
    ("groups", 3, "does not divide 2 input and 4 output channels"),
    ("groups", 2, "weight: has shape [4, 2, 3, 3], expected [4, 1, 3, 3]"),
    ("weight", np.zeros((4, 2, 3)), "must be a [C_out, C_in/groups, 2 kernel dims] array"),
    ("weight", np.zeros((4, 2, 5, 5)), "give [10, 10]"),
    ("extra", 1, "unknown field(s)"),
]


@pytest.mark.parametrize("field, value, words", BAD_CONV, ids=[f"{f}={v!s:.12}" for f, v, _ in BAD_CONV])
def test_every_conv_field_is_checked_on_load(field, value, words):
    graph, data = _encoded()
    rec = next(r for r in data["netlist"]["connections"] if "conv" in r)
    if field == "weight":
        rec["weight"] = value
    else:
        rec["conv"][field] = value
    with pytest.raises(ModelFileError) as info:
        decode(data, graph=graph, dt=DT, precision="float", source="a.art")
    message = str(info.value)
    assert words in message and "connection x->l1" in message and "\n" not in message


def test_a_conv_payload_decodes_to_the_same_netlist():
    graph, data = _encoded("fixed")
    art = compile_graph(graph, backend="lava", precision="fixed")
    net, q = decode(data, graph=graph, dt=DT, precision="fixed", source="a.art")
    for a, b, wa, wb in zip(art.payload.netlist.connections, net.connections, art.payload.quantized.weights,
                            q.weights):
        assert a.conv == b.conv and np.array_equal(a.weight, b.weight) and np.array_equal(wa, wb)


# ---------------------------------------------------------------- Lava


def _inputs(graded: bool) -> np.ndarray:
    rng = np.random.default_rng(4)
    spikes = (rng.random((2, 12, 2, 12, 12)) < 0.3) * 1.0
    return spikes * rng.integers(1, 5, spikes.shape) / 4 if graded else spikes


def _probes(net: Netlist) -> list[tuple[str, str]]:
    return [(p.name, "spikes") for p in net.populations if p.spiking] + [("ro", "v")]


def test_lava_float_convolutions_are_spike_exact_against_the_netlist_model():
    from neuromorph.backends.loihi2.lava.runner import run_lava

    net = lower(small_cnn())
    assert {c.kind for c in net.connections} == {"conv", "dense"}
    assert any(c.conv is not None and c.extra_delay > 0 for c in net.connections)  # the skip
    x = _inputs(graded=True)
    _, _, info = run_lava(net, x, probes=_probes(net))
    want, _ = simulate_netlist(net, x, record_spikes=True)
    for pop in ("l1", "l2", "l3"):
        assert want[f"{pop}.spikes"].sum() > 0
        np.testing.assert_array_equal(info.probes[(pop, "spikes")], want[f"{pop}.spikes"], err_msg=pop)
    np.testing.assert_array_equal(info.probes[("ro", "v")], want["y"])
    ir = simulate(small_cnn(), x, record=["l3"])
    assert np.mean(ir["l3"] == want["l3.spikes"]) >= 0.999


@pytest.mark.parametrize("graded", [False, True])
def test_lava_fixed_convolutions_are_bit_exact_against_the_integer_model(graded):
    from neuromorph.backends.loihi2.lava.runner import run_lava

    net = lower(small_cnn())
    x = _inputs(graded)
    q = quantize(net, {"x": x})
    outputs, counts, info = run_lava(net, x, precision="fixed", quantized=q, probes=_probes(net))
    want, want_counts = simulate_fixed(q, x, record_spikes=True)
    assert counts == want_counts and all(want_counts[p] > 0 for p in ("l1", "l2", "l3"))
    for pop in ("l1", "l2", "l3"):
        np.testing.assert_array_equal(info.probes[(pop, "spikes")], want[f"{pop}.spikes"], err_msg=pop)
    np.testing.assert_array_equal(outputs["y"], want["y"])


def test_lavas_own_conv_ignores_weight_exp():
    """Why the project runs its own ConvSynapse (lava/conv.py): Lava 0.10.0's fixed-point
    Conv sends the same a_out for weight_exp 0 and 3."""
    from neuromorph.backends.loihi2.lava.compat import import_lava

    import_lava()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.conv.process import Conv
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    spikes = np.zeros((4, 4, 1, 3), np.int32)  # (W, H, C, steps)
    spikes[1, 2, 0, :] = 1
    received = []
    for exp in (0, 3):
        src = Source(data=spikes.copy())
        conv = Conv(weight=np.full((1, 3, 3, 1), 5, np.int32), weight_exp=exp, input_shape=(4, 4, 1), padding=1)
        sink = Sink(shape=conv.output_shape, buffer=3)
        src.s_out.connect(conv.s_in)
        conv.a_out.connect(sink.a_in)
        try:
            src.run(condition=RunSteps(num_steps=3), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
            received.append(sink.data.get().copy())
        finally:
            src.stop()
    assert received[0].max() == 5  # the raw weight, one step after the spike
    np.testing.assert_array_equal(received[0], received[1])  # 5 << 3 = 40 never appears


def test_a_sinabs_nmnist_cnn_imports_compiles_small_and_deploys_exactly(tmp_path):
    """Issue 9's whole path through the CLI: the NIR paper's N-MNIST CNN as Sinabs writes it
    (event counts up to 2 per bin), imported with --convention sinabs, compiled to a small
    artifact, float spike-exact against the IR semantics, fixed calibrated on the user's own
    stream (--calibrate) and bit-exact against the integer model."""
    import subprocess

    from nir_graphs import nmnist_events, write_sinabs_nmnist_cnn

    nm_bin = str(Path(sys.executable).parent / "neuromorph")
    run = lambda *a: subprocess.run([nm_bin, *map(str, a)], capture_output=True, text=True, timeout=300)  # noqa: E731
    write_sinabs_nmnist_cnn(tmp_path / "cnn.nir", seed=0)
    events = tmp_path / "events.npy"
    np.save(events, nmnist_events(12, seed=1).astype(np.float32))
    assert np.load(events).max() > 1  # counts, not binary spikes
    model = tmp_path / "cnn.json"
    assert run("import-nir", tmp_path / "cnn.nir", "--convention", "sinabs", "-o", model).returncode == 0
    for precision, extra, reference in (("float", (), "vs IR semantics"),
                                        ("fixed", ("--calibrate", events), "vs bit-exact")):
        art = tmp_path / f"cnn_{precision}.loihi"
        proc = run("compile", model, "--precision", precision, *extra, "-o", art)
        assert proc.returncode == 0, proc.stderr
        assert art.stat().st_size < 8e6  # 305 MB (float) / 610 MB (fixed) when lowered to dense matrices
        proc = run("verify", art, "--input", events, "--quiet")
        assert proc.returncode == 0, proc.stderr + proc.stdout
        assert reference in proc.stdout and "spike agreement 1.000000" in proc.stdout, proc.stdout
    # Without calibration the fixed-point compile assumes binary spikes and the run says so.
    plain = tmp_path / "plain.loihi"
    assert run("compile", model, "--precision", "fixed", "-o", plain).returncode == 0
    proc = run("verify", plain, "--input", events, "--quiet")
    assert proc.returncode == 2 and "compiled for binary spikes" in proc.stderr
