# One-step set-up: `make setup` builds .venv; `make test` and `make demo` set up first when needed.
# `make test` runs the whole suite (CI runs it through .ci/run); `make test-fast` leaves out
# the tests marked slow or lava (markers: pyproject.toml, applied in tests/conftest.py).
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.neuromorph-setup
PYTEST_ARGS ?=
FAST_MARKERS ?= not slow and not lava

.PHONY: setup test test-fast demo bench clean

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

# The main job (define -> train -> compile -> run in Lava), then on-chip learning: a deployed
# network learns five new digit classes in Lava fixed point from one pass over a labelled stream.
demo: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) examples/digits_to_loihi.py
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) examples/digits_incremental.py

# `make bench` runs every benchmarks/*.py (summarize.py aside) one after another with --json,
# plus --quick where the script has that option (each script ~2 minutes at most on 2 cores, the
# whole target ~10), one thread unless OMP_NUM_THREADS says otherwise, each under a time-out of
# BENCH_TIMEOUT seconds. It writes benchmarks/results/<script>.json (stdout) and <script>.log
# (stderr), then benchmarks/summarize.py writes benchmarks/results/SUMMARY.md and exits non-zero
# naming the scripts that failed. Extra arguments per script: BENCH_ARGS_<script>="...";
# BENCH_QUICK= runs the full versions; BENCH_SCRIPTS="a b" runs only those.
BENCH_DIR := benchmarks/results
BENCH_SCRIPTS ?= $(filter-out summarize,$(basename $(notdir $(sort $(wildcard benchmarks/*.py)))))
BENCH_QUICK ?= --quick
BENCH_TIMEOUT ?= 600
BENCH_ARGS_deploy_throughput ?= --repeat 10

bench: $(STAMP)
	@rm -rf $(BENCH_DIR) && mkdir -p $(BENCH_DIR)
	@echo "$$(date +%s) $$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)" > $(BENCH_DIR)/started; \
	$(foreach s,$(BENCH_SCRIPTS),args_$(s)='$(BENCH_ARGS_$(s))';) \
	for s in $(BENCH_SCRIPTS); do \
	  eval "extra=\$$args_$$s"; args="--json"; \
	  if grep -q -e '"--quick"' benchmarks/$$s.py; then args="$$args $(BENCH_QUICK)"; fi; \
	  cmd="$(PY) benchmarks/$$s.py $$args$${extra:+ $$extra}"; \
	  echo "bench: $$s: $$cmd"; t0=$$(date +%s); \
	  OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} timeout -k 30 $(BENCH_TIMEOUT) $$cmd \
	    > $(BENCH_DIR)/$$s.json 2> $(BENCH_DIR)/$$s.log; rc=$$?; t=$$(( $$(date +%s) - t0 )); \
	  printf '%s\t%s\t%s\t%s\n' "$$s" "$$rc" "$$t" "$$cmd" >> $(BENCH_DIR)/runs.tsv; \
	  echo "bench: $$s: exit $$rc after $$t s"; \
	done
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) benchmarks/summarize.py $(BENCH_DIR)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
