"""Seconds per image and per face of ``cluster.py photos`` on this CPU; prints a Markdown table.

    python benchmarks/photo_speed.py [--model MODEL.pt] [--json benchmarks/results/photo_speed.json]

No photo collection ships with the project, so the folder is made from what does (scikit-image's sample images):

* ``lfw-like``: the 100 face crops of ``skimage.data.lfw_subset()`` (25 x 25 gray crops of LFW photos), scaled
  to 250 x 250 (the size of an LFW photo), one face each: blurred faces, but of LFW's people and size;
* ``samples``: scikit-image's sample photos that ship with it (astronaut, coffee, chelsea, rocket, ...; 300 to
  1411 pixels wide; only astronaut has a face);
* ``12 MP``: 10 JPEGs of 4032 x 3024 pixels (a phone photo), each a different crop of the astronaut scaled up,
  one face of about 520 pixels each.

Stages, per image (one process, the default settings: HOG, upsample 1, longest side 1600): ``decode`` (Pillow,
EXIF, RGB, scaled to 1600), ``detect`` (dlib's HOG), ``align`` (5-point landmarks and the two chips, per face) and
``embed`` (the ResNet on all faces of a group in batches of 8 images, per face). Wall and CPU seconds (this
process's; other jobs sharing the cores inflate wall time far more than CPU time). Then the command itself, end to
end, on the whole folder: a first run (everything embedded) and a rerun (everything from the cache); dlib's CNN
detector (``--detector cnn``) on the astronaut alone; and what the README says of the HOG detector
(:func:`detector_checks`).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon", "page", "text", "clock",
           "immunohistochemistry", "hubble_deep_field", "retina", "colorwheel", "grass", "brick", "gravel")


def make_folder(root: Path) -> dict[str, list[Path]]:
    """The three groups of the module docstring, written under ``root``: ``{group: [paths]}``."""
    import skimage.data as skdata
    from PIL import Image

    groups: dict[str, list[Path]] = {"lfw-like": [], "samples": [], "12 MP": []}
    for group in groups:
        (root / group).mkdir(parents=True, exist_ok=True)
    faces = skdata.lfw_subset()[:100]  # the first 100 are faces, the other 100 not
    for i, face in enumerate(faces):
        p = root / "lfw-like" / f"face_{i:03d}.jpg"
        Image.fromarray((face * 255).round().astype(np.uint8)).resize((250, 250), Image.Resampling.BICUBIC).save(
            p, quality=92)
        groups["lfw-like"].append(p)
    for name in SAMPLES:
        p = root / "samples" / f"{name}.jpg"
        Image.fromarray(getattr(skdata, name)()).convert("RGB").save(p, quality=92)
        groups["samples"].append(p)
    big = Image.fromarray(skdata.astronaut()).resize((3072, 3072), Image.Resampling.BICUBIC)
    for i in range(10):
        canvas = Image.new("RGB", (4032, 3024), (90 + 10 * i, 110, 130))
        canvas.paste(big.crop((0, 40 * i, 3072, 40 * i + 3024)), (60 * i, 0))
        p = root / "12 MP" / f"phone_{i:02d}.jpg"
        canvas.save(p, quality=90)
        groups["12 MP"].append(p)
    return groups


class Clock:
    """Wall and CPU seconds per stage, summed."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def __call__(self, stage: str, fn, *args, **kwargs):
        t, c = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        self.wall[stage] = self.wall.get(stage, 0.0) + time.perf_counter() - t
        self.cpu[stage] = self.cpu.get(stage, 0.0) + time.process_time() - c
        return out


