"""Node rules are tables keyed by node type (neuromorph.rules), and every table is complete.

- Every IR node type (NODE_TYPES) has, in every backend's table and every registered
  target's ``.rules``, either a rule or an explicit Refusal: adding a node type without
  deciding what each backend does with it fails here, naming the table and the type.
- A missing rule and a Refusal are both one-line IRErrors that name the node.
- NIR round trips are closed: every NIR node type the exporter writes has an import rule.
"""
from __future__ import annotations

import dataclasses
import importlib
import warnings
from importlib.metadata import entry_points
from typing import Any, Callable

import numpy as np
import pytest

from neuromorph.errors import IRError, NIRConversionError
from neuromorph.ir import (
    ALIF, IF, LI, LIF, NODE_TYPES, Affine, Conv1d, Conv2d, CubaLIF, Delay, Flatten, Graph,
    Input, Linear, Node, Output, Plasticity, Scale, SumPool2d,
)
from neuromorph.registry import TARGETS
from neuromorph.rules import Refusal, check_graph, rule_for, supported, uncovered


def _attr(module: str, name: str) -> Callable[[], Any]:
    return lambda: getattr(importlib.import_module(module), name)


def _torch_rules() -> Any:
    pytest.importorskip("torch")
    from neuromorph.backends.torch.network import NODE_RULES

    return NODE_RULES


TABLES: dict[str, Callable[[], Any]] = {
    "simulate.RULES": _attr("neuromorph.simulate", "RULES"),
    "torch.network.NODE_RULES": _torch_rules,
    "loihi2.netlist.LOWERING_RULES": _attr(
        "neuromorph.backends.loihi2.netlist", "LOWERING_RULES"
    ),
    "nir._export.EXPORT_RULES": _attr("neuromorph.backends.nir._export", "EXPORT_RULES"),
}

TARGET_NAMES = sorted(ep.name for ep in entry_points(group=TARGETS))
"""Registered targets, read from the entry points without loading them."""


def _assert_complete(table: Any, what: str) -> None:
    missing = uncovered(table)
    assert not missing, f"{what} has neither a rule nor a Refusal for: {', '.join(missing)}"


# ------------------------------------------------------------------ every table is complete


@pytest.mark.parametrize("what", TABLES)
def test_every_node_type_has_a_rule_or_a_refusal_in_every_backend_table(what):
    _assert_complete(TABLES[what](), what)


def test_some_targets_are_registered():
    assert {"lava", "torch"} <= set(TARGET_NAMES)


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_every_node_type_has_a_rule_or_a_refusal_in_every_registered_target(name):
    from neuromorph.registry import target

    try:
        rules = target(name).rules
    except ModuleNotFoundError as exc:  # an optional dependency (torch), not our own code
        if (exc.name or "").startswith("neuromorph"):
            raise
        pytest.skip(f"target '{name}' needs {exc.name}")
    _assert_complete(rules, f"target '{name}' (.rules)")


# ------------------------------------------------------------ the check can actually fail


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Spike(Node):
    """A node type no backend has heard of."""

    type_name = "Spike"


@pytest.mark.parametrize("what", TABLES)
def test_a_new_node_type_without_rules_is_reported_missing_in_every_table(what, monkeypatch):
    table = TABLES[what]()
    monkeypatch.setitem(NODE_TYPES, "Spike", Spike)
    assert uncovered(table) == ["Spike"]
    with pytest.raises(IRError) as info:
        rule_for(table, Spike(), "odd", "this backend")
    assert str(info.value) == "node 'odd': this backend has no rule for Spike nodes"
    assert info.value.node == "odd"


@pytest.mark.parametrize("what", TABLES)
@pytest.mark.parametrize("kind", [LIF, Conv2d, Delay], ids=lambda k: k.type_name)
def test_a_table_missing_one_type_is_reported_and_refuses_that_node(what, kind):
    table = dict(TABLES[what]())
    del table[kind]
    assert uncovered(table) == [kind.type_name]
    with pytest.raises(IRError, match=rf"^node 'n1': the backend has no rule for {kind.type_name} nodes$"):
        rule_for(table, _example(kind), "n1", "the backend")


def test_the_nir_exporter_looks_its_rules_up_in_its_table(monkeypatch):
    from neuromorph.backends.nir import _export, to_nir

    monkeypatch.delitem(_export.EXPORT_RULES, LIF)
    with pytest.raises(NIRConversionError, match=r"^node 'lif': the NIR exporter has no rule for LIF nodes$"):
        to_nir(_small_graph())


# -------------------------------------------------------------------------- refusals


def test_a_refusal_is_a_one_line_error_naming_the_node_and_the_reason():
    from neuromorph.simulate import RULES

    table = {**RULES, LIF: Refusal("this chip has no leak")}
    with pytest.raises(IRError) as info:
        rule_for(table, LIF(tau=0.01), "lif", "target 'toy'")
    message = str(info.value)
    assert message == "node 'lif': target 'toy' cannot take LIF nodes: this chip has no leak"
    assert "\n" not in message and info.value.node == "lif"


def test_a_refused_type_counts_as_covered_but_not_as_supported():
    from neuromorph.simulate import RULES

    table = {**RULES, Delay: Refusal("no input history")}
    assert uncovered(table) == []
    assert "Delay" not in supported(table) and "LIF" in supported(table)


