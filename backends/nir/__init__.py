"""NIR interchange backend: ``to_nir``/``write_nir`` and ``from_nir``/``read_nir``.

See :mod:`neuromorph.backends.nir.convert` for what round-trips, the conventions of
other tools' files and how the time step is chosen.
"""
from .convert import (
    CONVENTIONS, DEFAULT_DT, NIRExportWarning, NIRImport, NIRImportWarning, from_nir, read_nir,
    read_nir_report, to_nir, write_nir,
)

__all__ = [
    "CONVENTIONS", "DEFAULT_DT", "NIRExportWarning", "NIRImport", "NIRImportWarning", "from_nir",
    "read_nir", "read_nir_report", "to_nir", "write_nir",
]
