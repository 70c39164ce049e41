"""Merge the ladder runs of 2026-12-04 into benchmarks/results/ladder.json (issue 19):
scale_oldrule.json (models exported by the old --tune rule, + baselines, + oracle) and scale_best.json (the same
models with the graph rule the current --tune keeps on every draw: Top-K Jaccard x SDT at 0.05)."""
import json, sys
from pathlib import Path
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from ladder import summarise, markdown
FILES = [(11, 1100), (101, 1350), (13, 1200)]
records = []
for seed, ids in FILES:
    old = json.load(open(ROOT / f"artifacts/ladder/f{seed}/scale_oldrule.json"))["records"]
    new = json.load(open(ROOT / f"artifacts/ladder/f{seed}/scale_best.json"))["records"]
    for r, tag in [(r, "old") for r in old] + [(r, "new") for r in new]:
        if "pairwise_f" not in r:
            continue
        r = dict(r)
        name, _, t = r["method"].partition(":")
        r["draw"] = {"file_seed": seed, "file_identities": ids}
        if t:
            r["draw"]["train_seed"] = int(t[1:])
            if tag == "old":
                if name != "method":
                    continue  # the no-SDT variant: equal to the old rule's choice on 5 of 6 draws
                name = "old --tune rule (simplest within 0.005)"
            else:
                name = "method (current --tune rule: Top-K Jaccard x SDT, 0.05)"
        r["method"] = name
        records.append(r)
summary = summarise(records)
rungs = ["train", "1x", "3x", "12x"]
print(markdown(summary, rungs))
out = {"protocol": {"files": [f"{s}:{n}" for s, n in FILES], "train_seeds": [0, 1], "rung_identities": 1100,
                    "sizes": [1, 3, 12], "recipe": "scripts/make_model.py + relational=true, feature_rank=4",
                    "generator": "facecluster/clustering/synthetic.py defaults", "k": 80,
                    "runs": "artifacts/ladder/f*/scale_oldrule.json (make bench-scale's ladder.py, models exported "
                            "with the simplest-rule --tune) and scale_best.json (scale.py on the same models with "
                            "@combine=product,threshold=0.05, the choice of the current --tune on every draw, read "
                            "from each model's recorded grid); baselines tuned per train file",
                    "date": "2026-12-04"},
       "summary": summary, "records": records}
json.dump(out, open(ROOT / "benchmarks/results/ladder.json", "w"), indent=1)
