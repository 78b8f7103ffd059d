"""Make Lava 0.10.0 importable on Python 3.11 without touching site-packages.

Lava's ``lava/magma/compiler/var_model.py`` uses ``ByteEncoder()`` instances as dataclass
field defaults. Python 3.11 rejects unhashable dataclass defaults, so ``import lava...``
fails there with "mutable default ... use default_factory". We install a meta-path
finder that loads exactly that module from a patched copy of its source (defaults become
``field(default_factory=ByteEncoder)``). The source on disk is not modified and no
bytecode is cached for the patched text.

If Lava's source is not what the patch expects, the import fails with
:class:`LavaCompatError` naming the file, rather than running a half-patched Lava.
On Python 3.10 (Lava's own target) nothing is installed.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from typing import Optional, Sequence

PATCHED_MODULE = "lava.magma.compiler.var_model"
_BAD_DEFAULT = ": ByteEncoder = ByteEncoder()"
_GOOD_DEFAULT = ": ByteEncoder = field(default_factory=ByteEncoder)"
_EXPECTED_BAD_DEFAULTS = 8
_IMPORT_LINE = "from dataclasses import dataclass, InitVar\n"
_PATCHED_IMPORT_LINE = "from dataclasses import dataclass, InitVar, field\n"


class LavaCompatError(ImportError):
    """Lava's source differs from the one the Python 3.11 fix was written for."""


def needs_patch() -> bool:
    return sys.version_info >= (3, 11)


def patch_source(source: str, origin: str = PATCHED_MODULE) -> str:
    """Return var_model.py's source with 3.11-compatible dataclass defaults."""
    count = source.count(_BAD_DEFAULT)
    if count != _EXPECTED_BAD_DEFAULTS or source.count(_IMPORT_LINE) != 1:
        raise LavaCompatError(
            f"cannot apply neuromorph's Python 3.11 fix to Lava: {origin} has "
            f"{count} ByteEncoder defaults (expected {_EXPECTED_BAD_DEFAULTS}) or an "
            "unexpected dataclasses import; neuromorph supports lava-nc==0.10.0"
        )
    return source.replace(_IMPORT_LINE, _PATCHED_IMPORT_LINE, 1).replace(
        _BAD_DEFAULT, _GOOD_DEFAULT
    )


class _PatchedLoader(importlib.abc.Loader):
    def __init__(self, origin: str) -> None:
        self.origin = origin

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # default module creation

    def exec_module(self, module: types.ModuleType) -> None:
        with open(self.origin, encoding="utf-8") as f:
            source = patch_source(f.read(), self.origin)
        code = compile(source, self.origin, "exec", dont_inherit=True)
        exec(code, module.__dict__)


class _VarModelFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Optional[Sequence[str]],
        target: Optional[types.ModuleType] = None,
    ) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname != PATCHED_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None:
            return None
        return importlib.util.spec_from_file_location(
            fullname, spec.origin, loader=_PatchedLoader(spec.origin)
        )


def install() -> bool:
    """Install the import hook (idempotent). Returns True if a hook is active."""
    if not needs_patch():
        return False
    if PATCHED_MODULE in sys.modules:
        module = sys.modules[PATCHED_MODULE]
        if not isinstance(getattr(module, "__loader__", None), _PatchedLoader):
            raise LavaCompatError(
                f"{PATCHED_MODULE} was imported before neuromorph's Python 3.11 fix "
                "was installed; import neuromorph.backends.loihi2.lava.compat first"
            )
    if not any(isinstance(f, _VarModelFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _VarModelFinder())
    return True


def import_lava() -> types.ModuleType:
    """Install the fix and import Lava; a missing Lava is a clear one-line error."""
    install()
    try:
        import lava.magma.compiler.var_model  # noqa: F401  (the patched module)
        import lava
    except LavaCompatError:
        raise
    except ModuleNotFoundError as exc:
        raise ImportError(
            "Lava is not installed: run `make setup` (installs lava-nc==0.10.0)"
        ) from exc
    return lava