def test_check_graph_refuses_the_first_refused_node_of_a_graph():
    from neuromorph.simulate import RULES

    table = {**RULES, LIF: Refusal("no leak")}
    with pytest.raises(IRError, match=r"^node 'lif': target 'toy' cannot take LIF nodes: no leak$"):
        check_graph(table, _small_graph(), "target 'toy'")
    check_graph(RULES, _small_graph(), "the reference simulator")  # nothing refused


# ---------------------------------------------------------------- NIR round trips closed


def every_type_graph() -> Graph:
    """One node of every IR node type, plus a multi-step edge delay (a nir.Delay node)."""
    rng = np.random.default_rng(0)
    return Graph(
        nodes={
            "in": Input((2, 6, 6)),
            "conv2": Conv2d(rng.normal(size=(2, 2, 3, 3)), np.zeros(2), padding=1),
            "lif": LIF(tau=0.02),
            "pool": SumPool2d(2),
            "flat": Flatten(start_dim=-2, end_dim=-1),
            "conv1": Conv1d(rng.normal(size=(2, 2, 3)), np.zeros(2), padding=1),
            "if": IF(r=2.0),
            "flat2": Flatten(),
            "fc": Affine(rng.normal(size=(4, 18)), np.zeros(4)),
            "alif": ALIF(tau_mem=0.02, tau_adapt=0.2, beta=0.1),
            "rec": Linear(rng.normal(size=(4, 4)), plasticity=Plasticity("stdp", {"lr": 0.01})),
            "gain": Scale(2.0),
            "wait": Delay(0.002),
            "cuba": CubaLIF(tau_syn=0.005, tau_mem=0.01),
            "li": LI(tau=0.03),
            "out": Output(),
        },
        edges=[
            ("in", "conv2"), ("conv2", "lif"), ("lif", "pool"), ("pool", "flat"),
            ("flat", "conv1"), ("conv1", "if"), ("if", "flat2"), ("flat2", "fc"),
            ("fc", "alif"), ("alif", "rec", 1), ("rec", "alif"), ("alif", "gain", 3),
            ("gain", "wait"), ("wait", "cuba"), ("cuba", "li"), ("li", "out"),
        ],
        dt=1e-3,
    )


def test_the_round_trip_graph_has_every_node_type_the_exporter_takes():
    from neuromorph.backends.nir._export import EXPORT_RULES

    exported = set(supported(EXPORT_RULES))
    present = {node.type_name for node in every_type_graph().nodes.values()}
    assert exported <= present, f"add to every_type_graph: {', '.join(sorted(exported - present))}"


def test_every_nir_type_the_exporter_writes_has_an_import_rule():
    from neuromorph.backends.nir import to_nir
    from neuromorph.backends.nir._import import IMPORT_RULES, import_rule

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ALIF and plasticity: metadata-only losses
        written = to_nir(every_type_graph())
    kinds = {type(node) for node in written.nodes.values()}
    lacking = sorted(k.__name__ for k in kinds if k not in IMPORT_RULES)
    assert not lacking, f"the NIR importer has no rule for: {', '.join(lacking)}"
    for name, node in written.nodes.items():
        assert import_rule(node, name) is IMPORT_RULES[type(node)]


def test_the_nir_round_trip_restores_every_node_type():
    from neuromorph.backends.nir import from_nir, to_nir

    graph = every_type_graph()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = from_nir(to_nir(graph))
    assert list(back.nodes) == list(graph.nodes)
    for name, node in graph.nodes.items():
        assert back.nodes[name] == node, name
    assert back.edges == graph.edges


def test_no_nir_import_key_is_a_subclass_of_another():
    """The importer's lookup takes the first key on a node's MRO; with no key under
    another, that is the same as an isinstance chain in any order."""
    from neuromorph.backends.nir._import import IMPORT_RULES

    nested = [(a.__name__, b.__name__) for a in IMPORT_RULES for b in IMPORT_RULES
              if a is not b and issubclass(a, b)]
    assert not nested


def test_an_unknown_nir_type_is_refused_naming_the_node_and_what_is_imported():
    import nir

    from neuromorph.backends.nir._import import IMPORT_RULES, import_rule

    with pytest.raises(NIRConversionError) as info:
        import_rule(nir.Threshold(threshold=np.ones(2)), "odd")
    message = str(info.value)
    assert message.startswith("node 'odd': NIR node type Threshold is not supported")
    assert all(k.__name__ in message for k in IMPORT_RULES) and "\n" not in message


# ---------------------------------------------------------------------------- helpers


def _example(kind: type[Node]) -> Node:
    return {
        LIF: lambda: LIF(tau=0.01),
        Conv2d: lambda: Conv2d(np.ones((1, 1, 1, 1)), np.zeros(1)),
        Delay: lambda: Delay(0.001),
    }[kind]()


def _small_graph() -> Graph:
    return Graph(
        nodes={"in": Input((2,)), "fc": Linear(np.ones((2, 2))), "lif": LIF(tau=0.01), "out": Output()},
        edges=[("in", "fc"), ("fc", "lif"), ("lif", "out")],
        dt=1e-3,
    )
