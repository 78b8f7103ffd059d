"""The asynchronous learning plan: the processes of a learning run (lava/runner.py, one
sample at a time) with ``AsyncProtocol`` models (docs/onchip-learning.md, "The
asynchronous learning plan").

A learning run is the same Lava process graph either way -- RingBuffers playing the
input, label, error and reward streams, Lava's ``Dense`` / ``DelayDense`` for the frozen
connections, ``NeuronGroup``s, Lava's ``LearningDense`` running Lava's own learning
engine (learning.py's ``PlasticDenseFloat`` / ``PlasticDenseFixed``) and the post
populations that send the rule's factors (``TeacherGroup``, ``EPropGroup``,
``PairGroup``, ``ReadoutGroup``) -- exchanging the same messages every chip step. Under
``LoihiProtocol`` Lava's runtime service drives every process through the phases of
every step (spiking, then learning for the processes whose ``lrn_guard`` asks for it),
one command and one reply per process and phase: with ~8 processes that handshake, not
the arithmetic, is what a learning step costs. Under ``AsyncProtocol`` a ``RunSteps``
is one command per process, and each process steps on its own, kept in step with the
others by its blocking reads.

:func:`async_twin` makes the asynchronous model of a synchronous one: the same class
(its Var and port types, its ``__init__``, ``run_spk``, ``run_lrn``, guards: Lava's
models are reused, not rewritten) under ``PyAsyncProcessModel``, whose ``run_async``
runs, for each step of the RunSteps, what ``PyLoihiProcessModel``'s phase handlers run
for this process in that step (:class:`LoihiStepsAsync`): ``time_step += 1``,
``run_spk``, the out ports advanced, then ``run_pre_mgmt`` if ``lrn_guard and
pre_guard``, ``run_lrn`` if ``lrn_guard`` (Lava's learning engine: trace and weight
updates), ``run_post_mgmt`` if ``post_guard``; the host phase runs nothing. A process's
learning phase touches its own state only, and the next step's ``run_spk`` comes after
it in both plans, so every message, trace and weight is what the synchronous plan
computes, bit for bit (tests/test_learning_async.py). What is given up is what the lane
plan gives up (lanes.py): Var access and probes while a run is in progress (nothing
here needs them: records, status and learnt weights go through files).

(Sync semantics in full: a process's pre/post-management phase runs when *some* process
requests it; every process here keeps Lava's default guards, which never do, so the
per-process rule above is exact.)

The twins are tagged ``<tag>_async`` (a synchronous ``select_tag`` never picks one) and
named by the runner (``exception_proc_model_map``), as are all our models.

Note: Lava finds ProcessModels by executing every module of this package as a top-level
module; this one must therefore import cleanly on its own (absolute imports, no
dataclasses with postponed annotations).
"""
from typing import Any, Optional

from neuromorph.backends.loihi2.lava.compat import import_lava

import_lava()

from lava.magma.core.decorator import implements, requires, tag  # noqa: E402
from lava.magma.core.model.py.model import PyAsyncProcessModel, PyLoihiProcessModel  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.sync.protocols.async_protocol import AsyncProtocol  # noqa: E402
from lava.proc.dense.models import (  # noqa: E402
    PyDelayDenseModelBitAcc, PyDelayDenseModelFloat, PyDenseModelBitAcc, PyDenseModelFloat,
)
from lava.proc.dense.process import DelayDense, Dense, LearningDense  # noqa: E402
from lava.proc.io.source import PySendModelFixed, PySendModelFloat, RingBuffer  # noqa: E402

from neuromorph.backends.loihi2.lava import learning  # noqa: E402
from neuromorph.backends.loihi2.lava import process as neuron_models  # noqa: E402
from neuromorph.backends.loihi2.lava.conv import MODELS as CONV_MODELS, ConvSynapse  # noqa: E402
from neuromorph.backends.loihi2.lava.process import NeuronGroup  # noqa: E402

_PHASE = PyLoihiProcessModel.Phase


class LoihiStepsAsync(PyAsyncProcessModel):
    """``run_async``: the steps of a RunSteps, each as ``PyLoihiProcessModel``'s phase
    handlers run it for this process (module docstring). Mixed in before a synchronous
    model class (:func:`async_twin`), whose methods and types it runs."""

    time_step: int

    def run_async(self) -> None:
        for _ in range(self.num_steps):
            self.time_step += 1  # PyLoihiProcessModel._spike
            self.phase = _PHASE.SPK
            self.run_spk()
            self.advance_to_time_step(self.time_step + 1)
            learns = self.lrn_guard()
            if learns and self.pre_guard():  # _pre_mgmt
                self.phase = _PHASE.PRE_MGMT
                self.run_pre_mgmt()
            if learns:  # _lrn: Lava's learning engine (PyLearningConnection.run_lrn)
                self.phase = _PHASE.LRN
                self.run_lrn()
            if self.post_guard():  # _post_mgmt
                self.phase = _PHASE.POST_MGMT
                self.run_post_mgmt()
            self.phase = _PHASE.HOST  # runs nothing


