"""Adapters, installed as ``neuromorph.backends``. Core (``neuromorph/``) imports no target
and no training engine: they reach it through the registry's entry points (the NIR
commands import ``nir/``, the interchange format they are named for).

- ``nir/``     interchange: NIR import and export, other frameworks' conventions
- ``torch/``   simulator and training engine: GraphNetwork, surrogates, BPTT; target ``torch``
- ``loihi2/``  deployment target: Loihi 2 in Intel Lava's simulator; target ``lava``
"""
