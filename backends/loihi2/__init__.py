"""The Loihi 2 deployment target (registered as ``lava``).

Everything about the chip lives in this folder, in the order a network meets it:

- ``target.py``      the target: check, compile, payload, run, reference (the registry's entry)
- ``netlist.py``     lowering: IR graph -> populations and synapses with pipeline offsets
- ``linear.py``      the linear nodes composed into synapses: matrices, or convolutions kept as kernels
- ``conv.py``        a convolutional synapse: geometry, one step (float and fixed), counts
- ``quantize.py``    Loihi 2 fixed-point formats, and the bit-exact numpy model of them
- ``resources.py``   mapping onto cores, checked against the chip's limits (a map file)
- ``chip_model.py``  numpy model of the deployed netlist in chip time, samples side by side
                     (float; fixed via quantize)
- ``neuron_step.py`` one chip step of a population, shared by the chip model and Lava
- ``synapse.py``     one chip step of a dense / convolutional synapse, for one sample or lanes
- ``payload.py``     an artifact's payload read back, every field checked
- ``lava/``          the Lava processes, the runner, and Lava's Python 3.11 fix

Importing this package imports numpy only; Lava is imported when a network runs.
"""