def stage_times(paths: list[Path], encoder, settings) -> dict:
    """Per-stage seconds over a group of images (see the module docstring)."""
    from facecluster.clustering.photos import Skipped, decode_image

    clock = Clock()
    n_faces, chips = 0, []
    for i, p in enumerate(paths):
        data = p.read_bytes()
        img = clock("decode", decode_image, data, max_side=settings.max_side)
        if isinstance(img, Skipped):
            raise SystemExit(f"{p}: {img.message()}")
        found = clock("detect", encoder.detect, img.pixels, settings.upsample, settings.min_score)
        for rect, _ in found:
            chips.append(clock("align", encoder.chips, img.pixels, rect)[0])
        n_faces += len(found)
        if (i + 1) % 8 == 0 or i + 1 == len(paths):
            clock("embed", encoder.embed, chips)
            chips = []
    n = len(paths)
    row = {"images": n, "faces": n_faces}
    for stage in ("decode", "detect", "align", "embed"):
        per = n if stage in ("decode", "detect") else max(n_faces, 1)
        row[stage] = {"wall_s_per_" + ("image" if per == n else "face"): round(clock.wall.get(stage, 0.0) / per, 4),
                      "cpu_s_per_" + ("image" if per == n else "face"): round(clock.cpu.get(stage, 0.0) / per, 4)}
    row["wall_s_per_image"] = round(sum(clock.wall.values()) / n, 4)
    row["cpu_s_per_image"] = round(sum(clock.cpu.values()) / n, 4)
    return row


def cnn_times() -> dict:
    """``--detector cnn`` (dlib's MMOD CNN) on the astronaut (512 x 512) at upsample 0 and 1: wall and CPU s."""
    import skimage.data as skdata

    from facecluster.clustering.photos import FaceEncoder

    enc = FaceEncoder("cnn")
    pixels = np.ascontiguousarray(skdata.astronaut())
    out = {}
    for up in (0, 1):
        t, c = time.perf_counter(), time.process_time()
        found = enc.detect(pixels, up, 0.0)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        out[f"upsample {up}"] = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "faces": len(found)}
    return out


def detector_checks(encoder) -> dict:
    """What the README's limits say of the HOG detector, measured (default settings unless said):

    * ``formats``: the astronaut in 8 formats and modes: the scores of her face and of the other detections (the
      mission patch on her sleeve), and the distance of her face's embedding to the PNG's;
    * ``rotation``: her face's score with the picture turned by 0 to 45 degrees (None: not found);
    * ``lfw_subset``: of the 100 ``lfw_subset`` faces (scaled to 250 x 250), how many are found at ``--min-score``
      0 and how many of those score at most 0.3.
    """
    import skimage.data as skdata
    from PIL import Image

    from facecluster.clustering.photos import FaceSettings, embed_images

    a = Image.fromarray(skdata.astronaut())
    saves = {"png": ("PNG", a, {}), "jpeg": ("JPEG", a, {"quality": 92}), "webp": ("WEBP", a, {"quality": 90}),
             "gray jpeg": ("JPEG", a.convert("L"), {"quality": 92}), "cmyk jpeg": ("JPEG", a.convert("CMYK"),
                                                                                   {"quality": 92}),
             "palette png": ("PNG", a.convert("P"), {}), "gif": ("GIF", a, {}), "bmp": ("BMP", a, {})}
    blobs = {}
    for name, (fmt, im, kw) in saves.items():
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        blobs[name] = buf.getvalue()
    results = dict(zip(blobs, embed_images(encoder, list(blobs.values()), FaceSettings())))
    ref = max(results["png"].faces, key=lambda f: f.score).embedding
    formats = {}
    for name, r in results.items():
        face = max(r.faces, key=lambda f: f.score)
        formats[name] = {"face_score": round(face.score, 3),
                         "other_scores": [round(f.score, 3) for f in r.faces if f is not face],
                         "distance_to_png": round(float(np.linalg.norm(face.embedding - ref)), 4)}
    rotation = {}
    centre = np.array([222.0, 125.0]) - 256.0              # her face's centre, from the image's centre
    for angle in range(0, 50, 5):
        turned = np.ascontiguousarray(np.asarray(a.rotate(angle, resample=Image.Resampling.BICUBIC,
                                                          fillcolor=(128, 128, 128))))
        t = np.radians(angle)                              # where her face went (PIL turns counter-clockwise)
        want = 256.0 + np.array([centre[0] * np.cos(t) + centre[1] * np.sin(t),
                                 -centre[0] * np.sin(t) + centre[1] * np.cos(t)])
        hits = [s for r, s in encoder.detect(turned, 1, 0.0)
                if np.hypot((r.left() + r.right()) / 2 - want[0], (r.top() + r.bottom()) / 2 - want[1]) < 30]
        rotation[str(angle)] = round(max(hits), 3) if hits else None
    best = []
    for face in skdata.lfw_subset()[:100]:
        img = Image.fromarray((face * 255).round().astype(np.uint8)).resize((250, 250), Image.Resampling.BICUBIC)
        found = encoder.detect(np.ascontiguousarray(np.asarray(img.convert("RGB"))), 1, 0.0)
        best.append(max((s for _, s in found), default=None))
    scores = np.array([s for s in best if s is not None])
    return {"formats": formats, "rotation_degrees_to_face_score": rotation,
            "lfw_subset": {"faces": 100, "found_at_min_score_0": int(scores.size),
                           "of_those_scoring_at_most_0.3": int((scores <= 0.3).sum())}}


