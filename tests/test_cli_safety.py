"""The CLI refuses what would fail late, block, or exhaust memory: one line on stderr
(``neuromorph: error: ...``), exit code 2, no traceback, and no output file written or
replaced. Most checks call ``neuromorph.cli.main`` in-process (fast); the ones about
the command as a user runs it start the installed entry point."""
import errno
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import neuromorph as nm
from neuromorph import cli
from neuromorph.errors import NeuromorphError
from neuromorph.ir import (
    LI, LIF, Affine, Conv2d, Flatten, Graph, Input, Linear, Output, Scale,
)
from neuromorph.models import ZOO

NEUROMORPH = str(Path(sys.executable).parent / "neuromorph")


def run_cli(*args, timeout=120):
    start = time.perf_counter()
    proc = subprocess.run([NEUROMORPH, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)
    proc.seconds = time.perf_counter() - start
    return proc


def assert_one_line_error(rc, stderr, *fragments):
    assert rc == 2, stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("neuromorph: error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def main_error(capsys, *argv):
    """Run the CLI in-process; it must refuse with one line."""
    rc = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    return assert_one_line_error(rc, err)


class WorkStarted(AssertionError):
    pass


@pytest.fixture
def no_work(monkeypatch):
    """Loading a model, a deployment, a zoo model or a NIR file fails the test: a
    refusal must come before the work."""
    def started(*args, **kwargs):
        raise WorkStarted("the command started its work before checking its outputs")

    monkeypatch.setattr("neuromorph.cli.load_model", started)
    monkeypatch.setattr("neuromorph.run.load_deployment", started)
    monkeypatch.setattr("neuromorph.models.get", started)
    monkeypatch.setattr("neuromorph.backends.nir.read_nir", started)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    model = nm.save(ZOO["digits-mlp"].build(0), d / "m.json")
    np.save(d / "x.npy", (np.random.default_rng(0).random((8, 64)) < 0.3).astype(np.float64))
    from neuromorph.backends.nir import write_nir

    write_nir(ZOO["digits-mlp"].build(0), d / "m.nir")
    return {"model": model, "x": d / "x.npy", "nir": d / "m.nir", "dir": d}


# ------------------------------------------------------------------ 1, 2: outputs checked first


def _unwritable_folder() -> str | None:
    """A folder this process cannot create files in (a read-only one for a normal user;
    /sys, where not even root can)."""
    if os.geteuid() != 0:
        d = tempfile.mkdtemp()
        os.chmod(d, 0o555)
        return d
    try:
        fd, name = tempfile.mkstemp(dir="/sys")
    except OSError:
        return "/sys"
    os.close(fd)
    os.unlink(name)
    return None


BAD_OUTPUTS = ["directory", "missing-folder", "proc", "read-only-folder", "long-name",
               "long-path", "device"]


def bad_output(kind, tmp_path):
    if kind == "directory":
        (tmp_path / "adir").mkdir()
        return str(tmp_path / "adir")
    if kind == "missing-folder":
        return str(tmp_path / "no" / "such" / "out.bin")
    if kind == "proc":
        if not os.path.isdir("/proc"):
            pytest.skip("no /proc")
        return "/proc/x.loihi"
    if kind == "read-only-folder":
        folder = _unwritable_folder()
        if folder is None:
            pytest.skip("no folder here refuses writes")
        return os.path.join(folder, "out.bin")
    if kind == "long-name":
        return str(tmp_path / ("a" * 300))
    if kind == "long-path":
        return "a/" * 2500 + "x"
    if kind == "device":
        return os.devnull
    raise AssertionError(kind)


def commands(files, bad, good):
    """Every command that writes a file, with ``bad`` as one of its outputs."""
    m, x, nir = files["model"], files["x"], files["nir"]
    return {
        "compile": ["compile", m, "-o", bad],
        "run --output": ["run", m, "--input", x, "--output", bad],
        "run --raster": ["run", m, "--task", "digits", "--limit", "2", "--raster", bad],
        "run --input --raster": ["run", m, "--input", x, "--output", good, "--raster", bad],
        "train -o": ["train", "--task", "digits", "--epochs", "1", "--quiet", "-o", bad],
        "train --plot": ["train", "--task", "digits", "--epochs", "1", "--quiet", "-o", good,
                         "--plot", bad],
        "models -o": ["models", "digits-mlp", "-o", bad],
        "import-nir": ["import-nir", nir, "-o", bad],
        "export-nir": ["export-nir", m, "-o", bad],
    }


@pytest.mark.parametrize("kind", BAD_OUTPUTS)
def test_every_output_is_checked_before_the_work(kind, files, tmp_path, capsys, no_work):
    bad = bad_output(kind, tmp_path)
    good = tmp_path / "keep.out"
    good.write_bytes(b"old content")
    before = sorted(p.name for p in tmp_path.iterdir())
    for name, argv in commands(files, bad, good).items():
        line = main_error(capsys, *argv)  # WorkStarted would be raised before this returns
        assert "-o" in line or "--" in line, (name, line)
        assert good.read_bytes() == b"old content", name
        assert sorted(p.name for p in tmp_path.iterdir()) == before, name
    assert os.path.exists(os.devnull) and not os.path.isfile(os.devnull)


def test_a_long_output_path_is_one_short_line(files, capsys):
    line = main_error(capsys, "compile", files["model"], "-o", "a/" * 2500 + "x")
    assert "too long" in line and len(line) < 400


def test_failed_train_keeps_its_output_and_does_not_train(tmp_path):
    keep = tmp_path / "keep.json"
    keep.write_text("keep")
    proc = run_cli("train", "--task", "digits", "--epochs", "1", "-o", keep,
                   "--plot", "/missing/p.png")
    assert_one_line_error(proc.returncode, proc.stderr, "--plot /missing/p.png",
                          "folder /missing does not exist")
    assert "epoch" not in proc.stderr
    assert keep.read_text() == "keep"


def test_two_outputs_naming_one_file_are_refused(tmp_path, capsys, no_work):
    out = tmp_path / "same.json"
    line = main_error(capsys, "train", "--task", "digits", "-o", out, "--plot", out)
    assert "-o and --plot name the same file" in line and not out.exists()


def test_raster_of_a_model_without_spikes_is_refused_before_the_run(tmp_path, capsys):
    g = Graph({"input": Input((4,)), "w": Affine(np.ones((2, 4)), np.zeros(2)),
               "li": LI(tau=0.02, r=20.0), "output": Output()},
              [("input", "w"), ("w", "li"), ("li", "output")], dt=1e-3)
    model = nm.save(g, tmp_path / "li.json")
    np.save(tmp_path / "x.npy", np.ones((5, 4)))
    out = tmp_path / "y.npz"
    line = main_error(capsys, "run", model, "--input", tmp_path / "x.npy", "--output", out,
                      "--raster", tmp_path / "r.png")
    assert "no spiking population" in line
    assert not out.exists() and not (tmp_path / "r.png").exists()


@pytest.mark.parametrize("argv", [["models", "digits-mlp"], ["compile", "digits-mlp"]])
def test_a_write_that_fails_after_the_work_is_one_line_and_keeps_the_old_file(argv, tmp_path, capsys, monkeypatch):
    """A full disk cannot be checked beforehand: the atomic write fails with one line,
    the old file stays, no temporary file is left."""
    out = tmp_path / "out.json"
    out.write_text("old")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("neuromorph.documents.os.fsync", full)
    line = main_error(capsys, *argv, "-o", out)
    assert "No space left on device" in line
    assert out.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


# ------------------------------------------------------------------ 3: sizes estimated first


def test_a_huge_input_is_refused_with_an_estimate_not_allocated(tmp_path):
    g = Graph({"input": Input((10**9,)), "lif": LIF(tau=0.01), "output": Output()},
              [("input", "lif"), ("lif", "output")], dt=1e-3)
    model = nm.save(g, tmp_path / "big.json")
    out = tmp_path / "big.art"
    proc = run_cli("compile", model, "-o", out, timeout=60)
    from neuromorph.streams import MEMORY_BOUND

    assert_one_line_error(proc.returncode, proc.stderr, "node 'lif'", "bytes",
                          f"the bound of", f"({MEMORY_BOUND} bytes")
    assert not out.exists()
    assert proc.seconds < 30


@pytest.mark.parametrize("case", ["flatten", "identity", "conv"])
def test_lowering_estimates_dense_matrices_before_building_them(case):
    from neuromorph.backends.loihi2.netlist import lower
    from neuromorph.streams import MEMORY_BOUND

    if case == "flatten":  # np.eye(90000): 65 GB
        nodes = {"input": Input((1, 300, 300)), "flat": Flatten(),
                 "fc": Affine(np.zeros((10, 90_000)), np.zeros(10)), "lif": LIF(tau=0.01),
                 "output": Output()}
        edges = [("input", "flat"), ("flat", "fc"), ("fc", "lif"), ("lif", "output")]
        culprit = "flat"
    elif case == "identity":  # input -> population, one to one: np.eye(200000)
        nodes = {"input": Input((200_000,)), "lif": LIF(tau=0.01), "output": Output()}
        edges, culprit = [("input", "lif"), ("lif", "output")], "lif"
    else:  # a convolution stays a kernel, but a per-element Scale after it forces a 40000 x 40000 matrix
        nodes = {"input": Input((1, 200, 200)),
                 "conv": Conv2d(np.ones((1, 1, 3, 3)), np.zeros(1), padding=1),
                 "scale": Scale(np.linspace(0.5, 1, 40_000).reshape(1, 200, 200)),
                 "lif": LIF(tau=0.01), "output": Output()}
        edges = [("input", "conv"), ("conv", "scale"), ("scale", "lif"), ("lif", "output")]
        culprit = "scale"
    graph = Graph(nodes, edges, dt=1e-3)
    start = time.perf_counter()
    with pytest.raises(NeuromorphError) as info:
        lower(graph)
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert message.startswith(f"node '{culprit}': ") and f"({MEMORY_BOUND} bytes" in message
    assert "\n" not in message


def test_an_npy_header_declaring_a_huge_array_is_refused_unread(tmp_path, capsys):
    path = tmp_path / "huge.npy"
    with open(path, "wb") as f:  # the header only: np.load would try to allocate 5 PB
        np.lib.format.write_array_header_2_0(f, {"descr": "<f8", "fortran_order": False,
                                                 "shape": (10**13, 64)})
    out = tmp_path / "y.npz"
    line = main_error(capsys, "run", "digits-mlp", "--input", path, "--output", out)
    assert "[10000000000000, 64]" in line and "bytes" in line and "bound" in line
    assert not out.exists()


def test_huge_steps_are_refused_with_an_estimate(tmp_path, capsys):
    line = main_error(capsys, "run", "digits-mlp", "--task", "digits", "--steps", "100000000")
    assert "100000000 steps" in line and "bytes" in line and "bound" in line
    art = tmp_path / "t.art"
    assert cli.main(["compile", "digits-mlp", "--backend", "torch", "-o", str(art)]) == 0
    capsys.readouterr()
    line = main_error(capsys, "verify", art, "--steps", "100000000")
    assert "100000000 steps" in line and "bytes" in line


def test_a_run_whose_recordings_would_not_fit_is_refused():
    from neuromorph.run import check_run_memory
    from neuromorph.streams import MEMORY_BOUND

    graph = ZOO["digits-mlp"].build(0)
    check_run_memory(graph, 360, 16)  # the task: fine
    with pytest.raises(NeuromorphError, match=f"node '.*'.*\\({MEMORY_BOUND} bytes"):
        check_run_memory(graph, 10**4, 10**6)


# ------------------------------------------------------------------ 4: long graphs


def _chain(n: int) -> Graph:
    rng = np.random.default_rng(0)
    nodes = {"input": Input((8,))}
    for i in range(n):
        nodes[f"s{i}"] = (Scale(1.0 + 1e-3 * i) if i % 2 else
                          Linear(rng.normal(size=(8, 8)) * 0.35))
    nodes["li"] = LI(tau=0.02, r=20.0)
    nodes["output"] = Output()
    names = list(nodes)
    return Graph(nodes, list(zip(names, names[1:])), dt=1e-3)


def test_a_chain_of_2000_linear_nodes_lowers_to_the_composed_matrix():
    from neuromorph.backends.loihi2.netlist import lower

    graph = _chain(2000)
    start = time.perf_counter()
    net = lower(graph)  # was: RecursionError from about 500 nodes
    assert time.perf_counter() - start < 20
    (conn,) = net.connections
    # The composition in the order the lowering defines it: each node's matrix times the
    # map into it (m_k @ (m_{k-1} @ ...)), then the population's gain.
    m = None
    for i in range(2000):
        node = graph.nodes[f"s{i}"]
        own = np.diag(np.broadcast_to(node.scale, (8,)).reshape(-1)) if isinstance(node, Scale) \
            else node.weight.copy()
        m = own if m is None else own @ m
    from neuromorph.discretize import discretize_graph

    gain = np.broadcast_to(np.asarray(discretize_graph(graph, 1e-3)["li"].gain, float), (8,))
    assert np.array_equal(conn.weight, gain[:, None] * m)


def test_a_long_chain_compiles_through_the_cli(tmp_path):
    model = nm.save(_chain(600), tmp_path / "chain.json")
    proc = run_cli("compile", model, "-o", tmp_path / "chain.art", "--json")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "chain.art").exists()


def test_a_loop_of_linear_nodes_alone_is_one_line_not_a_recursion_error():
    from neuromorph.backends.loihi2.netlist import lower

    graph = Graph({"input": Input((3,)), "a": Affine(np.eye(3), np.zeros(3)),
                   "b": Linear(0.5 * np.eye(3)), "lif": LIF(tau=0.01, r=10.0), "output": Output()},
                  [("input", "a"), ("a", "b"), ("b", "a", 1), ("a", "lif"), ("lif", "output")],
                  dt=1e-3)
    with pytest.raises(NeuromorphError, match="loop through linear nodes"):
        lower(graph)


# ------------------------------------------------------------------ 5: the smaller ones


def test_an_npz_input_asks_for_an_npy(tmp_path, capsys):
    np.savez(tmp_path / "x.npz", x=np.ones((16, 64)))
    line = main_error(capsys, "run", "digits-mlp", "--input", tmp_path / "x.npz",
                      "--output", tmp_path / "y.npz")
    assert ".npy" in line and not (tmp_path / "y.npz").exists()


@pytest.mark.parametrize("shape, what", [((0, 64), "no time steps"), ((0, 16, 64), "no samples"),
                                         ((3, 0, 64), "no time steps")])
def test_empty_inputs_are_refused_on_every_path(shape, what, tmp_path, capsys):
    from neuromorph.streams import check_streams

    np.save(tmp_path / "x.npy", np.zeros(shape))
    for backend in ("torch", "lava"):
        out = tmp_path / f"y-{backend}.npz"
        line = main_error(capsys, "run", "digits-mlp", "--backend", backend,
                          "--input", tmp_path / "x.npy", "--output", out)
        assert what in line and not out.exists()
    with pytest.raises(NeuromorphError, match=what):
        check_streams({"input": (64,)}, np.zeros(shape), batch_axis="optional")


@pytest.mark.parametrize("argv, fragment", [
    (["--limit", "-358"], "--limit must be >= 1, got -358"),
    (["--limit", "-1"], "--limit must be >= 1, got -1"),
    (["--limit", "0"], "--limit must be >= 1, got 0"),
    (["--steps", "-5"], "--steps must be >= 1, got -5"),
    (["--steps", "0"], "--steps must be >= 1, got 0"),
])
def test_counts_are_checked_in_one_place(argv, fragment, tmp_path, capsys, no_work):
    art = tmp_path / "a.art"
    art.write_text("not read: the counts are checked first")
    assert fragment in main_error(capsys, "verify", art, *argv)
    assert fragment in main_error(capsys, "run", "digits-mlp", "--task", "digits", *argv)
    if "--steps" in argv:
        assert fragment in main_error(capsys, "train", "--task", "digits", "-o",
                                      tmp_path / "m.json", *argv)


def test_a_5000_character_model_path_is_one_line(tmp_path, capsys):
    path = "a/" * 2500 + "x"
    for argv in (["inspect", path], ["run", path, "--task", "digits"], ["verify", path],
                 ["export-nir", path, "-o", tmp_path / "x.nir"]):
        line = main_error(capsys, *argv)
        assert len(line) < 400


def test_complex_input_is_refused(tmp_path, capsys):
    from neuromorph.streams import check_streams

    np.save(tmp_path / "c.npy", np.ones((16, 64)) * (1 + 2j))
    line = main_error(capsys, "run", "digits-mlp", "--input", tmp_path / "c.npy",
                      "--output", tmp_path / "y.npz")
    assert "complex" in line and not (tmp_path / "y.npz").exists()
    with pytest.raises(NeuromorphError, match="complex"):
        check_streams({"input": (64,)}, np.ones((1, 16, 64), dtype=np.complex64))


def test_dt_for_an_artifact_is_refused_through_the_cli(tmp_path):
    from neuromorph.compile import compile_graph, save_artifact

    art = save_artifact(compile_graph(ZOO["digits-mlp"].build(0), backend="torch"), tmp_path / "t.art")
    proc = run_cli("run", art, "--dt", "0.5", "--task", "digits", "--limit", "2")
    assert_one_line_error(proc.returncode, proc.stderr, "--dt applies to model files")


@pytest.fixture
def fifo(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    path = tmp_path / "pipe"
    os.mkfifo(path)
    yield path
    # Should anything have opened it for reading, a writer releases it.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    except OSError:
        pass


def _within(seconds, func):
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("rc", func()), daemon=True)
    start = time.perf_counter()
    thread.start()
    thread.join(seconds)
    return not thread.is_alive(), time.perf_counter() - start, result.get("rc")


def test_inspect_of_a_fifo_returns_within_a_second_with_one_line(fifo, capsys):
    done, seconds, rc = _within(1.0, lambda: cli.main(["inspect", str(fifo)]))
    assert done, "neuromorph inspect blocked on a FIFO"
    assert_one_line_error(rc, capsys.readouterr().err, "FIFO")
    proc = run_cli("inspect", fifo, timeout=20)
    assert_one_line_error(proc.returncode, proc.stderr, "FIFO")


@pytest.mark.parametrize("what", ["run model", "verify", "run --input", "import-nir", "compile"])
def test_no_command_opens_a_fifo_or_a_device(what, fifo, tmp_path, capsys):
    argv = {
        "run model": ["run", fifo, "--task", "digits"],
        "verify": ["verify", fifo],
        "run --input": ["run", "digits-mlp", "--input", fifo, "--output", tmp_path / "y.npz"],
        "import-nir": ["import-nir", fifo, "-o", tmp_path / "m.json"],
        "compile": ["compile", os.devnull, "-o", tmp_path / "a.art"],
    }[what]
    done, _, rc = _within(10.0, lambda: cli.main([str(a) for a in argv]))
    assert done, f"{what} blocked"
    assert_one_line_error(rc, capsys.readouterr().err, "not a regular file")
    assert list(tmp_path.iterdir()) == [fifo]
