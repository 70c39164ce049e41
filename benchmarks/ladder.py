"""The scale ladder over several train files and training seeds: mean, spread and worst draw per rung.

    python benchmarks/ladder.py --json benchmarks/results/ladder.json          # make bench-scale
    python benchmarks/ladder.py --files 11:1100 --train-seeds 0 --sizes 1 12   # one draw, two rungs

One rung of :mod:`scale` is one draw: a model trained on one synthetic train file with one training seed, read on
collections of new people 1x..12x the size. A result that holds for one draw may not hold for another file of
the same law (issue 19), so this runs the ladder for every train file (generator seed ``S`` with ``N``
identities, ``--files S:N ...``) x every training seed (``--train-seeds``), on the same rungs (``--rung-identities``
x the rung size, seeds ``100 + m``: the rungs do not depend on the train file), and reports per method and rung
the mean, the standard deviation and the worst value over the draws. Baselines are tuned on each train file, so
they have one draw per file; a model has one per (file, training seed).

Steps, each skipped when its output exists (so an interrupted run resumes and a finished one only re-aggregates):
``DIR/f{S}/train_{features,labels}.npy`` (:mod:`scale` ``--write-train``); ``DIR/f{S}/model_s{T}.pt``
(``scripts/make_model.py``, ``--jobs`` at a time, each on one thread); ``DIR/f{S}/scale.json`` (:mod:`scale`
with every model of the file and ``--variant`` ablations, ``--jobs`` files at a time: each file's rungs and their
graphs are in ``DIR/f{S}/rungs``). ``--make-model-args`` go to every ``make_model.py``: by default the synthetic
recipe (:data:`SYNTHETIC_RECIPE`: relational tokens with a rank-4 feature bottleneck, README "Quality as the
collection grows"), so that one draw retrained alone is the model ``make bench-scale`` trains; ``--make-model-args
""`` trains ``make model``'s recipe (feature tokens, lfw-dlib's) instead.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FILES = ("11:1100", "101:1350", "13:1200")   # train files: generator seed : identities
SEEDS = (0, 1)                                 # training seeds per file
RUNG_IDENTITIES = 1100                         # the 1x rung (scale.py's train size)
SYNTHETIC_RECIPE = ("--extra --model.init_args.model.init_args.config.relational=true "  # make_model.py arguments
                    "--model.init_args.model.init_args.config.feature_rank=4 --trainer.enable_progress_bar=false")
METHOD = "method"                              # the row name of the models as trained


def parse_file(spec: str) -> tuple[int, int]:
    seed, _, ids = spec.partition(":")
    try:
        return int(seed), int(ids)
    except ValueError:
        raise SystemExit(f"--files: expected SEED:IDENTITIES, got {spec!r}") from None


def run_jobs(cmds: list[tuple[list[str], Path]], jobs: int) -> None:
    """Run ``(command, log file)`` pairs, ``jobs`` at a time, each process on one thread; fail on the first error."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    pending, running = list(cmds), []
    while pending or running:
        while pending and len(running) < jobs:
            cmd, log = pending.pop(0)
            log.parent.mkdir(parents=True, exist_ok=True)
            print("+ " + " ".join(cmd) + f"  > {log}", flush=True)
            running.append((subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT),
                            log))
        time.sleep(1)
        for proc, log in list(running):
            if proc.poll() is not None:
                running.remove((proc, log))
                if proc.returncode:
                    raise SystemExit(f"failed ({proc.returncode}): see {log}")


