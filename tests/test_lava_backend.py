"""The Lava backend: a netlist deployed in Lava's Loihi 2 CPU simulator (real Lava) does
exactly what the numpy netlist simulator and the IR reference say, in float and in fixed
point, and Lava is always stopped: after errors, interrupts and normal runs alike."""
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from neuromorph.backends.loihi2.lava.compat import import_lava

import_lava()

from lava.proc.dense import models as dense_models  # noqa: E402

from neuromorph.backends.loihi2.lava import process as lava_process  # noqa: E402
from neuromorph.backends.loihi2.lava.runner import run_lava  # noqa: E402
from neuromorph.backends.loihi2.netlist import lower  # noqa: E402
from neuromorph.backends.loihi2.chip_model import simulate_netlist  # noqa: E402
from neuromorph.backends.loihi2.quantize import quantize, simulate_fixed  # noqa: E402
from neuromorph.errors import NeuromorphError  # noqa: E402
from neuromorph.ir import LI, LIF, ALIF, Delay, Graph, Input, Linear, Output  # noqa: E402
from neuromorph.models import ZOO, get  # noqa: E402
from neuromorph.simulate import simulate  # noqa: E402

DT = 1e-3


def no_lava_workers() -> bool:
    return multiprocessing.active_children() == []


def random_inputs(net, samples, steps, seed=0):
    rng = np.random.default_rng(seed)
    return {p.name: (rng.random((samples, steps, *p.shape)) < 0.4) * rng.random((samples, steps, *p.shape)) * 2
            for p in net.inputs}


def spiking(net):
    return [p.name for p in net.populations if p.spiking]


def spike_probes(net):
    return [(name, "spikes") for name in spiking(net)]


def assert_float_matches(graph, x, probes=()):
    """Lava float == simulate_netlist spike for spike, outputs to 1e-9; == IR reference
    per sample. Returns the netlist and Lava's results."""
    net = lower(graph)
    want, want_counts = simulate_netlist(net, x, record_spikes=True)
    got, counts, info = run_lava(net, x, probes=[*spike_probes(net), *probes])
    assert counts == want_counts
    assert sum(counts.values()) > 0, "a test without spikes cannot fail"
    for pop in spiking(net):  # simulate_netlist keeps populations flat: [N, T, size]
        np.testing.assert_array_equal(info.probes[(pop, "spikes")].reshape(want[f"{pop}.spikes"].shape),
                                      want[f"{pop}.spikes"], err_msg=pop)
    for name in graph.outputs:
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-9, err_msg=name)
    for j in range(info.samples):  # every sample as if it ran alone: state is reset between them
        ref = simulate(graph, {k: v[j] for k, v in x.items()})
        for name in graph.outputs:
            np.testing.assert_allclose(got[name][j], ref[name], rtol=0, atol=1e-9, err_msg=f"{name}[{j}]")
    assert no_lava_workers()
    return net, got, info


def assert_fixed_matches(net, x):
    """Lava fixed_pt == the bit-exact numpy model of the same integers (agreement 1.0)."""
    q = quantize(net, x)
    want, want_counts = simulate_fixed(q, x, record_spikes=True)
    got, counts, info = run_lava(net, x, precision="fixed", quantized=q, probes=spike_probes(net))
    assert counts == want_counts and sum(counts.values()) > 0
    for pop in spiking(net):
        np.testing.assert_array_equal(info.probes[(pop, "spikes")], want[f"{pop}.spikes"], err_msg=pop)
    for o in net.outputs:
        np.testing.assert_array_equal(got[o.name], want[o.name], err_msg=o.name)
    assert no_lava_workers()


def skip_graph():
    """Feed-forward with a skip connection: x -> ro bypasses two layers, so its synapse
    needs two steps of extra delay (a DelayDense)."""
    rng = np.random.default_rng(2)
    return Graph({"x": Input((5,)), "w1": Linear(rng.normal(0.5, 0.5, (8, 5))), "h1": LIF(tau=5e-3, r=5.0),
                  "w2": Linear(rng.normal(0.5, 0.5, (8, 8))), "h2": LIF(tau=5e-3, r=5.0),
                  "skip": Linear(rng.normal(0.3, 0.5, (4, 5))), "w3": Linear(rng.normal(0.5, 0.5, (4, 8))),
                  "ro": LI(tau=10e-3, r=10.0), "y": Output()},
                 [("x", "w1"), ("w1", "h1"), ("h1", "w2"), ("w2", "h2"), ("h2", "w3"), ("w3", "ro"),
                  ("x", "skip"), ("skip", "ro"), ("ro", "y")], dt=DT)


