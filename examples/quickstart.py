"""Quick start: define a model, save and inspect it, simulate it, export it to NIR and back.

Run with `make demo` or `.venv/bin/python examples/quickstart.py [--out DIR]`.
"""
import argparse
import tempfile
from pathlib import Path

import numpy as np

import neuromorph as nm
from neuromorph.backends.nir import read_nir, write_nir
from neuromorph.cli import summarize
from neuromorph.simulate import simulate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=None, help="folder for the files (default: a temp dir)")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="neuromorph-"))
    out.mkdir(parents=True, exist_ok=True)

    # 1. Define: an LSNN for evidence accumulation, in one line.
    model = nm.recurrent(40, 100, 2, n_adaptive=50, seed=0)
    path = nm.save(model, out / "lsnn.json")
    totals = summarize(model)["totals"]
    print(f"defined  {path}: {totals['neurons']} neurons, {totals['synapses']} synapses, "
          f"cycles {model.cycles()}")

    # 2. Simulate the written semantics on a random Poisson input (200 steps of 1 ms).
    rng = np.random.default_rng(0)
    x = (rng.random((200, 40)) < 0.05).astype(float)
    rec = simulate(model, 5.0 * x, record=["hidden"])
    rate = rec["hidden"].mean() / model.dt
    print(f"simulated 200 steps: hidden layer fires {rate:.1f} Hz on average, "
          f"readout ends at {np.round(rec['output'][-1], 3)}")

    # 3. Interchange: NIR out and back in, exactly.
    warnings = write_nir(model, out / "lsnn.nir")
    back = read_nir(out / "lsnn.nir")
    print(f"exported {out / 'lsnn.nir'} ({len(warnings)} warning(s): ALIF travels in metadata); "
          f"re-imported identical: {back == model}")


if __name__ == "__main__":
    main()
