"""Errors a user can act on. The CLI turns each into one line on stderr and exit code 2."""
from __future__ import annotations


class NeuromorphError(Exception):
    """Base class: bad input that the user can fix (file, model, option)."""


class IRError(NeuromorphError, ValueError):
    """An IR node or graph is invalid. The message names the node and the reason."""

    def __init__(self, message: str, node: str | None = None) -> None:
        self.node = node
        super().__init__(f"node '{node}': {message}" if node is not None else message)


class ModelFileError(NeuromorphError):
    """A model file is missing, corrupted, truncated, foreign or of an unknown version."""


class NIRConversionError(NeuromorphError):
    """A NIR graph cannot be represented in neuromorph's IR, or vice versa."""
