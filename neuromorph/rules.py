"""Node rules as tables: every backend keys what it does with a node by the node's type.

A table maps each IR node type to the backend's rule for it, or to a :class:`Refusal`
that says why the backend cannot take it. ``tests/test_node_rules.py`` fails when any IR
node type has neither in any backend, so a new node type cannot be half added.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, TypeVar

from .errors import IRError
from .ir import NODE_TYPES, Graph, Node

R = TypeVar("R")


@dataclass(frozen=True)
class Refusal:
    """A backend's explicit 'no' for a node type, with the reason a user reads."""

    reason: str


RuleTable = Mapping[type[Node], Any]  # node type -> rule, or Refusal


def rule_for(table: Mapping[type[Node], R | Refusal], node: Node, name: str, who: str) -> R:
    """The rule for ``node``; a refusal or a missing rule is an IRError naming the node."""
    rule = table.get(type(node))
    if rule is None:
        raise IRError(f"{who} has no rule for {node.type_name} nodes", node=name)
    if isinstance(rule, Refusal):
        raise IRError(f"{who} cannot take {node.type_name} nodes: {rule.reason}", node=name)
    return rule


def check_graph(table: RuleTable, graph: Graph, who: str) -> None:
    """Refuse the first node of ``graph`` that ``table`` refuses or lacks."""
    for name, node in graph.nodes.items():
        rule_for(table, node, name, who)


def uncovered(table: RuleTable) -> list[str]:
    """IR node types with neither a rule nor a refusal in ``table``."""
    return sorted(name for name, cls in NODE_TYPES.items() if cls not in table)


def supported(table: RuleTable) -> list[str]:
    """IR node types the table has a rule for (not refused)."""
    return sorted(name for name, cls in NODE_TYPES.items()
                  if cls in table and not isinstance(table[cls], Refusal))