def summarise(records: list[dict]) -> list[dict]:
    """Per (method, rung): draws, mean / sd / min of F_P and F_B (and mean clusters)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["method"], r["split"]), []).append(r)
    out = []
    for (method, split), rows in groups.items():
        fp = np.array([r["pairwise_f"] for r in rows])
        fb = np.array([r["bcubed_f"] for r in rows])
        out.append({"method": method, "split": split, "draws": len(rows),
                    "pairwise_f": {"mean": float(fp.mean()), "sd": float(fp.std(ddof=1)) if len(fp) > 1 else 0.0,
                                   "min": float(fp.min())},
                    "bcubed_f": {"mean": float(fb.mean()), "sd": float(fb.std(ddof=1)) if len(fb) > 1 else 0.0,
                                 "min": float(fb.min())},
                    "n_clusters": float(np.mean([r["n_clusters"] for r in rows]))})
    return out


def markdown(summary: list[dict], rungs: list[str]) -> str:
    """Rows: methods; cells: ``F_P / F_B`` as mean ± sd (worst draw) over the draws."""
    by = {(s["method"], s["split"]): s for s in summary}
    methods = list(dict.fromkeys(s["method"] for s in summary))
    lines = ["| method (draws) | " + " | ".join(rungs) + " |", "|---" * (len(rungs) + 1) + "|"]
    for m in methods:
        cells = []
        for split in rungs:
            s = by.get((m, split))
            if s is None:
                cells.append("-")
                continue
            fp, fb = s["pairwise_f"], s["bcubed_f"]
            cells.append(f"{fp['mean']:.3f} ± {fp['sd']:.3f} / {fb['mean']:.3f} ± {fb['sd']:.3f} "
                         f"(min {fp['min']:.3f} / {fb['min']:.3f})")
        draws = max(by[m, s]["draws"] for s in rungs if (m, s) in by)
        lines.append(f"| {m} ({draws}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", nargs="+", default=list(FILES), metavar="SEED:IDENTITIES", help="train files")
    ap.add_argument("--train-seeds", nargs="+", type=int, default=list(SEEDS), help="training seeds per file")
    ap.add_argument("--sizes", nargs="+", type=int, default=[1, 3, 12], help="rungs, multiples of the 1x rung")
    ap.add_argument("--rung-identities", type=int, default=RUNG_IDENTITIES, help="identities of the 1x rung")
    ap.add_argument("--workdir", default="artifacts/ladder", help="train files, models and per-file results")
    ap.add_argument("--jobs", type=int, default=2, help="trainings, then files' ladders, at a time (each on one "
                                                         "thread)")
    ap.add_argument("--make-model-args", default=SYNTHETIC_RECIPE,
                    help="extra arguments of every scripts/make_model.py run (default: the synthetic recipe, "
                         "%(default)s)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=@field=value,...",
                    help="also read every model with these graph overrides (an ablation row), repeatable")
    ap.add_argument("--methods", nargs="*", default=["knn-infomap", "hdbscan", "topk-jaccard-oracle"],
                    help="baselines (benchmarks/scale.py --methods)")
    ap.add_argument("--json", help="write the records and the summary here")
    args = ap.parse_args(argv)

    work = Path(args.workdir)
    files = [parse_file(f) for f in args.files]
    py = sys.executable
    t0 = time.perf_counter()
    for seed, ids in files:  # 1. train files
        folder = work / f"f{seed}"
        if not (folder / "train_labels.npy").exists():
            subprocess.run([py, "benchmarks/scale.py", "--write-train", str(folder), "--train-seed", str(seed),
                            "--train-identities", str(ids)], cwd=ROOT, check=True)
    trainings = []  # 2. models
    for seed, _ in files:
        folder = work / f"f{seed}"
        for t in args.train_seeds:
            model = folder / f"model_s{t}.pt"
            if not model.exists():
                trainings.append(([py, "scripts/make_model.py", "--features", str(folder / "train_features.npy"),
                                   "--labels", str(folder / "train_labels.npy"), "--out", str(model), "--seed", str(t),
                                   "--workdir", str(Path("runs") / work.name / f"f{seed}_s{t}"),
                                   *args.make_model_args.split()], folder / f"make_model_s{t}.log"))
    run_jobs(trainings, args.jobs)
    ladders = []
    for seed, ids in files:  # 3. the ladder of each train file, every model of it in one run, --jobs files at a time
        folder = work / f"f{seed}"
        if not (folder / "scale.json").exists():
            cmd = [py, "benchmarks/scale.py", "--train-seed", str(seed), "--train-identities", str(ids),
                   "--rung-identities", str(args.rung_identities), "--sizes", *map(str, args.sizes),
                   "--json", str(folder / "scale.json"), "--methods", *args.methods, "--workdir", str(folder / "rungs")]
            for t in args.train_seeds:
                path = folder / f"model_s{t}.pt"
                cmd += ["--model", f"{METHOD}:s{t}={path}"]
                cmd += [arg for v in args.variant for arg in ("--model", f"{v.split('=', 1)[0]}:s{t}={path}"
                                                                           f"{v.split('=', 1)[1]}")]
            ladders.append((cmd, folder / "scale.log"))
    run_jobs(ladders, args.jobs)
    records = []
    for seed, ids in files:
        for r in json.loads((work / f"f{seed}" / "scale.json").read_text())["records"]:
            r["draw"] = {"file_seed": seed, "file_identities": ids}
            name, _, tseed = r["method"].partition(":")
            if tseed:
                r["method"], r["draw"]["train_seed"] = name, int(tseed[1:])
            records.append(r)
    rungs = ["train"] + [f"{m}x" for m in args.sizes]
    summary = summarise(records)
    print(markdown(summary, rungs))
    if args.json:
        out = {"protocol": {"files": args.files, "train_seeds": args.train_seeds, "rung_identities":
                            args.rung_identities, "sizes": args.sizes, "make_model_args": args.make_model_args,
                            "variants": args.variant, "generator": "facecluster/clustering/synthetic.py defaults", "k": 80},
               "seconds": round(time.perf_counter() - t0, 1), "summary": summary, "records": records}
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
