# Two entry points: `make demo` and `make test` (`make test-fast` while editing).  Both build .venv
# from requirements-dev.txt (the pinned requirements.txt plus pytest) when it is missing or older
# than either file.
#
# An existing environment instead (GPU nodes: their own torch, no network to build .venv from):
#   make demo PYTHON=python        # any interpreter with the packages of requirements.txt
#   make test VENV=0               # the same with `python3` from PATH
# Nothing is installed then; `make check-env` says which package is missing, if any.
PYTHON ?=
VENV ?= $(if $(PYTHON),0,1)
ifeq ($(VENV),0)
PY := $(or $(PYTHON),python3)
ENV_DEP := check-env
else
PY := .venv/bin/python
ENV_DEP := venv
endif
# The digits models are tiny: one torch thread is as fast as two on an idle laptop and many
# times faster on a busy one (measured: 35 s vs 12 min for DL-correlation under load).
export OMP_NUM_THREADS ?= 1
export MPLBACKEND := Agg

.PHONY: demo test test-fast test-quick test-slurm venv check-env bench bench-gpu clean-venv data reproduce report report-check studies

venv: .venv/.installed

# The packages the code imports, checked in the chosen interpreter (one line per problem).
check-env:
	@$(PY) -c "import importlib.util as u, sys; missing = [m for m in ('torch', 'torchvision', 'numpy', \
	'scipy', 'pandas', 'matplotlib', 'seaborn', 'sklearn', 'tqdm', 'pytest') if u.find_spec(m) is None]; \
	missing and sys.exit('$(PY): missing ' + ', '.join(missing) + ' (see requirements.txt, requirements-dev.txt)'); \
	u.find_spec('cleanlab') or print('$(PY): cleanlab missing: DR-IS/cleanlab_compare.py and its tests are skipped'); \
	import torch; print('$(PY): torch', torch.__version__, '| cuda', torch.cuda.is_available())"

# TORCH_INDEX (opt-in): install the pinned torch / torchvision from that index first, e.g. PyTorch's
# CPU-only wheels on a machine without a GPU (no CUDA libraries in .venv):
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
# Their versions are the pinned ones with a local label (2.x.y+cpu), which satisfies the pins, so the
# second pip call keeps them.  Default (empty): everything from PyPI, as requirements.txt pins it.
TORCH_INDEX ?=
TORCH_PINS = $$(grep -E '^torch(vision)?==' requirements.txt)
# The last pip call installs islab itself, editable and without dependencies (the pins are already
# there), so .venv/bin/python runs examples/ from any folder and the islab-* commands exist.
.venv/.installed: requirements.txt requirements-dev.txt pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(if $(TORCH_INDEX),$(PY) -m pip install --quiet --index-url $(TORCH_INDEX) $(TORCH_PINS))
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $@

# Real offline data: Fashion-MNIST from Debian's package (the original idx files, ~30 MB, under
# /usr/share/datasets/fashion-mnist/).  Installed with apt-get when run as root; otherwise it
# says what to run.  Scripts can also fetch it themselves with --download (network needed).
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
data:
	@if [ -f $(FASHION_MNIST) ]; then echo "fashion-mnist: present in /usr/share/datasets/fashion-mnist"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist \
	  || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist; }; \
	else echo "fashion-mnist is missing: run 'sudo apt-get install dataset-fashion-mnist', or pass --download to a script"; exit 1; fi

# The tests, by folder: tests/unit (known answers of the library's functions; no script is run end
# to end), tests/smoke (every script through its real CLI on tiny data, the bad-input table, --help)
# and tests/run (run folders, atomic writes, checksums, resume, kills, workers, launchers, Slurm,
# checkpoints, reports and the results of record).  Shared helpers: tests/helpers.py, tests/conftest.py.
#   make test        all of them (about a thousand tests, many of them scripts run end to end)
#   make test-fast   the inner loop: FAST_TESTS, the quick unit tests and every script's --help
#                    (201 tests, 37 s of CPU time measured); `make test` before a commit
#   make test-quick  six unit files of the library's core (QUICK_TESTS)
test: $(ENV_DEP)
	$(PY) -m pytest -q

# tests/unit less its six slowest files (test_api, test_claims_stats, test_models, test_nonconvex,
# test_plots, test_train: each 1-3 minutes on a busy 2-core machine), and every script's --help.
FAST_TESTS := tests/unit/test_claims_sensitivity.py tests/unit/test_convex.py tests/unit/test_data.py \
	tests/unit/test_ensemble.py tests/unit/test_exports.py tests/unit/test_features.py tests/unit/test_noise.py \
	tests/unit/test_online.py tests/unit/test_progress.py tests/unit/test_sampling.py tests/unit/test_scores.py \
	tests/unit/test_theory.py tests/smoke/test_help.py
test-fast: $(ENV_DEP)
	$(PY) -m pytest -q $(FAST_TESTS)

QUICK_TESTS := tests/unit/test_api.py tests/unit/test_sampling.py tests/unit/test_scores.py tests/unit/test_noise.py \
	tests/unit/test_theory.py tests/unit/test_online.py
test-quick: $(ENV_DEP)
	$(PY) -m pytest -q $(QUICK_TESTS)

