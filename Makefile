# One-step set-up: `make setup` builds .venv; `make test` and `make demo` set up first when needed.
# `make test` runs the whole suite (CI runs it through .ci/run); `make test-fast` leaves out
# the tests marked slow or lava (markers: pyproject.toml, applied in tests/conftest.py).
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.neuromorph-setup
PYTEST_ARGS ?=
FAST_MARKERS ?= not slow and not lava

.PHONY: setup test test-fast demo clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/runtime.txt requirements/test.txt requirements/nodeps.txt scripts/setup.sh
	./scripts/setup.sh
	@touch $(STAMP)

# One torch/OpenMP thread unless OMP_NUM_THREADS says otherwise: the models are tiny, and on
# a shared 2-core machine two spinning threads per process made the tests 2x slower.
test: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -m "$(FAST_MARKERS)" $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) examples/digits_to_loihi.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
