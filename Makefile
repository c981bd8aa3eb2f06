# Two entry points: `make demo` and `make test`.  Both build .venv from requirements-dev.txt
# (the pinned requirements.txt plus pytest) when it is missing or older than either file.
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

.PHONY: demo test venv check-env bench bench-gpu clean-venv data reproduce

venv: .venv/.installed

# The packages the code imports, checked in the chosen interpreter (one line per problem).
check-env:
	@$(PY) -c "import importlib.util as u, sys; missing = [m for m in ('torch', 'torchvision', 'numpy', \
	'scipy', 'pandas', 'matplotlib', 'seaborn', 'sklearn', 'tqdm', 'pytest') if u.find_spec(m) is None]; \
	missing and sys.exit('$(PY): missing ' + ', '.join(missing) + ' (see requirements.txt, requirements-dev.txt)'); \
	u.find_spec('cleanlab') or print('$(PY): cleanlab missing: DR-IS/cleanlab_compare.py and its tests are skipped'); \
	import torch; print('$(PY): torch', torch.__version__, '| cuda', torch.cuda.is_available())"

.venv/.installed: requirements.txt requirements-dev.txt
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
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

test: $(ENV_DEP)
	$(PY) -m pytest -q

# The main job of every family on the bundled data (digits / synthetic), a few minutes on two
# cores.  --resume makes a second `make demo` skip what is finished instead of refusing.
demo: $(ENV_DEP)
	$(PY) Convex-Noise/IS-noise.py --name demo --resume
	$(PY) DR-IS/synthetic.py --name demo --resume
	$(PY) DR-IS/static.py --noise clean,targeted:0.25 --name demo --resume --quiet
	$(PY) DR-IS/online.py --noise clean,targeted:0.25 --name demo --resume --quiet
	$(PY) DR-IS/diagnostics.py --name demo --resume --quiet
	$(PY) DL-noise/is.py --resume --quiet
	$(PY) DL-noise/plot.py results/DL-noise/r-b64
	$(PY) DL-correlation/IS_01_corelations.py --name demo --resume --quiet
	@echo
	@echo "results (each folder: res.txt, results.csv, plots, config.json, cmd.txt, env.json):"
	@echo "  results/Convex-Noise/demo        results/DR-IS/synthetic/demo"
	@echo "  results/DR-IS/static/demo        results/DR-IS/online/demo"
	@echo "  results/DR-IS/diagnostics/demo   results/DL-noise/r-b64"
	@echo "  results/DL-correlation/demo"

# The DR-IS paper's claims on Fashion-MNIST (and digits), then REPRODUCTION.md from the results.
# Resumable: a second call finishes only what is missing.  REPRO_ARGS go to every stage
# (e.g. REPRO_ARGS="--device cuda", or a launcher: REPRO_ARGS="--launcher local --workers 4").
# PRESET=cifar10 (or cifar100) runs that preset's grid alone, e.g. on a Slurm cluster:
#   make reproduce PRESET=cifar10 REPRO_ARGS="--data-dir data --launcher slurm --slurm-partition gpu"
REPRO_ARGS ?=
PRESET ?=
reproduce: $(ENV_DEP) $(if $(filter-out fashion-mnist,$(PRESET)),,data)
ifeq ($(PRESET),)
	$(PY) DR-IS/reproduce.py --preset digits --no-report -- $(REPRO_ARGS)
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
