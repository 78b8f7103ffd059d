# One-step set-up: `make setup` builds .venv; `make test` and `make demo` set up first when needed.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.neuromorph-setup
PYTEST_ARGS ?=

.PHONY: setup test demo clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/runtime.txt requirements/test.txt requirements/nodeps.txt scripts/setup.sh
	./scripts/setup.sh
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) examples/digits_to_loihi.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
