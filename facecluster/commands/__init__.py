"""The ``facecluster`` console script (``pip install .``): one command per task, each also a script of the
checkout (``python cluster.py``, ``python train.py``, ``python export.py``)."""
from __future__ import annotations

import sys

__all__ = ["main", "COMMANDS"]

# command: (module of facecluster.commands, arguments put first, what it does)
COMMANDS = {
    "cluster": ("cluster", [], "cluster face embeddings (.npy/.npz/.bin): one cluster id per face"),
    "photos": ("cluster", ["photos"], "cluster the faces in a folder of photos: people/index.html, faces.csv"),
    "add": ("cluster", [], "add new faces to an earlier result, its ids kept (cluster --assign-to)"),
    "train": ("train", [], "train the Top-K predictor or the SDT (LightningCLI: fit, validate, ...)"),
    "export": ("export", [], "a trained checkpoint to one model file (--tune picks the graph settings)"),
}

USAGE = "usage: facecluster {cluster,photos,add,train,export} ... (facecluster COMMAND --help for its options)"

HELP = f"""{USAGE}

Face clustering without a number of people: kNN graph, learned Top-K neighbours, Top-K Jaccard, SDT, Infomap.

commands:
{chr(10).join(f"  {name:8}  {what}" for name, (_, _, what) in COMMANDS.items())}

examples:
  facecluster photos ~/Pictures --out people/                 (then open people/index.html)
  facecluster cluster --features faces.npy --out clusters.txt (128-d dlib encodings: the shipped model)
  facecluster add --features new.npy --assign-to clusters.txt --previous-features faces.npy --out clusters.txt
  facecluster train fit --config configs/trainer/cpu.yaml --config configs/experiment/lfw_topk.yaml
  facecluster export --ckpt runs/lfw/sdt/checkpoints/best.ckpt --out model.pt --tune
"""


def main(argv: list[str] | None = None) -> int:
    """Run ``facecluster COMMAND ARGS`` (``argv``: default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(HELP if argv else USAGE, file=sys.stdout if argv else sys.stderr, end="" if argv else "\n")
        return 0 if argv else 2
    if argv[0] == "--version":
        from facecluster import __version__

        print(f"facecluster {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}: choose from {', '.join(COMMANDS)} (see facecluster --help)",
              file=sys.stderr)
        return 2
    if name == "add" and not any(a == "--assign-to" or a.startswith("--assign-to=") for a in rest) \
            and not {"-h", "--help"} & set(rest):
        print("error: facecluster add needs --assign-to PREVIOUS_OUT and --previous-features PREVIOUS_FEATS (the "
              "earlier result and its faces; see facecluster add --help)", file=sys.stderr)
        return 2
    module, first, _ = COMMANDS[name]
    # as the command's own script sees it: its usage lines and run records name the command as typed
    sys.argv = [f"facecluster {name}", *rest]
    if module == "cluster":
        from facecluster.commands.cluster import main as run
    elif module == "train":
        from facecluster.commands.train import main as train

        return train(None)  # LightningCLI reads sys.argv
    else:
        from facecluster.commands.export import main as run
    return run([*first, *rest])
