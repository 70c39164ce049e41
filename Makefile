# The README's two commands: `make demo` and `make test`. Each creates .venv when missing and installs the pins,
# so that on a fresh machine with only Python (3.10+ with venv) each one alone does everything.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.requirements-installed

# make model: train both networks on a labelled set and export one model file (CPU, minutes for lfw-dlib)
FEATURES ?= ../shared/data/lfw-dlib/features/train.bin
LABELS   ?= ../shared/data/lfw-dlib/labels/train.meta
DIM      ?= 128
MODEL    ?= artifacts/model.pt
SEED     ?= 0

.PHONY: venv test demo model bench-quality bench-speed clean

venv: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

test: venv
	$(PY) -m pytest -q

demo: venv
	$(PY) demo.py

model: venv
	$(PY) scripts/make_model.py --features $(FEATURES) --labels $(LABELS) --dim $(DIM) --out $(MODEL) --seed $(SEED)

bench-quality: venv
	$(PY) benchmarks/quality.py --datasets lfw-dlib synthetic --json benchmarks/results/quality.json

bench-speed: venv
	$(PY) benchmarks/speed.py --sizes 10000 100000 --json benchmarks/results/speed.json

clean:
	rm -rf artifacts runs wandb lightning_logs .pytest_cache
