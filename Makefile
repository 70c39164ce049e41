# The README's two commands: `make demo` and `make test`. Each creates .venv when missing and installs the pins,
# so that on a fresh machine with only Python (3.10+ with venv) each one alone does everything.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.requirements-installed

# lfw-dlib: the repository's copy (data/lfw-dlib), else the workplace's read-only one beside it
LFW      ?= $(firstword $(wildcard data/lfw-dlib) ../shared/data/lfw-dlib)
# make model: train both networks on a labelled set and export one model file (CPU, minutes for lfw-dlib)
FEATURES ?= $(LFW)/features/train.bin
LABELS   ?= $(LFW)/labels/train.meta
DIM      ?= 128
MODEL    ?= artifacts/model.pt
SEED     ?= 0

.PHONY: venv test demo demo-train model pretrained plots bench-quality bench-speed bench-scale clean

venv: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

test: venv
	$(PY) -m pytest -q

# the shipped model on lfw-dlib test next to HDBSCAN, chinese whispers and kNN + Infomap (no training, ~1 min)
demo: venv
	$(PY) demo.py

# the whole method on synthetic data, training included (a few minutes)
demo-train: venv
	$(PY) demo_train.py

model: venv
	$(PY) scripts/make_model.py --features $(FEATURES) --labels $(LABELS) --dim $(DIM) --out $(MODEL) --seed $(SEED)

# the shipped model for 128-d dlib encodings: 3 seeds of `make model` on lfw-dlib train (~10 min each on one thread),
# the one with the best validation score -> pretrained/dlib128.pt + its record pretrained/dlib128.json (test F
# over the seeds, read after the choice). PRETRAINED_ARGS=--reuse keeps seed files already in artifacts/pretrained.
pretrained: venv
	$(PY) scripts/make_pretrained.py $(PRETRAINED_ARGS)

# the README's figures (docs/img/*.png) from benchmarks/results/scale*.json and the shipped model
plots: venv
	$(PY) benchmarks/plots.py

bench-quality: venv
	$(PY) benchmarks/quality.py --datasets lfw-dlib synthetic --json benchmarks/results/quality.json

# the scale ladder (benchmarks/scale.py): a model trained on the ~8K-face synthetic train file, tested at 1x, 3x, 12x
SCALE_MODEL ?= artifacts/scale/model.pt
bench-scale: venv
	$(PY) benchmarks/scale.py --write-train artifacts/scale
	test -f $(SCALE_MODEL) || $(PY) scripts/make_model.py --features artifacts/scale/train_features.npy \
		--labels artifacts/scale/train_labels.npy --out $(SCALE_MODEL) --seed $(SEED) --workdir runs/scale
	$(PY) benchmarks/scale.py --json benchmarks/results/scale.json --model "method=$(SCALE_MODEL)" \
		--model "no SDT (Top-K Jaccard, predicted k)=$(SCALE_MODEL)@combine=jaccard" \
		--model "lfw-dlib rule (edge probability x SDT, 0.5)=$(SCALE_MODEL)@jaccard=none,threshold=0.5"

bench-speed: venv
	$(PY) benchmarks/speed.py --sizes 10000 100000 --json benchmarks/results/speed.json

clean:
	rm -rf artifacts runs wandb lightning_logs .pytest_cache
