"""Nothing of a Lava run outlives the process that started it, however that process ends.

A Lava run is many OS processes: one forked worker per Lava process and per runtime
service, the forked server of Lava's ``SharedMemoryManager`` (it owns the ``/dev/shm/psm_*``
segments of the channels), multiprocessing's resource tracker, plus our temp folder of
record files. Left alone, they all survive the parent's death: the workers block on their
channels for ever, holding the parent's stdout/stderr open (a reader through a pipe never
sees EOF) and the segments mapped. Three mechanisms, each simple, cover every way the
parent can end:

1. **Every child knows its parent** (``os.register_at_fork``, run in every child forked by
   the thread of a run, before any of Lava's code runs there): the child asks the kernel
   for ``SIGKILL`` when its parent dies (``prctl(PR_SET_PDEATHSIG)`` on Linux; elsewhere a
   daemon thread polls ``os.getppid()``), exits at once if the parent is already gone,
   ignores Ctrl-C (the parent stops the run), takes the default action for SIGTERM/SIGHUP,
   and reports its pid to the guardian (2.). PDEATHSIG fires when the forking *thread*
   ends; that thread is the one inside ``run_lava``, which outlives its workers. A stopped
   (SIGSTOP) child is killed too: SIGKILL needs no cooperation. So after a ``kill -9`` of
   the parent the workers die within milliseconds and close its stdout/stderr. While the
   run's thread forks, SIGINT/SIGTERM/SIGHUP are blocked (the child unblocks them once
   its own dispositions are set), so that no Python handler of the parent's runs inside
   the at-fork callbacks of either process.

2. **A guardian process per run** (``RunGuard``): a small ``python -I -S`` process in its
   own session (a signal to the run's process group does not reach it), stdout/stderr on
   /dev/null, reading a pipe whose only writer is the parent. The parent (and each new
   child, see 1.) tells it what the run owns: the children's pids (with their start
   times, so a reused pid is never killed), the shared-memory segments as Lava creates
   them, the temp folder. When the pipe reaches EOF -- the parent closed it at the end of
   the run, or the parent died in any way, SIGKILL included -- the guardian SIGKILLs the
   children still alive, unlinks the segments still there (and tells the resource
   tracker, so it does not warn about them), removes the temp folder, and exits. After a
   normal run everything is already gone and it does nothing.

3. **Catchable signals stop the run in the parent** (``Interrupts``): while a run is in
   progress in the main thread, SIGTERM and SIGHUP (unless ignored, as under ``nohup``)
   and SIGINT (when Python's default Ctrl-C handler is installed) raise in the parent only
   where that is safe (``armed()``: building and running; re-sent until the exception has
   left that region, since one raised inside a ``__del__`` or a callback is dropped);
   arriving elsewhere, during the shutdown say, they are deferred. The runner then stops
   Lava as it does after any error, and at the end SIGINT raises ``KeyboardInterrupt`` (as
   before); SIGTERM/SIGHUP print ``neuromorph: interrupted (SIGTERM)`` and raise
   ``SystemExit(128 + signum)``, the exit status the signal itself would have given -- or,
   if the program had its own handler, that handler is called.

Lava finds ProcessModels by executing every module of this folder as a top-level module,
so this one imports only the standard library and does nothing when imported.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Iterator, Optional

PR_SET_PDEATHSIG = 1
_CAUGHT = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))

# run thread ident -> the guards of the runs in progress in that thread (innermost last)
_GUARDS: dict[int, list["RunGuard"]] = {}
_FORKING: dict[int, Any] = {}  # run thread ident -> its signal mask from before the fork
_LOCK = threading.Lock()
_HOOKED = False
_PRCTL: Any = None


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived during a run (a BaseException, like KeyboardInterrupt,
    so that no ``except Exception`` on its way swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# ---------------------------------------------------------------- 3. signals in the parent


class Interrupts:
    """Context manager around a run: see the module docstring (3.). A no-op outside the
    main thread (Python delivers signals there only); the run is then still protected by
    1. and 2.

    Python runs a signal handler wherever the main thread happens to be, and an exception
    raised inside an at-fork callback, a ``__del__`` or a weakref callback is printed and
    dropped ("Exception ignored in ..."): the interrupt would be lost and the run go on.
    So while armed, once a signal has arrived, a helper thread re-sends it to the main
    thread every ``RETRY_S`` until the exception has left the armed region; and inside a
    fork (between our before- and after-fork callbacks) the handler only records."""

    RETRY_S = 0.2

    def __init__(self) -> None:
        self.received: list[int] = []
        self._previous: dict[int, Any] = {}
        self._armed = False
        self._main = threading.main_thread().ident
        self._retrying = False

    def __enter__(self) -> "Interrupts":
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in _CAUGHT:
            current = signal.getsignal(sig)
            if sig == signal.SIGINT:
                if current is not signal.default_int_handler:
                    continue  # ignored (a background job) or the program's own handler
            elif current is None or current == signal.SIG_IGN:
                continue  # ignored (nohup), or a handler not installed from Python
            self._previous[sig] = current
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received.append(signum)
        if not self._armed:
            return  # acted upon at the end of the run
        self._retry()
        if threading.get_ident() not in _FORKING and not _starting_a_process(frame):
            self._raise()

    def _raise(self) -> None:
        sig = self._signal()
        raise KeyboardInterrupt if sig == signal.SIGINT else Terminated(sig)

    def _retry(self) -> None:
        if self._retrying or not hasattr(signal, "pthread_kill"):
            return
        self._retrying = True

        def again() -> None:
            try:
                while True:
                    time.sleep(self.RETRY_S)
                    if not self._armed:
                        return
                    signal.pthread_kill(self._main, self._signal())
            finally:
                self._retrying = False

        threading.Thread(target=again, name="neuromorph-interrupt", daemon=True).start()

    def _signal(self) -> int:
        """The signal to act on: SIGTERM/SIGHUP before SIGINT, else the first."""
        stronger = [s for s in self.received if s != signal.SIGINT]
        return stronger[0] if stronger else self.received[0]

    @contextlib.contextmanager
    def armed(self) -> Iterator[None]:
        """Inside, a signal (also one that arrived before) raises."""
        if self.received:
            self._raise()
        self._armed = True
        try:
            yield
        finally:
            self._armed = False

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> bool:
        self._armed = False
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        if not self.received:
            return False
        sig = self._signal()
        if sig == signal.SIGINT:
            if isinstance(exc, KeyboardInterrupt):
                return False
            raise KeyboardInterrupt
        previous = self._previous.get(sig)
        if callable(previous):
            previous(sig, None)  # the program's own handler decides
            if isinstance(exc, Terminated):
                from neuromorph.errors import NeuromorphError

                raise NeuromorphError(f"the Lava run was interrupted ({signal.Signals(sig).name})") from None
            return False
        # Default action: the process would have ended; end it now, with nothing left behind.
        try:
            sys.stderr.write(f"neuromorph: interrupted ({signal.Signals(sig).name})\n")
            sys.stderr.flush()
        except (OSError, ValueError):  # stderr closed or a broken pipe
            pass
        raise SystemExit(128 + sig)


# ---------------------------------------------------------------- 1. and 2.: children and guardian

GUARDIAN = r"""
import os, shutil, signal, sys
for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGPIPE"):
    if hasattr(signal, name):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
