# Two entry points: `make demo` and `make test`.  Both build .venv from requirements.txt when
# it is missing or older than requirements.txt.
PY := .venv/bin/python
# The digits models are tiny: one torch thread is as fast as two on an idle laptop and many
# times faster on a busy one (measured: 35 s vs 12 min for DL-correlation under load).
export OMP_NUM_THREADS ?= 1
export MPLBACKEND := Agg

.PHONY: demo test venv bench clean-venv

venv: .venv/.installed

.venv/.installed: requirements.txt
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $@

test: venv
	$(PY) -m pytest -q

demo: venv
	$(PY) Convex-Noise/IS-noise.py --name demo --resume
	@echo "results: results/Convex-Noise/demo (res.txt, results.csv, plots)"

bench: venv
	$(PY) benchmarks/convex_chains.py

clean-venv:
	rm -rf .venv