def end_to_end(folder: Path, model: Path, out: Path) -> list[dict]:
    """``cluster.py photos`` on the whole folder, twice: wall seconds and its printed seconds per stage."""
    runs = []
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    cmd = [sys.executable, "cluster.py", "photos", str(folder), "--out", str(out), "--model", str(model)]
    for label in ("first run", "rerun (cache)"):
        t = time.perf_counter()
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if p.returncode != 0:
            raise SystemExit(f"cluster.py photos failed: {p.stderr.strip()}")
        runs.append({"run": label, "wall_s": round(wall, 2), "stdout": p.stdout.strip().splitlines()})
    return runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a 128-d model file (default: cosine kNN + Infomap, no networks: the clustering "
                                    "takes a fraction of a second here either way)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    from facecluster.clustering.graph_config import GraphConfig
    from facecluster.clustering.photos import FaceEncoder, FaceSettings, encoder_versions
    from facecluster.clustering.pipeline import ClusteringPipeline

    load = [round(v, 2) for v in os.getloadavg()]
    settings = FaceSettings()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        groups = make_folder(tmp / "photos")
        model = Path(args.model) if args.model else tmp / "model.pt"
        if not args.model:
            ClusteringPipeline(None, GraphConfig(k=10, jaccard="none", transform="cosine", threshold=0.9)).save(
                str(model))
        t = time.perf_counter()
        encoder = FaceEncoder("hog")
        load_s = time.perf_counter() - t
        rows = {g: stage_times(paths, encoder, settings) for g, paths in groups.items()}
        cnn = cnn_times()
        checks = detector_checks(encoder)
        runs = end_to_end(tmp / "photos", model, tmp / "people")
    result = {"settings": settings.describe(), "encoder_load_s": round(load_s, 2), "groups": rows, "cnn": cnn,
              "detector_checks": checks,
              "end_to_end": runs, "model": args.model or "cosine kNN + Infomap (K 10, threshold 0.9), no networks",
              "loadavg_before": load, "loadavg_after": [round(v, 2) for v in os.getloadavg()],
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "versions": encoder_versions(),
              "date": time.strftime("%Y-%m-%d")}
    print("| group | images | faces | decode s/img | HOG s/img | align s/face | embed s/face | total s/img |")
    print("|---|---|---|---|---|---|---|---|")
    for g, r in rows.items():
        print(f"| {g} | {r['images']} | {r['faces']} | {r['decode']['wall_s_per_image']:.3f} | "
              f"{r['detect']['wall_s_per_image']:.3f} | {r['align']['wall_s_per_face']:.3f} | "
              f"{r['embed']['wall_s_per_face']:.3f} | {r['wall_s_per_image']:.3f} |")
    for run in runs:
        print(f"{run['run']}: {run['wall_s']} s: " + " / ".join(run["stdout"]))
    print("cnn detector on the astronaut (512 x 512): " + ", ".join(f"{k} {v['wall_s']} s ({v['cpu_s']} s CPU)"
                                                                  for k, v in cnn.items()))
    print("formats (her face's score, others, distance to the PNG's embedding): " + "; ".join(
        f"{k} {v['face_score']} {v['other_scores']} {v['distance_to_png']}" for k, v in checks["formats"].items()))
    print(f"turned by degrees -> her face's score: {checks['rotation_degrees_to_face_score']}")
    print(f"lfw_subset: {checks['lfw_subset']}")
    print(f"load average before {load}, after {result['loadavg_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
