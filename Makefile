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

# the scale ladder over 3 synthetic train files x 2 training seeds (benchmarks/ladder.py; issue 19): each file's
# train set, 2 models each (scripts/make_model.py with the synthetic recipe, 2 at a time on one thread each),
# every rung (1x, 3x, 12x of 1,100 identities) with the baselines; mean, sd and worst draw per rung. Resumes: a step
# whose output exists in artifacts/ladder is skipped. Several hours of CPU on 2 cores.
# The synthetic recipe (SYNTHETIC_RECIPE in benchmarks/ladder.py, the default of its --make-model-args): relational
# tokens (rows of the neighbourhood's similarity matrix) with a rank-4 feature bottleneck; lfw-dlib keeps feature
# tokens (its validation identities prefer them; README "Quality as the collection grows").
bench-scale: venv
	$(PY) benchmarks/ladder.py --files 11:1100 101:1350 13:1200 --train-seeds 0 1 \
		--variant "no SDT=@combine=jaccard" \
		--workdir artifacts/ladder --json benchmarks/results/ladder.json

bench-speed: venv
	$(PY) benchmarks/speed.py --sizes 10000 100000 --json benchmarks/results/speed.json

clean:
	rm -rf artifacts runs wandb lightning_logs .pytest_cache
