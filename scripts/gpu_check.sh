#!/usr/bin/env bash
# GPU checks for a machine with a CUDA GPU (issue 9): the gpu-marked tests, then N synthetic faces (default
# 584,013 = MS1M part1_test, d = 256) through cluster.py end to end on the GPU, timed per stage.
#   scripts/gpu_check.sh            # with .venv/bin/python if present, else `python` (e.g. conda env of environment.yml)
#   PYTHON=... N=... MODEL=artifacts/model.pt scripts/gpu_check.sh   # MODEL: a d = 256 model (default: untrained
#                                                                    # networks of the default size, for timing only)
#   DEVICE=cpu N=5000 scripts/gpu_check.sh   # a dry run of the script on a CPU machine (no gpu tests)
# Then, with RUNG (e.g. RUNG=120: the scale ladder's ~976K faces, benchmarks/scale.py), that rung end to end in its
# own process on the device (networks on CUDA, faiss on every GPU it sees, sharded), seconds and peak memory per
# stage, and cosine kNN + Infomap on the same graph; MODEL (default artifacts/scale/model.pt, `make bench-scale`'s)
# must be a 256-d model:
#   RUNG=120 scripts/gpu_check.sh                       # on a GPU machine: the 1M rung, JSON in $OUT (default
#                                                        # benchmarks/results/scale_120x_gpu.json)
#   DEVICE=cpu N=5000 RUNG=1 OUT=/tmp/r.json scripts/gpu_check.sh   # its dry run on a CPU (the 1x rung)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
N=${N:-584013}
DEVICE=${DEVICE:-cuda}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH=. PYTHONWARNINGS=ignore

if [ "$DEVICE" != cpu ]; then
    "$PYTHON" -c "import faiss, torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'; \
print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(), '| faiss', \
faiss.__version__, 'GPUs seen by faiss:', faiss.get_num_gpus() if hasattr(faiss, 'StandardGpuResources') else 0)"
    "$PYTHON" -m pytest -q -m gpu -p no:cacheprovider
fi

"$PYTHON" - "$WORK" "$N" "${MODEL:-}" <<'PY'
import sys, time
import numpy as np, torch
from clustering.graph_config import GraphConfig
from clustering.pipeline import ClusteringPipeline
from clustering.preprocess import fit_mean
from clustering.synthetic import make_synthetic
from models import SDT, SDTConfig, TopKConfig, TopKPredictor
work, n, model = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t = time.perf_counter()
x, y = make_synthetic(n_identities=n // 5 + 1, dim=256, seed=2)  # ~7.4 faces per identity: more than n
x, y = x[:n], y[:n]
np.save(f"{work}/x.npy", x)
np.save(f"{work}/y.npy", y)
if not model:
    torch.manual_seed(0)
    ClusteringPipeline(fit_mean(x[:100_000]), GraphConfig(k=80), TopKPredictor(TopKConfig(feat_dim=256)),
                       SDT(SDTConfig(feat_dim=256, window=32)), device="cpu").save(f"{work}/model.pt")
print(f"{len(x)} synthetic faces ({len(np.unique(y))} identities) in {time.perf_counter() - t:.0f} s")
PY
MODEL_FILE=${MODEL:-$WORK/model.pt}
start=$(date +%s%N)
"$PYTHON" cluster.py --model "$MODEL_FILE" --features "$WORK/x.npy" --labels "$WORK/y.npy" --out "$WORK/c.txt" \
    --device "$DEVICE"
echo "end to end (cluster.py on $N faces, --device $DEVICE): $(( ($(date +%s%N) - start) / 1000000 )) ms"
"$PYTHON" -c "import json; s = json.load(open('$WORK/c.txt.json')); print('device', s['device'], '| kNN', s['knn'], \
'| notes', s['notes'])"

if [ -n "${RUNG:-}" ]; then
    RUNG_MODEL=${MODEL:-artifacts/scale/model.pt}
    OUT=${OUT:-benchmarks/results/scale_${RUNG}x_gpu.json}
    [ -f "$RUNG_MODEL" ] || { echo "RUNG: $RUNG_MODEL is missing (make bench-scale trains it)"; exit 1; }
    start=$(date +%s%N)
    "$PYTHON" benchmarks/scale.py --sizes "$RUNG" --methods knn-infomap --model "method=$RUNG_MODEL" \
        --device "$DEVICE" --workdir "${WORKDIR:-artifacts/scale/rungs}" --json "$OUT" --progress
    echo "scale.py --sizes $RUNG on --device $DEVICE: $(( ($(date +%s%N) - start) / 1000000 )) ms (JSON: $OUT)"
fi
