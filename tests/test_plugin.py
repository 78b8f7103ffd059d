"""The registry is real: a target that neuromorph has never heard of registers through an
entry point, and the command line compiles, runs and verifies with it, with no edit to
neuromorph. Core modules never name a backend (registry.py's default list aside)."""
import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import neuromorph

BIN = Path(sys.executable).parent
CORE = Path(neuromorph.__file__).parent

PLUGIN = '''
"""A pure-numpy reference target: runs the IR's own semantics (neuromorph.simulate) and
keeps the per-sample time step in its payload, to show what a payload is for."""
import numpy as np

from neuromorph.errors import ModelFileError
from neuromorph.rules import Refusal
from neuromorph.ir import NODE_TYPES, Plasticity
from neuromorph.simulate import RULES, simulate
from neuromorph.streams import Recording, spiking_nodes
from neuromorph.target import Compiled, Target


class NumpyTarget(Target):
    name = "numpy"
    description = "the IR semantics in numpy (a plugin)"
    precisions = ("float",)
    options = {"note": (str, "a free-text note kept in the artifact")}

    @property
    def rules(self):
        return {**RULES, NODE_TYPES["Delay"]: Refusal("this plugin keeps no input history")}

    def compile(self, graph, *, precision, dt, calibration, note=""):
        step = dt or graph.dt or 1e-3
        return Compiled({"dt": step, "note": note}, {"note": note, "nodes": len(graph.nodes)}, step)

    def encode_payload(self, payload):
        return dict(payload)

    def decode_payload(self, data, *, graph, dt, precision, source):
        if data.get("dt") != dt:
            raise ModelFileError(f"{source}: the payload's dt disagrees with the envelope's")
        return data

    def run(self, artifact, inputs, *, probes=(), progress=None):
        spiking = spiking_nodes(artifact.graph)
        out = simulate(artifact.graph, dict(inputs), dt=artifact.payload["dt"],
                       record=[*spiking, *(p.text for p in probes)])
        return Recording({o: out[o] for o in artifact.graph.outputs},
                         {p.text: out[p.text] for p in probes},
                         {n: int(out[n].sum()) for n in spiking}, {"plugin": True})


NUMPY = NumpyTarget()
'''


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    """A folder on PYTHONPATH holding the plugin module and its dist-info entry point,
    exactly what `pip install` of a plugin package leaves behind."""
    site = tmp_path_factory.mktemp("site")
    (site / "nm_numpy_target.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "nm_numpy_target-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nm-numpy-target\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[neuromorph.targets]\nnumpy = nm_numpy_target:NUMPY\n")
    return {**os.environ, "PYTHONPATH": str(site)}


def cli(env, *args, rc=0):
    proc = subprocess.run([str(BIN / "neuromorph"), *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == rc, proc.stderr
    return proc


def test_a_plugin_target_compiles_runs_and_verifies_through_the_cli(plugin_env, tmp_path):
    listed = json.loads(cli(plugin_env, "backends", "--json").stdout)
    assert {"numpy", "lava", "torch"} <= set(listed["targets"])
    assert "Delay" not in listed["targets"]["numpy"]["node_types"]

    art = tmp_path / "m.art"
    compiled = json.loads(cli(plugin_env, "compile", "digits-mlp", "--backend", "numpy",
                              "--note", "hello", "-o", art, "--json").stdout)
    assert compiled["backend"] == "numpy" and compiled["note"] == "hello"

    ran = json.loads(cli(plugin_env, "run", art, "--task", "digits", "--limit", "4", "--json").stdout)
    assert ran["backend"] == "numpy" and ran["plugin"] is True and ran["samples"] == 4
    direct = json.loads(cli(plugin_env, "run", "digits-mlp", "--backend", "numpy", "--task", "digits",
                            "--limit", "4", "--json").stdout)
    reference = json.loads(cli(plugin_env, "run", "digits-mlp", "--task", "digits", "--limit", "4",
                               "--json").stdout)
    assert direct["accuracy"] == ran["accuracy"] == reference["accuracy"]
    assert direct["spikes"] == ran["spikes"] == reference["spikes"] > 0

    checked = json.loads(cli(plugin_env, "verify", art, "--limit", "2", "--json").stdout)
    assert checked["backend"] == "numpy" and checked["passed"] and checked["spike_agreement"] == 1.0


def test_a_plugin_refusal_names_the_node(plugin_env, tmp_path):
    g = neuromorph.Graph({"x": neuromorph.Input((2,)), "d": neuromorph.Delay([0.002, 0.002]),
                          "h": neuromorph.LIF(tau=5e-3), "y": neuromorph.Output()},
                         [("x", "d"), ("d", "h"), ("h", "y")], dt=1e-3)
    model = neuromorph.save(g, tmp_path / "m.json")
    err = cli(plugin_env, "compile", model, "--backend", "numpy", "-o", tmp_path / "a.art", rc=2).stderr
    assert err.strip() == ("neuromorph: error: node 'd': target 'numpy' cannot take Delay nodes: "
                           "this plugin keeps no input history")
    err = cli(plugin_env, "compile", model, "--backend", "torch", "--note", "x", "-o", tmp_path / "a.art",
              rc=2).stderr
    assert "target 'torch' takes no option note" in err
    assert not (tmp_path / "a.art").exists()


def test_an_artifact_of_an_unregistered_target_is_refused(plugin_env, tmp_path):
    art = tmp_path / "m.art"
    cli(plugin_env, "compile", "digits-mlp", "--backend", "numpy", "-o", art)
    err = cli({k: v for k, v in plugin_env.items() if k != "PYTHONPATH"}, "run", art, "--task", "digits",
              rc=2).stderr
    assert "unknown backend 'numpy'" in err and err.count("\n") == 1


def _plugin_site(tmp_path, module_text):
    site = tmp_path / "site"
    info = site / "broken-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[neuromorph.targets]\nbroken = nm_broken:X\n")
    (site / "nm_broken.py").write_text(module_text)
    return {**os.environ, "PYTHONPATH": str(site)}


def test_a_broken_plugin_is_one_line(tmp_path):
    env = _plugin_site(tmp_path, "raise RuntimeError('half-installed')\n")
    err = cli(env, "backends", rc=2).stderr
    assert err.count("\n") == 1 and "entry point 'broken'" in err and "half-installed" in err
    assert "Traceback" not in err


def test_a_plugin_whose_package_is_missing_is_listed_unavailable_and_refused_when_used(tmp_path):
    env = _plugin_site(tmp_path, "import no_such_package_xyz\n")
    listed = json.loads(cli(env, "backends", "--json").stdout)
    assert listed["unavailable"] == {"broken": "needs the module 'no_such_package_xyz', which is not installed"}
    assert {"lava", "torch"} <= set(listed["targets"])
    err = cli(env, "compile", "digits-mlp", "--backend", "broken", "-o", tmp_path / "a.art", rc=2).stderr
    assert err.strip() == ("neuromorph: error: backend 'broken' is not available here: it needs the module "
                           "'no_such_package_xyz', which is not installed (run `make setup`)")


def _core_mentions() -> list[str]:
    """Imports of a backend package and string literals naming a registered backend, in
    core modules (docstrings and comments are prose, and are allowed to)."""
    from neuromorph.registry import targets

    # A hyphenated continuation is another name: "lava-dl" is a NIR producer, not the target.
    names = re.compile(r"\b(" + "|".join(map(re.escape, [*targets(), "loihi2"])) + r")\b(?!-)", re.I)
    found = []
    for path in sorted(CORE.rglob("*.py")):
        if path.name == "registry.py":  # the default list lives there
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr)}
        for node in ast.walk(tree):
            where = f"{path.relative_to(CORE.parent)}:{getattr(node, 'lineno', '?')}"
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if module and "backends" in module and not module.endswith("backends.nir"):
                found.append(f"{where} imports {module}")
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and id(node) not in docstrings and names.search(node.value)):
                found.append(f"{where} says {node.value[:60]!r}")
    return found


def test_core_never_names_a_backend():
    # NIR is interchange, not a target: import-nir / export-nir name their format.
    assert _core_mentions() == []
