"""Nothing of a Lava run outlives the ``neuromorph run`` process that started it, however it
ends (backends/loihi2/lava/lifecycle.py): SIGTERM / SIGHUP (stopped cleanly, one line,
exit 128 + signum), SIGKILL (the workers die with it, the guardian removes the rest), to
the process or to its whole process group; a frozen worker ends the run after the stall
timeout, and Ctrl-C still ends it while it hangs. Delays Lava cannot hold are refused
before any Lava process exists. (The last tests run ``run_lava`` in this process.)

These are real runs in subprocesses. Only this test's own processes are ever signalled:
the run's processes are found by their parent chain while it is alive (other Lava runs may
be going on on the same machine), its shared-memory segments and temp folder by what the
run's processes have mapped.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("lava") is None:
    pytest.skip("needs lava-nc, which is not installed (run `make setup`)", allow_module_level=True)

GONE_WITHIN_S = 10.0  # everything of the run must be gone this long after the signal
STARTUP_S = 120.0  # until the run reports its first chunk of Lava steps (a loaded machine)


# ---------------------------------------------------------------- processes, by /proc


def _stat(pid: int) -> "tuple[int, str, str] | None":
    """(ppid, state, start time) of a process, None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[0].decode(), fields[19].decode()


def _cpu(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError):
        return -1


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(root: int) -> dict[int, str]:
    """{pid: start time} of every live process whose parent chain leads to ``root``."""
    parents: dict[int, int] = {}
    starts: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None and st[1] != "Z":
                parents[int(entry)], starts[int(entry)] = st[0], st[2]
    found = {}
    for pid in parents:
        p, seen = pid, 0
        while p in parents and p != root and seen < 64:
            p, seen = parents[p], seen + 1
        if p == root and pid != root:
            found[pid] = starts[pid]
    return found


def alive(procs: dict[int, str]) -> list[int]:
    """Those of ``procs`` still running (the same process: same start time; a zombie has
    ended, whoever reaps it)."""
    out = []
    for pid, start in procs.items():
        st = _stat(pid)
        if st is not None and st[2] == start and st[1] != "Z":
            out.append(pid)
    return out


