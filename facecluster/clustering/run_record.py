"""The run record: the JSON written beside a result (``cluster.py``'s ``OUT.json``, ``cluster.py photos``'s
``people/run.json``) that says what made it (the command, the versions, the model's SHA-256 and every setting),
and the checks an incremental run makes against an earlier record (the same model made it).

One implementation for both front ends: :func:`versions`, :func:`run_record` (the shared fields, in one order),
:func:`read_record` and :func:`check_same_model`, :func:`dumps`.
"""
from __future__ import annotations

import json
import os
import platform
import sys
from .cli import one_line

__all__ = ["versions", "run_record", "read_record", "check_same_model", "dumps", "RECORD_MAX_BYTES"]

RECORD_MAX_BYTES = 64 << 20  # a record is a few KB; a larger file is not one


def versions(**extra: str) -> dict:
    """Versions of Python and the libraries a result depends on (``extra``: more ``{name: version}``)."""
    import faiss
    import infomap
    import numpy as np
    import torch

    return {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
            "faiss": faiss.__version__, "infomap": infomap.__version__, **extra}


def run_record(pipe, *, model: str, model_sha256: str, k: int, notes: list[str], seconds: dict,
               fields: dict, extra_versions: dict | None = None) -> dict:
    """The record of one run, as a JSON-ready dict.

    Args:
        pipe: the :class:`~clustering.pipeline.ClusteringPipeline` that clustered (its graph settings, kNN,
            batch size, device and the model file's own metadata are recorded).
        model: the model file's path (recorded absolute); ``model_sha256`` its SHA-256.
        k: the neighbours per face the run used (the model's K, or fewer for a small collection).
        notes: the notes printed on stderr.
        seconds: ``{stage: seconds}``.
        fields: what the front end adds (its inputs, counts, fingerprints), placed after the model's SHA-256.
        extra_versions: more ``{library: version}`` for :func:`versions`.

    Returns:
        ``{"command", "cwd", "model", "model_sha256", **fields, "k", "seed", "graph", "knn", "batch_size",
        "row_block", "device", "versions", "notes", "seconds", "model_meta"}``.
    """
    return {"command": sys.argv, "cwd": os.getcwd(), "model": os.path.abspath(model), "model_sha256": model_sha256,
            **fields, "k": int(k), "seed": int(pipe.graph.seed), "graph": pipe.graph.to_dict(), "knn": pipe.knn.to_dict(),
            "batch_size": pipe.batch_size, "row_block": pipe.row_block, "device": pipe.device,
            "versions": versions(**(extra_versions or {})),
            "notes": notes, "seconds": seconds, "model_meta": pipe.meta}


def dumps(record: dict) -> str:
    """The record as the text written to disk (indented JSON, one trailing newline)."""
    return json.dumps(record, indent=1, default=str) + "\n"


def read_record(path: str, what: str = "previous clustering's record", writer: str = "cluster.py") -> dict:
    """Read an earlier run record: a JSON object, else :class:`~clustering.io.InputError` naming ``path``."""
    from .io import InputError, check_input_file

    check_input_file(path, what)
    try:
        if os.path.getsize(path) > RECORD_MAX_BYTES:
            raise ValueError("too large")
        with open(path, encoding="utf-8") as fh:
            record = json.load(fh)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a record written by {writer} ({one_line(exc)[:80]})") from None
    return record


def check_same_model(record: dict, model_sha256: str, *, result: str, record_path: str, model: str,
                     remedy: str = "use the model that made it") -> None:
    """The model that made an earlier result (``record["model_sha256"]``, when recorded) must be ``model``:
    else :class:`~clustering.io.InputError` naming ``result`` and ``remedy``."""
    from .io import InputError

    if record.get("model_sha256", model_sha256) != model_sha256:
        raise InputError(f"{result}: made with another model ({record_path} records model SHA-256 "
                         f"{str(record['model_sha256'])[:12]}..., {model} has {model_sha256[:12]}...); {remedy}")