def recurrent_graph():
    """An adaptive recurrent layer (loop delay 2) and a delayed path to the readout."""
    rng = np.random.default_rng(4)
    return Graph({"x": Input((3,)), "w": Linear(rng.normal(0.8, 0.3, (6, 3))),
                  "h": ALIF(tau_mem=5e-3, tau_adapt=20e-3, beta=0.5, r=5.0),
                  "rec": Linear(rng.normal(0, 0.8, (6, 6))), "d": Delay(3 * DT),
                  "w2": Linear(rng.normal(0.5, 0.5, (2, 6))), "ro": LI(tau=10e-3, r=10.0), "y": Output()},
                 [("x", "w"), ("w", "h"), ("h", "rec"), ("rec", "h", 2), ("h", "d"), ("d", "w2"),
                  ("w2", "ro"), ("ro", "y")], dt=DT)


# ---------------------------------------------------------------- float: equals the references


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_model_in_lava_float_equals_netlist_simulator_and_ir(name):
    graph = get(name)
    net = lower(graph)
    assert_float_matches(graph, random_inputs(net, samples=3, steps=20))


def test_skip_connection_runs_through_delay_dense_and_matches():
    graph = skip_graph()
    net = lower(graph)
    assert max(c.extra_delay for c in net.connections) == 2
    x = random_inputs(net, samples=2, steps=25, seed=1)
    _, got, info = assert_float_matches(graph, x, probes=[("h1", "v")])
    ref = simulate(graph, x["x"], record=["h1.v"])
    np.testing.assert_allclose(info.probes[("h1", "v")], ref["h1.v"], rtol=0, atol=1e-9)


def test_recurrent_adaptive_graph_matches():
    graph = recurrent_graph()
    net = lower(graph)
    assert any(c.source == c.target for c in net.connections)
    assert_float_matches(graph, random_inputs(net, samples=3, steps=20, seed=2))


# ---------------------------------------------------------------- fixed point: bit exact


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_model_in_lava_fixed_point_equals_numpy_integer_model(name):
    net = lower(get(name))
    assert_fixed_matches(net, random_inputs(net, samples=2, steps=20))


@pytest.mark.parametrize("build", [skip_graph, recurrent_graph])
def test_delayed_and_recurrent_connections_in_fixed_point_are_bit_exact(build):
    net = lower(build())
    assert_fixed_matches(net, random_inputs(net, samples=2, steps=20, seed=3))


# ---------------------------------------------------------------- running in chunks


