"""``make pretrained``: the shipped model for 128-d dlib / face_recognition encodings, from lfw-dlib train only.

    python scripts/make_pretrained.py [--seeds 0 1 2] [--out pretrained/dlib128.pt] [--reuse]

1. Trains one model per seed with ``make model``'s recipe (``scripts/make_model.py``: ``configs/experiment/
   lfw_topk.yaml``, then ``lfw_sdt.yaml``, then ``export.py --tune``) on lfw-dlib train (``data/lfw-dlib``, else
   ``../shared/data/lfw-dlib``), one thread each, into ``artifacts/pretrained/seed<S>.pt`` (runs under
   ``runs/pretrained/seed<S>``). ``--reuse`` keeps a seed's file already there instead of training it again (a
   seed trains to the same weights on one thread; the record says which files were reused).
2. Chooses ONE by its validation score: the score by which ``export.py --tune`` chose its graph rule on the
   identities held out from lfw-dlib train (mean of pairwise and BCubed F, the worse of those faces alone and
   among the training faces; :func:`~commands.export.tuning_summary` of each file's meta; ties go to the lowest
   seed), and copies it to ``--out``.
3. Only then reads lfw-dlib test: every seed's pairwise / BCubed F (mean and sample standard deviation over the
   seeds: the spread of the recipe, not of the chosen file) and the chosen model's seconds per stage.
4. Writes the record beside ``--out`` (``pretrained/dlib128.json``): the command, each seed's validation and test
   numbers, the choice, the file's SHA-256 and size, the data's SHA-256, the versions.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facecluster.clustering.io import atomic_write, file_sha256  # noqa: E402
from facecluster.clustering.pretrained import default_model_path, lfw_dlib_dir, load_lfw_dlib, repo_relative  # noqa: E402


def train_seed(seed: int, folder: Path, out: Path) -> float:
    """Train and export one seed with ``scripts/make_model.py`` (a subprocess, one thread); the seconds taken."""
    cmd = [sys.executable, "scripts/make_model.py", "--features", str(folder / "features" / "train.bin"),
           "--labels", str(folder / "labels" / "train.meta"), "--dim", "128", "--out", repo_relative(out),
           "--seed", str(seed), "--workdir", f"runs/pretrained/seed{seed}"]
    print("+ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True)
    return time.perf_counter() - t0


def validation(path: Path) -> dict:
    """What ``export.py --tune`` recorded in the model file for its chosen grid point: the score it was chosen by
    (the worse of the validation identities alone and among the training faces) and F per set
    (:func:`~commands.export.tuning_summary`)."""
    from facecluster.clustering.pipeline import ClusteringPipeline
    from facecluster.commands.export import tuning_summary

    tuning = ClusteringPipeline.load(str(path), device="cpu").meta.get("tuning")
    if not tuning:
        raise SystemExit(f"error: {path}: no validation tuning in its meta (exported without --tune?)")
    t = tuning_summary(tuning)
    val = t["sets"]["val"]
    return {"score": round(t["score"], 4), "pairwise_f": round(val["pairwise_f"], 4),
            "bcubed_f": round(val["bcubed_f"], 4), "n_faces": val["n_faces"], "graph": t["graph"],
            "sets": {name: {m: round(v, 4) if isinstance(v, float) else v for m, v in st.items()}
                     for name, st in t["sets"].items()}}


def choose(val: dict[int, dict]) -> int:
    """The seed with the best validation score; ties go to the lowest seed."""
    return max(sorted(val), key=lambda s: (val[s]["score"], -s))


def test_scores(path: Path, feats: np.ndarray, labels: np.ndarray) -> dict:
    """Pairwise / BCubed F, clusters and seconds per stage of one model file on lfw-dlib test."""
    from facecluster.clustering.metrics import evaluate
    from facecluster.clustering.pipeline import ClusteringPipeline
    from facecluster.clustering.timer import Timer

    pipe = ClusteringPipeline.load(str(path), device="cpu")
    timer = Timer()
    m = evaluate(labels, pipe(feats, timer))
    return {"pairwise_f": round(m["pairwise_f"], 4), "bcubed_f": round(m["bcubed_f"], 4),
            "pairwise_p": round(m["pairwise_p"], 4), "pairwise_r": round(m["pairwise_r"], 4),
            "bcubed_p": round(m["bcubed_p"], 4), "bcubed_r": round(m["bcubed_r"], 4), "nmi": round(m["nmi"], 4),
            "n_clusters": m["n_clusters"], "seconds": {k: round(v, 3) for k, v in timer.seconds.items()}}


def spread(values: list[float]) -> dict:
    """Mean and sample standard deviation (``ddof=1``; 0 for one value)."""
    v = np.asarray(values, dtype=np.float64)
    return {"mean": round(float(v.mean()), 4), "sd": round(float(v.std(ddof=1)) if len(v) > 1 else 0.0, 4)}


def versions() -> dict:
    import faiss
    import infomap
    import torch

    return {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
            "faiss": faiss.__version__, "infomap": infomap.__version__}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default=repo_relative(default_model_path()),
                    help="the chosen model file (its record: the same name with .json)")
    ap.add_argument("--workdir", default="artifacts/pretrained", help="one model file per seed")
    ap.add_argument("--reuse", action="store_true", help="keep a seed's model file already in --workdir")
    args = ap.parse_args(argv)
    folder = lfw_dlib_dir()
    if folder is None:
        raise SystemExit("error: lfw-dlib not found (data/lfw-dlib or ../shared/data/lfw-dlib)")
    folder = Path(repo_relative(folder))
    t0 = time.perf_counter()
    seeds = {}
    for seed in args.seeds:
        path = ROOT / args.workdir / f"seed{seed}.pt"  # relative paths: to the repository root
        reused = args.reuse and path.is_file()
        seconds = None if reused else round(train_seed(seed, folder, path), 1)
        seeds[seed] = {"file": repo_relative(path), "reused": reused, "train_seconds": seconds}

    # the choice: validation identities of lfw-dlib train only
    val = {seed: validation(ROOT / s["file"]) for seed, s in seeds.items()}
    chosen = choose(val)
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / seeds[chosen]["file"], out)
    print("validation scores: " + ", ".join(f"seed {s} {v['score']:.4f}" for s, v in val.items())
          + f" -> seed {chosen}: {repo_relative(out)}", flush=True)

    # lfw-dlib test, read only now
    feats, labels = load_lfw_dlib("test", ROOT / folder)
    test = {seed: test_scores(ROOT / s["file"], feats, labels) for seed, s in seeds.items()}
    for seed in seeds:
        seeds[seed].update(validation=val[seed], test=test[seed])
    summary = {key: spread([t[key] for t in test.values()]) for key in ("pairwise_f", "bcubed_f")}
    data = {f"{sub}/{split}.{ext}": file_sha256(ROOT / folder / sub / f"{split}.{ext}")
            for split in ("train", "test") for sub, ext in (("features", "bin"), ("labels", "meta"))}
    record = {
        "command": "make pretrained (" + " ".join([Path(sys.executable).name, "scripts/make_pretrained.py",
                                                   *(argv if argv is not None else sys.argv[1:])]) + ")",
        "date": date.today().isoformat(),
        "model": repo_relative(out), "sha256": file_sha256(out), "bytes": out.stat().st_size,
        "chosen_seed": chosen,
        "choice": "best validation score (mean of pairwise and BCubed F at export.py --tune's chosen grid point, the "
                  "worse of the identities held out from lfw-dlib train alone and among the training faces); "
                  "lfw-dlib test read only after the choice",
        "recipe": "scripts/make_model.py: configs/experiment/lfw_topk.yaml, lfw_sdt.yaml, export.py --tune; "
                  "OMP_NUM_THREADS=1",
        "data": {"folder": str(folder), "sha256": data, "train": "features/train.bin (choice on its validation "
                 "identities)", "test": f"features/test.bin ({len(labels)} faces, "
                                         f"{len(np.unique(labels))} identities)"},
        "test_over_seeds": summary,
        "seeds": {str(s): v for s, v in seeds.items()},
        "versions": versions(),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    record_path = out.with_suffix(".json")
    atomic_write(record_path, lambda fh: fh.write((json.dumps(record, indent=1) + "\n").encode()))
    print("| seed | val score | test F_P | test F_B | clusters |\n|---|---|---|---|---|")
    for seed in seeds:
        mark = " (chosen)" if seed == chosen else ""
        print(f"| {seed}{mark} | {val[seed]['score']:.4f} | {test[seed]['pairwise_f']:.4f} | "
              f"{test[seed]['bcubed_f']:.4f} | {test[seed]['n_clusters']} |")
    print(f"| mean ± sd | | {summary['pairwise_f']['mean']:.4f} ± {summary['pairwise_f']['sd']:.4f} | "
          f"{summary['bcubed_f']['mean']:.4f} ± {summary['bcubed_f']['sd']:.4f} | |")
    print(f"wrote {repo_relative(out)} ({record['bytes']} bytes, SHA-256 {record['sha256'][:16]}...) and "
          f"{repo_relative(record_path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
