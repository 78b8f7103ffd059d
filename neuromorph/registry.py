"""The registry: targets and training methods, found through entry points.

Everything the CLI offers (``compile --backend``, ``run --backend``, ``train --method``)
and everything ``run`` and ``verify`` call comes from here, so a new backend needs no
edit to neuromorph: its package declares entry points (see neuromorph/target.py).

    [project.entry-points."neuromorph.targets"]     name -> a Target instance
    [project.entry-points."neuromorph.methods"]     name -> train(graph, data, config, progress)

The default list below is the only place core names the backends it ships with.
"""
from __future__ import annotations

from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any, Callable

from .errors import NeuromorphError
from .target import Target

TARGETS = "neuromorph.targets"
METHODS = "neuromorph.methods"

DEFAULT_TARGET = "lava"
"""``compile`` without ``--backend``: Loihi 2 through Lava."""
MODEL_TARGET = "torch"
"""``run MODEL`` (a model file, not an artifact) without ``--backend``: the float64
torch simulator."""
DEFAULT_METHOD = "bptt"


_UNAVAILABLE: dict[tuple[str, str], str] = {}
"""(group, name) -> why an entry point could not be loaded (a missing package)."""


@lru_cache(maxsize=None)
def _load(group: str) -> dict[str, Any]:
    """Load a group's entry points (once per process). One whose package needs a module that is not
    installed (say torch on a machine without it) is *unavailable*: listed with the
    reason, refused when used; any other failure is a broken plugin, a one-line error."""
    found: dict[str, Any] = {}
    for ep in entry_points(group=group):
        try:
            found[ep.name] = ep.load()
        except ModuleNotFoundError as exc:
            _UNAVAILABLE[(group, ep.name)] = f"needs the module '{exc.name}', which is not installed"
        except Exception as exc:  # a broken plugin gets a clear line, not a traceback
            raise NeuromorphError(f"entry point '{ep.name}' ({ep.value}) in {group} failed to "
                                  f"load: {type(exc).__name__}: {exc}") from None
    return found


def unavailable(group: str = TARGETS) -> dict[str, str]:
    """Registered entry points of ``group`` that cannot load here, with the reason."""
    _load(group)
    return {name: why for (g, name), why in sorted(_UNAVAILABLE.items()) if g == group}


def _unknown(kind: str, name: str, group: str, available: dict[str, Any]) -> NeuromorphError:
    missing = unavailable(group)
    if name in missing:
        return NeuromorphError(f"{kind} '{name}' is not available here: it {missing[name]} "
                               "(run `make setup`)")
    return NeuromorphError(f"unknown {kind} '{name}' (registered: {', '.join(available) or 'none'})")


def targets() -> dict[str, Target]:
    found = dict(_load(TARGETS))
    for name, target in found.items():
        if not isinstance(target, Target):
            raise NeuromorphError(f"entry point '{name}' in {TARGETS} is not a neuromorph Target")
        if target.name != name:
            raise NeuromorphError(f"entry point '{name}' in {TARGETS} names a target called "
                                  f"'{target.name}'")
    return dict(sorted(found.items()))


def target(name: str) -> Target:
    available = targets()
    if name not in available:
        raise _unknown("backend", name, TARGETS, available)
    return available[name]


def methods() -> dict[str, Callable[..., Any]]:
    found = dict(_load(METHODS))
    for name, fn in found.items():
        if not callable(fn):
            raise NeuromorphError(f"entry point '{name}' in {METHODS} is not callable")
    return dict(sorted(found.items()))


def method(name: str) -> Callable[..., Any]:
    available = methods()
    if name not in available:
        raise _unknown("training method", name, METHODS, available)
    return available[name]