def async_twin(model: type, name: Optional[str] = None) -> type:
    """The AsyncProtocol model of the LoihiProtocol model ``model`` (a subclass of
    ``PyLoihiProcessModel``): its class with :class:`LoihiStepsAsync` first, implementing
    the same process, tagged ``<tag>_async``."""
    if not issubclass(model, PyLoihiProcessModel):
        raise TypeError(f"{model.__name__} is not a PyLoihiProcessModel")
    # tags and resources are additive over inheritance: the twin starts from none
    members = {"__module__": __name__, "implements_protocol": AsyncProtocol, "tags": [], "required_resources": [],
               "__doc__": f"{model.__name__} under AsyncProtocol (learning_async.LoihiStepsAsync)."}
    cls = type(name or f"{model.__name__}Async", (LoihiStepsAsync, model), members)
    tags = list(dict.fromkeys(f"{t}_async" for t in getattr(model, "tags", []))) or ["async"]
    return implements(proc=model.implements_process, protocol=AsyncProtocol)(requires(CPU)(tag(*tags)(cls)))


PySendModelFloatAsync = async_twin(PySendModelFloat)
PySendModelFixedAsync = async_twin(PySendModelFixed)
PyDenseModelFloatAsync = async_twin(PyDenseModelFloat)
PyDenseModelBitAccAsync = async_twin(PyDenseModelBitAcc)
PyDelayDenseModelFloatAsync = async_twin(PyDelayDenseModelFloat)
PyDelayDenseModelBitAccAsync = async_twin(PyDelayDenseModelBitAcc)
PlasticDenseFloatAsync = async_twin(learning.PlasticDenseFloat)
PlasticDenseFixedAsync = async_twin(learning.PlasticDenseFixed)
PyTeacherGroupFloatAsync = async_twin(learning.PyTeacherGroupFloat)
PyTeacherGroupFixedAsync = async_twin(learning.PyTeacherGroupFixed)
PyEPropGroupFloatAsync = async_twin(learning.PyEPropGroupFloat)
PyEPropGroupFixedAsync = async_twin(learning.PyEPropGroupFixed)
PyPairGroupFloatAsync = async_twin(learning.PyPairGroupFloat)
PyReadoutGroupFloatAsync = async_twin(learning.PyReadoutGroupFloat)
PyReadoutGroupFixedAsync = async_twin(learning.PyReadoutGroupFixed)

MODELS = {
    (RingBuffer, "float"): PySendModelFloatAsync, (RingBuffer, "fixed"): PySendModelFixedAsync,
    (Dense, "float"): PyDenseModelFloatAsync, (Dense, "fixed"): PyDenseModelBitAccAsync,
    (DelayDense, "float"): PyDelayDenseModelFloatAsync, (DelayDense, "fixed"): PyDelayDenseModelBitAccAsync,
    (LearningDense, "float"): PlasticDenseFloatAsync, (LearningDense, "fixed"): PlasticDenseFixedAsync,
    (learning.TeacherGroup, "float"): PyTeacherGroupFloatAsync,
    (learning.TeacherGroup, "fixed"): PyTeacherGroupFixedAsync,
    (learning.EPropGroup, "float"): PyEPropGroupFloatAsync, (learning.EPropGroup, "fixed"): PyEPropGroupFixedAsync,
    (learning.PairGroup, "float"): PyPairGroupFloatAsync, (learning.ReadoutGroup, "float"): PyReadoutGroupFloatAsync,
    (learning.ReadoutGroup, "fixed"): PyReadoutGroupFixedAsync,
    (NeuronGroup, "float"): neuron_models.MODELS[("float", True)],
    (NeuronGroup, "fixed"): neuron_models.MODELS[("fixed", True)],
    (ConvSynapse, "float"): CONV_MODELS[("float", True)], (ConvSynapse, "fixed"): CONV_MODELS[("fixed", True)],
}
"""(process class, precision) -> its AsyncProtocol model in the asynchronous learning plan
(the process classes exactly: a subclass not listed has none)."""


def model_for(process: Any, precision: str) -> Optional[type]:
    """The asynchronous model of ``process`` in a learning run, or None if it has none."""
    return MODELS.get((type(process), precision))
