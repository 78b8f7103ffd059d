#!/usr/bin/env bash
# Create .venv and install neuromorph with Lava and Norse. Idempotent: the Makefile only
# calls this when requirements or pyproject.toml changed since the last successful run.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV=.venv

if [ ! -x "$VENV/bin/python" ]; then
    # A torch the base interpreter already has (say a user's CUDA build) is reused
    # rather than replaced: the venv then sees the base site-packages.
    if "$PYTHON" -c "import torch" >/dev/null 2>&1; then
        echo "setup: reusing the torch installed for $PYTHON"
        "$PYTHON" -m venv --system-site-packages "$VENV"
    else
        "$PYTHON" -m venv "$VENV"
    fi
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade "pip>=23.2" "setuptools>=64" wheel

if "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "setup: keeping torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
    # 2.13.0 is a local CPU build on this project's machines; an unpinned torch would
    # pull a multi-GB CUDA build.
    "${PIP[@]}" install "torch==2.13.0"
fi

"${PIP[@]}" install -r requirements/runtime.txt -r requirements/test.txt
"${PIP[@]}" install --no-deps --ignore-requires-python -r requirements/nodeps.txt
"${PIP[@]}" install --no-deps --no-build-isolation -e .
"$PY" -c "import neuromorph, norse.torch, nir; from neuromorph.backends.loihi2.lava.compat import import_lava; import_lava()"
echo "setup: done ($("$PY" --version), torch $("$PY" -c 'import torch; print(torch.__version__)'))"
