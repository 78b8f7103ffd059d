"""Loihi 2 in Lava's CPU simulator: the only folder of neuromorph that imports Lava.

- ``compat.py``: makes Lava 0.10.0 importable on Python 3.11 (an import hook, nothing
  written to site-packages);
- ``process.py``: ``NeuronGroup``, the project-owned Lava Process of one population;
- ``conv.py``: ``ConvSynapse``, the project-owned Lava Process of one convolutional
  connection (why not Lava's own ``Conv``: its docstring);
- ``lanes.py``: ``LaneSource`` and ``LaneCore`` (a population with its incoming
  synapses), the processes of the lane plan (B samples side by side, as B copies of the
  network on spare cores), and what the asynchronous models are;
- ``runner.py``: ``run_lava`` builds one Lava process per input, population and
  connection one sample at a time, or per input and population in lanes (``Plan``),
  runs every chip step in one Lava run and always stops it;
- ``lifecycle.py``: what makes "always" true when the parent is killed or a worker
  freezes (a guardian process, a parent-death signal, a stall watchdog).

Nothing is imported here, so that ``compat`` can be loaded before Lava is.
"""
