"""Adapters, installed as ``neuromorph.backends``; core (``neuromorph/``) never imports them
by name: targets and training methods reach it through the registry's entry points.

- ``nir/``     interchange: NIR import and export, other frameworks' conventions
- ``torch/``   simulator and training engine: GraphNetwork, surrogates, BPTT; target ``torch``
- ``loihi2/``  deployment target: Loihi 2 in Intel Lava's simulator; target ``lava``
"""
