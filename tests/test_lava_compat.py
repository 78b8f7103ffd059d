"""Lava 0.10.0 on Python 3.11 through neuromorph's import fix, running a real network."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neuromorph.backends.loihi2.lava import compat as lava_compat
from neuromorph.backends.loihi2.lava.compat import LavaCompatError, import_lava

lava = import_lava()

py311 = pytest.mark.skipif(sys.version_info < (3, 11), reason="the fix is only needed on 3.11+")


def _var_model_path() -> Path:
    return Path(sys.modules[lava_compat.PATCHED_MODULE].__file__)


@py311
def test_plain_import_of_lava_fails_on_this_python():
    # The problem the fix exists for: without it, Lava does not import on 3.11.
    proc = subprocess.run(
        [sys.executable, "-c", "import lava.magma.compiler.var_model"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert "mutable default" in proc.stderr


@py311
def test_var_model_is_loaded_through_the_patch():
    module = sys.modules[lava_compat.PATCHED_MODULE]
    assert isinstance(module.__loader__, lava_compat._PatchedLoader)
    a, b = module.CoreEncoder(), module.CoreEncoder()
    assert a.x == module.ByteEncoder() and a.x is not b.x  # default_factory, not a shared instance


def test_site_packages_is_not_modified():
    assert _var_model_path().read_text().count(": ByteEncoder = ByteEncoder()") == 8


def test_unexpected_lava_source_fails_loudly():
    source = _var_model_path().read_text().replace(": ByteEncoder = ByteEncoder()", ": int = 0", 1)
    with pytest.raises(LavaCompatError, match="cannot apply neuromorph's Python 3.11 fix.*lava-nc==0.10.0"):
        lava_compat.patch_source(source, "var_model.py")


def _lava_lif_reference(bias, du, dv, vth, w, steps):
    """Lava's documented float LIF equations, with Dense's one-step delay."""
    u1 = v1 = u2 = v2 = 0.0
    s1_prev = 0.0
    v1s, v2s = [], []
    for _ in range(steps):
        u1 = u1 * (1 - du)
        v1 = v1 * (1 - dv) + u1 + bias
        s1 = float(v1 > vth)
        v1 = 0.0 if s1 else v1
        u2 = u2 * (1 - du) + w * s1_prev  # Dense delivers the previous step's spike
        v2 = v2 * (1 - dv) + u2
        s2 = float(v2 > vth)
        v2 = 0.0 if s2 else v2
        s1_prev = s1
        v1s.append(v1)
        v2s.append(v2)
    return np.array(v1s), np.array(v2s)


def test_a_small_lava_network_runs_and_matches_lava_equations():
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.lif.process import LIF
    from lava.proc.monitor.process import Monitor

    steps, bias, du, dv, vth, w = 30, 0.3, 0.2, 0.1, 1.0, 0.7
    pre = LIF(shape=(1,), du=du, dv=dv, vth=vth, bias_mant=bias)
    dense = Dense(weights=np.array([[w]]))
    post = LIF(shape=(1,), du=du, dv=dv, vth=vth)
    pre.s_out.connect(dense.s_in)
    dense.a_out.connect(post.a_in)
    mon_pre, mon_post = Monitor(), Monitor()
    mon_pre.probe(pre.v, steps)
    mon_post.probe(post.v, steps)
    try:
        pre.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="floating_pt"))
        got_pre = mon_pre.get_data()[pre.name]["v"][:, 0]
        got_post = mon_post.get_data()[post.name]["v"][:, 0]
    finally:
        pre.stop()
    want_pre, want_post = _lava_lif_reference(bias, du, dv, vth, w, steps)
    np.testing.assert_allclose(got_pre, want_pre, atol=1e-9)
    np.testing.assert_allclose(got_post, want_post, atol=1e-9)
    assert np.any(want_pre == 0.0) and np.any(want_post > 0.5)  # spikes and transmission happened
