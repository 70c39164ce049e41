"""Train both networks on a labelled feature set and export one model file (``make model``).

    python scripts/make_model.py --features F --labels L [--dim D] --out MODEL.pt [--seed S]

Runs, each in its own process: stage 1, the Top-K predictor (``configs/experiment/lfw_topk.yaml``: the project's
defaults for real data); stage 2, the SDT on the frozen predictor's k (``lfw_sdt.yaml``); then ``export.py
--tune``, which picks the graph settings on the held-out validation identities of the same training set. The data
paths, ``seed_everything`` and the run folders are overridden on the command line, so the saved ``config.yaml`` of
each stage records exactly what ran. CPU; a few minutes for lfw-dlib train.

A GNN baseline (no Top-K stage; the pair classifier alone)::

    python scripts/make_model.py --features F --labels L --dim D --out LGCN.pt --no-topk \
        --sdt-config configs/experiment/lfw_lgcn.yaml          # or lfw_gat.yaml
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facecluster.clustering.pretrained import repo_relative  # noqa: E402  (data paths as the stages, run from ROOT, read them)


def run(cmd: list[str], env: dict) -> None:
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", required=True)
    ap.add_argument("--labels", required=True)
    ap.add_argument("--dim", type=int)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", help="run folder (default: runs/<name of --out>, e.g. runs/lfw_seed0)")
    ap.add_argument("--topk-config", default="configs/experiment/lfw_topk.yaml")
    ap.add_argument("--sdt-config", default="configs/experiment/lfw_sdt.yaml")
    ap.add_argument("--trainer-config", default="configs/trainer/cpu.yaml")
    ap.add_argument("--topk-from", help="reuse this TopKModule checkpoint and train the SDT stage only (ablations)")
    ap.add_argument("--no-topk", action="store_true",
                    help="no Top-K stage: the pair stage alone, e.g. a GNN baseline (--sdt-config "
                         "configs/experiment/lfw_lgcn.yaml); its run folder is <workdir>/pair")
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                    help="more CLI overrides for the SDT stage (and the Top-K stage, when it runs); a network's "
                         "fields are under its config, e.g. with --topk-from: "
                         "--model.init_args.model.init_args.config.use_topk_mask=false")
    args = ap.parse_args(argv)

    work = Path(args.workdir or f"runs/{Path(args.out).stem}")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "WANDB_MODE": os.environ.get("WANDB_MODE", "offline")}
    data = [f"--data.features={repo_relative(args.features)}", f"--data.labels={repo_relative(args.labels)}"]
    # the width of a .bin is given by --dim; .npy/.npz carry theirs (the configs' lfw-dlib value must not apply)
    data.append(f"--data.dim={args.dim}" if args.features.endswith(".bin") and args.dim else "--data.dim=null")
    t0 = time.perf_counter()
    stages = {}
    topk_ckpt = args.topk_from or str(work / "topk" / "checkpoints" / "best.ckpt")
    pair = "pair" if args.no_topk else "sdt"
    stages_to_run = (((pair, args.sdt_config),) if args.topk_from or args.no_topk
                     else (("topk", args.topk_config), ("sdt", args.sdt_config)))
    stages["topk"] = 0.0
    for stage, config in stages_to_run:
        folder = work / stage
        cmd = [sys.executable, "train.py", "fit", "--config", args.trainer_config, "--config",
               "configs/logger/csv.yaml", "--config", config, *data, f"--seed_everything={args.seed}",
               f"--trainer.default_root_dir={folder}", f"--trainer.logger.init_args.save_dir={folder}",
               f"--checkpoint.dirpath={folder}/checkpoints"]
        if stage == "sdt":  # the SDT on the Top-K predictor's k
            cmd.append(f"--model.init_args.topk_ckpt={topk_ckpt}")
        run(cmd + list(args.extra), env)
        stages[stage] = time.perf_counter() - t0
    stages.setdefault("sdt", stages.get("pair", 0.0))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "export.py", "--ckpt", str(work / pair / "checkpoints" / "best.ckpt"), "--out", args.out,
         "--tune", "--description", f"make model: {args.features} seed {args.seed}"], env)
    print(f"done in {time.perf_counter() - t0:.0f} s (Top-K {stages['topk']:.0f} s, {pair} "
          f"{stages['sdt'] - stages['topk']:.0f} s): {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