def test_chunked_run_reports_progress_and_keeps_state():
    net = lower(recurrent_graph())
    x = random_inputs(net, samples=2, steps=20, seed=5)
    whole, whole_counts, _ = run_lava(net, x)
    calls = []
    parts, counts, info = run_lava(net, x, progress=lambda done, total: calls.append((done, total)), chunk=7)
    assert calls[-1] == (info.chip_steps, info.chip_steps) and len(calls) == -(-info.chip_steps // 7)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert counts == whole_counts
    np.testing.assert_array_equal(parts["y"], whole["y"])
    assert info.steps_per_second > 0 and no_lava_workers()


# ---------------------------------------------------------------- errors and clean-up


def test_bad_inputs_are_one_line_errors():
    net = lower(get("randman-mlp"))
    with pytest.raises(NeuromorphError, match=r"input 'input' has shape \[2, 10, 21\], expected \[batch, T, 20\]"):
        run_lava(net, np.zeros((2, 10, 21)))
    x = np.zeros((1, 5, 20))
    x[0, 2, 3] = np.nan
    with pytest.raises(NeuromorphError, match="contains NaN or inf"):
        run_lava(net, x)
    with pytest.raises(NeuromorphError, match="needs the quantized netlist"):
        run_lava(net, np.zeros((1, 5, 20)), precision="fixed")
    with pytest.raises(NeuromorphError, match="unknown precision"):
        run_lava(net, np.zeros((1, 5, 20)), precision="double")
    with pytest.raises(NeuromorphError, match="unknown probe"):
        run_lava(net, np.zeros((1, 5, 20)), probes=[("nope", "spikes")])
    calibration = np.random.default_rng(0).random((1, 5, 20))
    q = quantize(net, calibration)
    with pytest.raises(NeuromorphError, match="exceeds the calibrated range"):
        run_lava(net, calibration * 100, precision="fixed", quantized=q)
    assert no_lava_workers()


def test_fixed_point_delay_beyond_loihi_is_refused_before_running():
    rng = np.random.default_rng(0)
    g = Graph({"x": Input((3,)), "w": Linear(rng.random((4, 3))), "h": LIF(tau=5e-3, r=5.0),
               "d": Delay(70 * DT), "w2": Linear(rng.random((2, 4))), "ro": LI(tau=10e-3), "y": Output()},
              [("x", "w"), ("w", "h"), ("h", "d"), ("d", "w2"), ("w2", "ro"), ("ro", "y")], dt=DT)
    net = lower(g)
    delay = max(c.extra_delay for c in net.connections)
    assert delay > 63
    x = np.ones((1, 3, 3))
    with pytest.raises(NeuromorphError, match=f"h->ro needs a synaptic delay of {delay} chip steps; "
                                              "Loihi 2 delays are at most 63"):
        run_lava(net, x, precision="fixed", quantized=quantize(net, x))


def test_error_inside_a_neuron_model_stops_lava_and_names_the_population(monkeypatch):
    def broken(*args, **kwargs):
        raise FloatingPointError("overflow")

    # Lava forks its workers, which inherit the patched model.
    monkeypatch.setattr(lava_process.PyNeuronGroupFloat, "step", staticmethod(broken))
    net = lower(get("randman-mlp"))
    with pytest.raises(NeuromorphError, match=r"^Lava run failed: RuntimeError: population 'lif1', "
                                              r"chip step 1: FloatingPointError: overflow$"):
        run_lava(net, np.ones((1, 5, 20)))
    assert no_lava_workers()


def test_lava_process_that_dies_without_sending_does_not_hang(monkeypatch):
    # Lava 0.10.0 itself waits forever here: the neurons downstream never get a message.
    def broken(self):
        raise ValueError("synapse failure")

    monkeypatch.setattr(dense_models.PyDenseModelFloat, "run_spk", broken)
    net = lower(get("randman-mlp"))
    start = time.monotonic()
    with pytest.raises(NeuromorphError, match="^Lava run failed: ValueError: synapse failure$"):
        run_lava(net, np.ones((1, 5, 20)))
    assert time.monotonic() - start < 30
    assert no_lava_workers()


@pytest.mark.parametrize("error", [KeyboardInterrupt, ValueError])
def test_exception_from_the_progress_callback_stops_lava_and_passes_through(error):
    net = lower(get("randman-mlp"))

    def callback(done, total):
        raise error("stop here")

    with pytest.raises(error, match="stop here"):
        run_lava(net, np.ones((1, 30, 20)), progress=callback, chunk=5)
    assert no_lava_workers()


CTRL_C_RUNS = {  # long enough to be interrupted, in each run plan
    "one-at-a-time": "np.ones((400, 100, 20)), chunk=500",
    "lanes-async": "np.ones((256, 3000, 20)), plan=Plan(64, asynchronous=True), chunk=200",
}


@pytest.mark.parametrize("plan", list(CTRL_C_RUNS))
def test_ctrl_c_during_a_run_leaves_no_lava_processes(plan):
    script = textwrap.dedent("""
        import multiprocessing, signal, numpy as np
        signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
        from neuromorph.backends.loihi2.netlist import lower
        from neuromorph.models import get
        from neuromorph.backends.loihi2.lava.runner import Plan, run_lava
        net = lower(get("randman-mlp"))
        try:
            run_lava(net, RUN, progress=lambda d, t: print("running", flush=True))
        except KeyboardInterrupt:
            print("interrupted", len(multiprocessing.active_children()), flush=True)
    """).replace("RUN", CTRL_C_RUNS[plan])
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "running"
        time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: to the whole process group
        out, err = proc.communicate(timeout=30)
        assert "interrupted 0" in out, err
        assert proc.returncode == 0, err
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # nothing of the group outlives it
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            pytest.fail("processes of the interrupted run are still alive")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