def mapped(pid: int, marker: str) -> set[str]:
    """Paths containing ``marker`` that process ``pid`` has mapped."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            return {line.split(None, 5)[5].strip() for line in f
                    if marker in line and len(line.split(None, 5)) == 6}
    except OSError:
        return set()


# ---------------------------------------------------------------- a run in a subprocess


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lifecycle") / "digits.loihi"
    done = subprocess.run([sys.executable, "-m", "neuromorph", "compile", "digits-mlp", "--precision", "fixed",
                           "--task", "digits", "-o", str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"cannot compile the test artifact: {done.stderr[-2000:]}"
    return path


def _default_signals() -> None:
    """As a user's shell starts a command: SIGINT and SIGHUP at their defaults. A test runner
    started in the background (`cmd &` ignores SIGINT) or under nohup (ignores SIGHUP)
    would otherwise hand the ignored signals down, and the run could not see them."""
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


class Run:
    """``neuromorph run`` on the digits training split (long enough to be interrupted),
    in its own session, its output read through pipes."""

    def __init__(self, artifact: Path, env: "dict[str, str] | None" = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "neuromorph", "run", str(artifact), "--task", "digits", "--split", "train",
             "--lanes", "1"],  # one sample at a time: long enough to interrupt
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            env={**os.environ, **(env or {})}, preexec_fn=_default_signals)
        self.lines: "queue.Queue[tuple[str, bytes | None]]" = queue.Queue()
        self.out: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self.eof: dict[str, float] = {}
        self.readers = [threading.Thread(target=self._read, args=(name, stream), daemon=True)
                        for name, stream in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr))]
        for t in self.readers:
            t.start()
        self.procs: dict[int, str] = {}  # the run's processes, recorded while it is alive
        self.segments: set[str] = set()
        self.folders: set[str] = set()

    def _read(self, name: str, stream) -> None:
        for line in iter(stream.readline, b""):
            self.out[name].append(line.decode(errors="replace"))
            self.lines.put((name, line))
        self.eof[name] = time.monotonic()

    def wait_running(self) -> None:
        """Until Lava has run its first chunk of steps (a progress line on stderr), then
        records what belongs to the run."""
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            try:
                name, line = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.proc.poll() is None, f"the run ended early: {self.text()}"
                continue
            if name == "stderr" and line.startswith(b"lava:"):
                self.record()
                return
        pytest.fail(f"the run did not start within {STARTUP_S} s: {self.text()}")

    def record(self) -> None:
        self.procs.update(descendants(self.proc.pid))
        for pid in [self.proc.pid, *self.procs]:
            self.segments |= {os.path.basename(p) for p in mapped(pid, "/dev/shm/psm_")}
            self.folders |= {os.path.dirname(p) for p in mapped(pid, "/neuromorph-lava-")}

    def workers(self) -> list[int]:
        """The run's forked Lava processes (they share the parent's command line),
        busiest first (Lava's shared-memory server is idle)."""
        own = _cmdline(self.proc.pid)
        pids = [p for p in alive(self.procs) if _cmdline(p) == own]
        before = {p: _cpu(p) for p in pids}
        time.sleep(0.5)
        return sorted(pids, key=lambda p: before[p] - _cpu(p))

    def leftovers(self) -> list[str]:
        left = [f"process {p}: {_cmdline(p)[:120]}" for p in alive(self.procs)]
        left += [f"segment /dev/shm/{s}" for s in sorted(self.segments) if os.path.exists(f"/dev/shm/{s}")]
        left += [f"folder {d}" for d in sorted(self.folders) if os.path.exists(d)]
        return left

    def wait_gone(self, since: float, pipes: bool = True) -> float:
        """Seconds from ``since`` until the run, its processes, segments, temp folder
        and (``pipes``) its output pipes are all gone; fails after GONE_WITHIN_S."""
        while True:
            if (self.proc.poll() is not None and not self.leftovers()
                    and (not pipes or len(self.eof) == 2)):
                return time.monotonic() - since
            if time.monotonic() - since > GONE_WITHIN_S:
                pytest.fail(f"{GONE_WITHIN_S} s after the signal: exit {self.proc.poll()}, "
                            f"pipes at EOF: {sorted(self.eof)}, left: {self.leftovers()}; {self.text()}")
            time.sleep(0.02)

    def text(self) -> str:
        return f"stderr: {''.join(self.out['stderr'])[-2000:]!r}"

    def last_line(self) -> str:
        lines = [line for line in self.out["stderr"] if not line.startswith("lava:")]
        return lines[-1].rstrip("\n") if lines else ""

    def cleanup(self) -> None:
        """Whatever the test did: nothing of this run (only of this run) stays. The run's
        guardian is spared at first: once the others are dead it removes the segments and
        the temp folder."""
        if self.proc.poll() is None:
            self.procs.update(descendants(self.proc.pid))
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: only the run
            except ProcessLookupError:
                pass
        guardians = {p for p in self.procs if "_posixshmem" in _cmdline(p)}
        for pid in alive(self.procs):
            if pid not in guardians:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 5
        while alive({p: self.procs[p] for p in guardians}) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in alive(self.procs):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()


@pytest.fixture
def run_digits(artifact):
    runs: list[Run] = []

    def start(env: "dict[str, str] | None" = None) -> Run:
        run = Run(artifact, env)
        runs.append(run)
        run.wait_running()
        assert len(run.procs) >= 7 and run.segments and run.folders, \
            f"the run is not what this test expects: {run.procs}, {run.segments}, {run.folders}"
        return run

    yield start
    for run in runs:
        run.cleanup()


def _report(what: str, seconds: float) -> None:
    print(f"\n{what}: everything gone after {seconds:.2f} s")


# ---------------------------------------------------------------- catchable signals


@pytest.mark.slow
@pytest.mark.lava
@pytest.mark.parametrize("sig, group", [(signal.SIGTERM, False), (signal.SIGHUP, False), (signal.SIGTERM, True)],
                         ids=["term", "hup", "term-to-group"])
def test_term_or_hup_stops_lava_cleanly_with_one_line_and_128_plus_signum(run_digits, sig, group):
    run = run_digits()
    since = time.monotonic()
    (os.killpg if group else os.kill)(run.proc.pid, sig)
    seconds = run.wait_gone(since)
    _report(f"{sig.name}{' to the group' if group else ''}", seconds)
    assert run.proc.returncode == 128 + sig, run.text()
    assert run.last_line() == f"neuromorph: interrupted ({sig.name})", run.text()
    assert "Traceback" not in run.text() and "resource_tracker" not in run.text(), run.text()


# ---------------------------------------------------------------- SIGKILL


@pytest.mark.slow
@pytest.mark.lava
@pytest.mark.parametrize("group", [False, True], ids=["parent", "group"])
def test_sigkill_leaves_nothing_and_the_output_pipes_reach_eof(run_digits, group):
    run = run_digits()
    since = time.monotonic()
    (os.killpg if group else os.kill)(run.proc.pid, signal.SIGKILL)
    seconds = run.wait_gone(since)
    _report(f"SIGKILL{' to the group' if group else ''}", seconds)
    assert run.proc.returncode == -signal.SIGKILL
    eof = max(run.eof.values()) - since
    assert eof < 5, f"the output pipes reached EOF only {eof:.1f} s after the kill"


# ---------------------------------------------------------------- a frozen worker


@pytest.mark.slow
@pytest.mark.lava
def test_a_stopped_worker_ends_the_run_after_the_stall_timeout(run_digits):
    run = run_digits({"NEUROMORPH_LAVA_STALL_S": "3"})
    worker = run.workers()[0]
    since = time.monotonic()
    os.kill(worker, signal.SIGSTOP)
    seconds = run.wait_gone(since)
    _report("stopped worker, 3 s stall timeout", seconds)
    assert run.proc.returncode == 2, run.text()
    assert run.last_line().startswith("neuromorph: error: Lava run stalled: no chip step finished in 3 s"), run.text()
    assert "NEUROMORPH_LAVA_STALL_S" in run.last_line()
    assert sum(not line.startswith("lava:") for line in run.out["stderr"]) == 1, run.text()
    assert 3 <= seconds < 3 + GONE_WITHIN_S - 2


@pytest.mark.slow
@pytest.mark.lava
def test_ctrl_c_ends_a_run_whose_worker_is_stopped(run_digits):
    run = run_digits({"NEUROMORPH_LAVA_STALL_S": "600"})
    os.kill(run.workers()[0], signal.SIGSTOP)
    time.sleep(1)
    since = time.monotonic()
    os.killpg(run.proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C
    seconds = run.wait_gone(since)
    _report("Ctrl-C with a stopped worker", seconds)
    assert seconds < 5
    assert run.proc.returncode == 130, run.text()
    assert run.last_line() == "neuromorph: interrupted", run.text()


# ---------------------------------------------------------------- delays Lava cannot hold


@pytest.mark.lava
@pytest.mark.parametrize("precision, message", [
    ("fixed", r"^connection lif1->readout needs a synaptic delay of 10000000 chip steps; "
              r"Loihi 2 delays are at most 63$"),
    ("float", r"^connection lif1->readout needs a synaptic delay of 10000000 chip steps; Lava's DelayDense "
              r"would build a 191 GiB matrix every step \(this connection allows delays up to 52427\)$"),
])
def test_a_huge_delay_is_refused_before_any_lava_process_exists(monkeypatch, precision, message):
    from neuromorph.backends.loihi2.lava import runner
    from neuromorph.backends.loihi2.netlist import lower
    from neuromorph.errors import NeuromorphError
    from neuromorph.models import get

    net = lower(get("digits-mlp"))
    x = np.random.default_rng(0).random((2, 4, *net.inputs[0].shape))
    last = net.connections[-1]
    net.connections[-1] = dataclasses.replace(last, extra_delay=10_000_000)  # as in a tampered artifact
    # The refusal comes before the integers are used: a stand-in for the quantized netlist.
    q = (types.SimpleNamespace(weights=[None] * len(net.connections), populations={p.name: None for p in net.populations})
         if precision == "fixed" else None)

    def no_lava(*args, **kwargs):
        raise AssertionError("a Lava process was built")

    for name in ("NeuronGroup", "RingBuffer", "Dense", "DelayDense"):
        monkeypatch.setattr(runner, name, no_lava)
    monkeypatch.setattr(runner.lifecycle, "RunGuard", no_lava)
    with pytest.raises(NeuromorphError, match=message):
        runner.run_lava(net, x, precision=precision, quantized=q)


@pytest.mark.lava
def test_a_stuck_neuron_model_ends_the_run_after_stall_timeout_seconds(monkeypatch):
    import multiprocessing

    from neuromorph.backends.loihi2.lava import process as lava_process
    from neuromorph.backends.loihi2.lava.runner import run_lava
    from neuromorph.backends.loihi2.netlist import lower
    from neuromorph.errors import NeuromorphError
    from neuromorph.models import get

    run_spk = lava_process._NeuronGroupModel.run_spk

    def stuck(self):  # Lava forks its workers, which inherit the patched model
        if self.population == "lif1" and self.time_step == 5:
            time.sleep(3600)
        run_spk(self)

    monkeypatch.setattr(lava_process._NeuronGroupModel, "run_spk", stuck)
    start = time.monotonic()
    with pytest.raises(NeuromorphError, match=r"^Lava run stalled: no chip step finished in 1.5 s "
                                              r"\(at chip step 4 of \d+\); a Lava worker is stuck"):
        run_lava(lower(get("randman-mlp")), np.ones((3, 20, 20)), stall_timeout=1.5)
    assert time.monotonic() - start < 20
    assert multiprocessing.active_children() == []


@pytest.mark.lava
@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_a_bad_stall_timeout_is_a_one_line_error(monkeypatch, value):
    from neuromorph.backends.loihi2.lava.runner import run_lava
    from neuromorph.backends.loihi2.netlist import lower
    from neuromorph.errors import NeuromorphError
    from neuromorph.models import get

    monkeypatch.setenv("NEUROMORPH_LAVA_STALL_S", value)
    with pytest.raises(NeuromorphError, match="^NEUROMORPH_LAVA_STALL_S must be a positive number of seconds"):
        run_lava(lower(get("randman-mlp")), np.ones((1, 5, 20)))