pids, segments, folders, tracker = [], [], [], None
for raw in sys.stdin.buffer:  # until EOF: the parent closed the pipe or died
    kind, _, arg = raw.decode("ascii", "replace").strip().partition(" ")
    try:
        if kind == "pid":
            pid, _, start = arg.partition(" ")
            pids.append((int(pid), start))
        elif kind == "shm":
            segments.append(arg)
        elif kind == "dir":
            folders.append(os.fsdecode(bytes.fromhex(arg)))
        elif kind == "tracker":
            tracker = int(arg)
    except ValueError:
        pass

def start_time(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None

for pid, start in pids:
    if start == "-" or start_time(pid) == start:  # "-": no /proc to tell a reused pid
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
try:
    import _posixshmem
except ImportError:
    _posixshmem = None
for name in segments:
    try:
        _posixshmem.shm_unlink("/" + name)
    except Exception:
        continue  # gone already (Lava's shared-memory server unlinked it), or no POSIX shm
    if tracker is not None:  # it was registered by the parent: the tracker must not warn
        try:
            os.write(tracker, ("UNREGISTER:/%s:shared_memory\n" % name).encode())
        except OSError:
            pass
for folder in folders:
    shutil.rmtree(folder, ignore_errors=True)
"""


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), "-" without /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return "-"


def _load_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None


def _starting_a_process(frame: Any) -> bool:
    """Is the interrupted code inside ``multiprocessing.Process.start``? An exception
    there (after the fork, say) leaves a child half registered, and one raised in the
    ``Finalize`` it creates is printed at exit: the interrupt waits for the retry."""
    import multiprocessing.process

    start = multiprocessing.process.BaseProcess.start.__code__
    while frame is not None:
        if frame.f_code is start:
            return True
        frame = frame.f_back
    return False


def _before_fork() -> None:
    """A run's thread is forking: block the caught signals until the fork is complete,
    in this process and in the child (which inherits the mask), so that no Python signal
    handler runs inside the at-fork callbacks (see Interrupts)."""
    ident = threading.get_ident()
    if ident in _GUARDS and hasattr(signal, "pthread_sigmask"):
        _FORKING[ident] = signal.pthread_sigmask(signal.SIG_BLOCK, _CAUGHT)


def _after_fork_in_parent() -> None:
    ident = threading.get_ident()
    if ident in _FORKING:
        mask = _FORKING[ident]
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a pending signal is handled here
        finally:
            _FORKING.pop(ident, None)


def _after_fork_in_child() -> None:
    """In every forked child: close the guardians' pipes; a child of a run's thread joins
    that run (see the module docstring, 1.); then the signal mask is restored."""
    ident = threading.get_ident()
    mask = _FORKING.pop(ident, None)
    _FORKING.clear()
    if _GUARDS:
        mine = _GUARDS.get(ident)
        if mine:
            mine[-1]._adopt_this_child()
        for guards in _GUARDS.values():
            for g in guards:
                g._close_fd()
        _GUARDS.clear()
    if mask is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # now with the child's dispositions


def _watch_parent(parent: int) -> None:
    """Fallback where PDEATHSIG does not exist: end this child when its parent is gone."""
    while os.getppid() == parent:
        time.sleep(0.25)
    os.kill(os.getpid(), signal.SIGKILL)


class RunGuard:
    """The guardian process of one run (module docstring, 2.) and the at-fork hook that
    makes the run's children die with their parent (1.). Use as a context manager around
    everything that creates something of the run; ``folder`` / ``segment`` report what the
    guardian must remove if the parent dies."""

    def __init__(self) -> None:
        global _HOOKED, _PRCTL
        self._parent = os.getpid()
        self._thread = threading.get_ident()
        self._fd = -1
        self._proc: Optional[subprocess.Popen] = None
        with _LOCK:
            if not _HOOKED:
                _PRCTL = _load_prctl()
                _report_segments()
                os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                                    after_in_child=_after_fork_in_child)
                _HOOKED = True

    def __enter__(self) -> "RunGuard":
        tracker = _tracker_fd()
        read, self._fd = os.pipe()
        blocked = set(_CAUGHT)
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, blocked) if hasattr(signal, "pthread_sigmask") else None
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", GUARDIAN], stdin=read, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, pass_fds=() if tracker is None else (tracker,),
                start_new_session=True, cwd="/")
        except OSError as exc:
            os.close(self._fd)
            self._fd = -1
            from neuromorph.errors import NeuromorphError

            raise NeuromorphError(f"cannot start the Lava run's guardian process: {exc}") from exc
        finally:
            os.close(read)
            if old_mask is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        if tracker is not None:
            self._send(f"tracker {tracker}")
        with _LOCK:
            _GUARDS.setdefault(self._thread, []).append(self)
        return self

    def folder(self, path: str) -> None:
        self._send(f"dir {os.fsencode(path).hex()}")

    def segment(self, name: str) -> None:
        self._send(f"shm {name}")

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self, timeout: float = 10.0) -> None:
        """End the run: the guardian removes whatever is left, and is waited for."""
        with _LOCK:
            guards = _GUARDS.get(self._thread, [])
            if self in guards:
                guards.remove(self)
            if not guards:
                _GUARDS.pop(self._thread, None)
        self._close_fd()
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass  # it goes on alone; it removes only what is the run's
            self._proc = None

    # ---- internals

    def _send(self, line: str) -> None:
        if self._fd < 0:
            return
        try:
            os.write(self._fd, (line + "\n").encode("ascii"))
        except OSError:
            pass  # the guardian is gone: nothing more to do

    def _close_fd(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1

    def _adopt_this_child(self) -> None:
        """Runs in a child just forked by the run's thread, before anything else there."""
        pid = os.getpid()
        self._send(f"pid {pid} {_start_time(pid)}")
        if _PRCTL is not None:
            _PRCTL(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        else:
            threading.Thread(target=_watch_parent, args=(self._parent,), daemon=True).start()
        if os.getppid() != self._parent:  # the parent died before the line above
            os._exit(1)
        if hasattr(signal, "SIGINT"):
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent stops the run
        for sig in _CAUGHT:
            if sig != signal.SIGINT:
                signal.signal(sig, signal.SIG_DFL)  # not the parent's Python handler


def _report_segments() -> None:
    """Every shared-memory segment this process creates is registered with
    multiprocessing's resource tracker right after ``shm_open`` (Lava's channels are
    ``multiprocessing.managers.SharedMemoryManager`` segments, created by the host);
    the registration is reported to the guardian of the run creating it, if any, which
    unlinks the segment should the run's processes die without doing so."""
    from multiprocessing import resource_tracker

    original = resource_tracker.register
    if getattr(original, "_neuromorph_reports", False):
        return

    def register(name: str, rtype: str) -> None:
        if rtype == "shared_memory":
            guards = _GUARDS.get(threading.get_ident())
            if guards:
                guards[-1].segment(name.lstrip("/"))
        original(name, rtype)

    register._neuromorph_reports = True  # type: ignore[attr-defined]
    resource_tracker.register = register


def _tracker_fd() -> Optional[int]:
    """multiprocessing's resource tracker (started now if needed): the guardian
    unregisters there the segments it unlinks."""
    try:
        from multiprocessing import resource_tracker

        return resource_tracker.getfd()
    except Exception:  # noqa: BLE001 - without it the tracker may warn, nothing worse
        return None