# --launcher slurm on a real cluster: a one-node Slurm cluster on this machine (.ci/slurm-local.sh:
# installs slurm-wlm and munge with apt-get when root and missing, starts munged, slurmctld and
# slurmd, waits for the node; a second call finds it running), then tests/run/test_slurm_cluster.py
# (a tiny sweep submitted, one task requeued, the numbers of the inline run).  `make test` skips
# that file unless sinfo reaches such a cluster.  Stop it with: .ci/slurm-local.sh stop
ISLAB_SLURM_DIR ?= /var/tmp/islab-slurm
test-slurm: $(ENV_DEP)
	ISLAB_SLURM_DIR=$(ISLAB_SLURM_DIR) .ci/slurm-local.sh start
	SLURM_CONF=$(ISLAB_SLURM_DIR)/slurm.conf ISLAB_SLURM_REQUIRED=1 $(PY) -m pytest -q -rP -m slurm tests/run/test_slurm_cluster.py

# The main job of every family on the bundled data (digits / synthetic), a few minutes on two
# cores; deterministic (same numbers on every rerun), so CI checks the README tables against it.
# --resume makes a second `make demo` skip what is finished instead of refusing.
# RESULTS=DIR writes every run folder (and the proxy cache) under DIR instead of results/.
RESULTS ?= results
DEMO_ROOT := --results-root $(RESULTS)
demo: $(ENV_DEP)
	$(PY) Convex-Noise/IS-noise.py --name demo --resume $(DEMO_ROOT)
	$(PY) Convex-Noise/nonconvex_rr.py --name demo --resume $(DEMO_ROOT)
	$(PY) DR-IS/synthetic.py --name demo --resume $(DEMO_ROOT)
	$(PY) DR-IS/static.py --noise clean,targeted:0.25 --name demo --resume --quiet $(DEMO_ROOT)
	$(PY) DR-IS/online.py --noise clean,targeted:0.25 --name demo --resume --quiet $(DEMO_ROOT)
	$(PY) DR-IS/diagnostics.py --name demo --resume --quiet $(DEMO_ROOT)
	$(PY) DL-noise/is.py --resume --quiet $(DEMO_ROOT)
	$(PY) DL-correlation/IS_01_corelations.py --name demo --resume --quiet $(DEMO_ROOT)
	@echo
	@$(PY) -m reporting.summary --results-root $(RESULTS)

# The README tables (between '<!-- generated by make report ... -->' markers) from the run
# folders under RESULTS: `report` rewrites them (a table whose run folder is missing is left as it
# is, with a warning); `report-check` fails when a `make demo` table differs from what the current
# code makes (CI): exactly on the machine fingerprint the table names, within its declared
# statistical tolerance on another (reporting/report.py); `studies` makes the longer runs the READMEs cite.
# It also copies the demo figures the READMEs show into docs/figures/ (reporting/gallery.py lists them)
# and rewrites REPRODUCTION.md, its paper-vs-reproduction figures (docs/figures/paper-*.png) and
# DR-IS/README.md's memorisation block from the committed results of record (results-of-record/,
# the same text on every machine; `make reproduce` adds to them).
report: $(ENV_DEP)
	$(PY) -m reporting.report --results-root $(RESULTS)
	$(PY) benchmarks/readme.py
	$(PY) -m reporting.gallery --results-root $(RESULTS)
	$(PY) DR-IS/reproduce.py --report-only
	@echo; echo "make report: tracked files that now differ from the last commit (git diff --stat):"
	@git diff --stat -- '*.md' docs/figures benchmarks 2>/dev/null | tail -n 30 || echo "  (not a git checkout)"

report-check: $(ENV_DEP)
	$(PY) -m reporting.report --check --results-root $(RESULTS)
	$(PY) benchmarks/readme.py --check

studies: $(ENV_DEP)
	$(PY) -m reporting.report --run-missing --results-root $(RESULTS)

# The DR-IS paper's claims on Fashion-MNIST in its two regimes (and digits), each stage once per draw,
# each finished stage recorded in results-of-record/, then REPRODUCTION.md from the record.
# Resumable: a second call finishes only what is missing.  REPRO_ARGS go to every stage; the
# default runs each stage's jobs on one worker process per CPU core (or per GPU):
# benchmarks/launcher.py measured 1.66x the inline speed with 2 workers on the 2-core machine.
# E.g. REPRO_ARGS="--launcher local --device cuda", or REPRO_ARGS= (empty) for one process.
# PRESET=cifar10 (or cifar100) runs that preset's grid alone, e.g. on a Slurm cluster:
#   make reproduce PRESET=cifar10 REPRO_ARGS="--data-dir data --launcher slurm --slurm-partition gpu"
REPRO_ARGS ?= --launcher local
PRESET ?=
reproduce: $(ENV_DEP) $(if $(filter-out fashion-mnist%,$(PRESET)),,data)
ifeq ($(PRESET),)
	$(PY) DR-IS/reproduce.py --preset digits --no-report -- $(REPRO_ARGS)
	$(PY) DR-IS/reproduce.py --preset fashion-mnist-mem --no-report -- $(REPRO_ARGS)
	$(PY) DR-IS/reproduce.py --preset fashion-mnist -- $(REPRO_ARGS)
else
	$(PY) DR-IS/reproduce.py --preset $(PRESET) -- $(REPRO_ARGS)
endif

bench: $(ENV_DEP) data
	$(PY) benchmarks/convex_chains.py
	$(PY) benchmarks/pipeline.py
	$(PY) benchmarks/digits.py
	$(PY) benchmarks/train_overhead.py
	$(PY) benchmarks/ensemble.py
	$(PY) benchmarks/launcher.py

# The GPU benchmark of issue 14 (benchmarks/README.md), e.g. on a GPU node:  make bench-gpu PYTHON=python
bench-gpu: $(ENV_DEP)
	$(PY) benchmarks/gpu.py --out benchmarks/results/gpu.txt

clean-venv:
	rm -rf .venv
