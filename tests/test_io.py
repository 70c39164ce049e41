"""Tests of ``clustering.io``: feature / label loading and the one-line ``InputError`` messages."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from facecluster.clustering.io import InputError, RowFile, check_features, check_k, load_features, load_labels


def _feats(n: int = 12, d: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def _raises(path: Path, match: str, fn=load_features, *args, **kwargs) -> str:
    """Call ``fn(path, ...)``, expect an InputError matching ``match``; check it is one line naming the file."""
    with pytest.raises(InputError, match=match) as err:
        fn(path, *args, **kwargs)
    msg = str(err.value)
    assert "\n" not in msg, f"message is not one line: {msg!r}"
    assert str(path) in msg, f"message does not name the file: {msg!r}"
    return msg


# ---------------------------------------------------------------- features: good input


def test_bin_roundtrip_is_read_lazily(tmp_path: Path) -> None:
    x = _feats(10, 6)
    p = tmp_path / "part.bin"
    x.astype("<f4").tofile(p)
    got = load_features(p, dim=6)
    assert isinstance(got, RowFile)  # rows read on demand (no memory map: see test_truncated_while_read)
    assert got.shape == (10, 6) and got.dtype == np.float32 and len(got) == 10
    np.testing.assert_array_equal(np.asarray(got), x)
    np.testing.assert_array_equal(got[2:5], x[2:5])
    np.testing.assert_array_equal(got[[7, 1, 7]], x[[7, 1, 7]])
    np.testing.assert_array_equal(got[-1], x[-1])
    np.testing.assert_array_equal(got[::3, 1:], x[::3, 1:])
    # read-only: writing must fail rather than change the user's file
    with pytest.raises(TypeError):
        got[0, 0] = 1.0


def test_npy_float32_read_lazily_and_float64_converted(tmp_path: Path) -> None:
    x = _feats(9, 5)
    p32 = tmp_path / "a.npy"
    np.save(p32, x)
    got = load_features(p32)
    assert isinstance(got, RowFile)
    np.testing.assert_array_equal(np.asarray(got), x)

    p64 = tmp_path / "b.npy"
    np.save(p64, x.astype(np.float64))
    got = load_features(p64, dim=5)
    assert got.dtype == np.float32 and got.shape == (9, 5)
    np.testing.assert_allclose(np.asarray(got), x)


@pytest.mark.parametrize("key", ["features", "feats", "x", "anything"])
def test_npz_named_or_single_array(tmp_path: Path, key: str) -> None:
    x = _feats(7, 4)
    p = tmp_path / "f.npz"
    np.savez(p, **{key: x})
    np.testing.assert_array_equal(load_features(p), x)


def test_npz_prefers_features_key_among_several(tmp_path: Path) -> None:
    x = _feats(7, 4)
    p = tmp_path / "f.npz"
    np.savez(p, labels=np.arange(7), features=x)
    np.testing.assert_array_equal(load_features(p), x)


def test_npz_ambiguous_arrays(tmp_path: Path) -> None:
    p = tmp_path / "f.npz"
    np.savez(p, a=_feats(), b=_feats())
    _raises(p, "features")


# ---------------------------------------------------------------- features: bad input


def test_missing_file(tmp_path: Path) -> None:
    _raises(tmp_path / "nope.bin", "does not exist", dim=4)


def test_directory(tmp_path: Path) -> None:
    d = tmp_path / "dir.npy"
    d.mkdir()
    _raises(d, "directory")


def test_bin_without_dim(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    _feats().tofile(p)
    _raises(p, "dim")


def test_bin_size_not_multiple_of_row(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    _feats(10, 8).tofile(p)  # 320 bytes: not a multiple of 4 * 12 = 48
    msg = _raises(p, "multiple", dim=12)
    assert "320" in msg and "48" in msg


def test_bin_truncated_by_a_few_bytes(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    p.write_bytes(_feats(10, 8).tobytes()[:-2])
    _raises(p, "multiple", dim=8)


def test_empty_bin(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    p.write_bytes(b"")
    _raises(p, "empty", dim=8)


@pytest.mark.parametrize("ext", [".bin", ".npy", ".npz"])
def test_nan_inf_rows_listed(tmp_path: Path, ext: str) -> None:
    x = _feats(20, 4)
    x[3, 1] = np.nan
    x[11, 0] = np.inf
    x[17, 2] = -np.inf
    p = tmp_path / f"f{ext}"
    if ext == ".bin":
        x.tofile(p)
    elif ext == ".npy":
        np.save(p, x)
    else:
        np.savez(p, features=x)
    msg = _raises(p, "NaN or inf", dim=4)
    assert re.search(r"\b3, 11, 17\b", msg), msg
    assert "3 rows" in msg


def test_nan_rows_listed_across_chunks(tmp_path: Path) -> None:
    x = _feats(50, 4)
    x[[5, 23, 49]] = np.nan
    p = tmp_path / "f.npy"
    np.save(p, x)
    msg = _raises(p, "NaN or inf", chunk_rows=7)
    assert "5, 23, 49" in msg


def test_many_bad_rows_are_abbreviated(tmp_path: Path) -> None:
    x = _feats(40, 4)
    x[10:35] = np.nan
    p = tmp_path / "f.npy"
    np.save(p, x)
    msg = _raises(p, "NaN or inf")
    shown = msg.split("first rows:")[1]
    assert shown.startswith(" 10, 11, 12") and "25 rows" in msg
    assert "19, ..." in shown and "20" not in shown  # the first 10 rows, then an ellipsis


def test_all_zero_rows_listed(tmp_path: Path) -> None:
    x = _feats(15, 6)
    x[[0, 9]] = 0.0
    p = tmp_path / "f.bin"
    x.tofile(p)
    msg = _raises(p, "all-zero", dim=6)
    assert "0, 9" in msg and "2 all-zero rows" in msg


def test_check_false_skips_scan(tmp_path: Path) -> None:
    x = _feats(5, 3)
    x[2] = 0.0
    p = tmp_path / "f.npy"
    np.save(p, x)
    got = load_features(p, check=False)
    assert got.shape == (5, 3)


def test_check_features_direct() -> None:
    x = _feats(8, 3)
    check_features(x)  # fine
    x[6] = np.nan
    with pytest.raises(InputError, match=r"mine: NaN or inf values in 1 rows \(first rows: 6\)"):
        check_features(x, "mine")


def test_wrong_dim_npy(tmp_path: Path) -> None:
    p = tmp_path / "f.npy"
    np.save(p, _feats(5, 8))
    msg = _raises(p, "dimension", dim=16)
    assert "8" in msg and "16" in msg


def test_npy_not_2d(tmp_path: Path) -> None:
    p = tmp_path / "f.npy"
    np.save(p, np.ones(10, np.float32))
    _raises(p, "2-D")


def test_npy_empty(tmp_path: Path) -> None:
    p = tmp_path / "f.npy"
    np.save(p, np.zeros((0, 8), np.float32))
    _raises(p, "empty")


def test_npy_non_numeric(tmp_path: Path) -> None:
    p = tmp_path / "f.npy"
    np.save(p, np.array([["a", "b"], ["c", "d"]]))
    _raises(p, "numeric")


@pytest.mark.parametrize("name", ["f.csv", "f.txt", "f"])
def test_unknown_extension(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    p.write_text("1 2 3\n")
    _raises(p, "unknown feature format")


def test_corrupt_npy_garbage(tmp_path: Path) -> None:
    p = tmp_path / "f.npy"
    p.write_bytes(b"this is not a numpy file at all\n" * 4)
    _raises(p, "cannot read")


def test_corrupt_npy_truncated(tmp_path: Path) -> None:
    p = tmp_path / "f.npy"
    np.save(p, _feats(10, 8))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    _raises(p, "cannot read")


def test_corrupt_npz(tmp_path: Path) -> None:
    p = tmp_path / "f.npz"
    np.savez(p, features=_feats())
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    _raises(p, "cannot read")


def test_pickled_object_npy_refused(tmp_path: Path) -> None:
    p = tmp_path / "f.npy"
    np.save(p, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    _raises(p, "cannot read")


# ---------------------------------------------------------------- labels


@pytest.mark.parametrize("ext", [".meta", ".txt", ".npy", ".npz"])
def test_load_labels_formats(tmp_path: Path, ext: str) -> None:
    y = np.array([3, 3, 0, 7, 12, 0], dtype=np.int64)
    p = tmp_path / f"l{ext}"
    if ext in (".meta", ".txt"):
        p.write_text("\n".join(str(v) for v in y) + "\n")
    elif ext == ".npy":
        np.save(p, y.astype(np.int32))
    else:
        np.savez(p, labels=y)
    got = load_labels(p, n=6)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, y)


def test_load_labels_float_integers_accepted(tmp_path: Path) -> None:
    p = tmp_path / "l.npy"
    np.save(p, np.array([1.0, 2.0, 2.0]))
    np.testing.assert_array_equal(load_labels(p), [1, 2, 2])


def test_load_labels_count_mismatch(tmp_path: Path) -> None:
    p = tmp_path / "l.meta"
    p.write_text("1\n2\n3\n")
    msg = _raises(p, "counts must match", load_labels, n=4)
    assert "3 labels for 4 faces" in msg


def test_load_labels_missing(tmp_path: Path) -> None:
    _raises(tmp_path / "none.meta", "does not exist", load_labels)


def test_load_labels_not_integer(tmp_path: Path) -> None:
    p = tmp_path / "l.meta"
    p.write_text("1\nbob\n3\n")
    _raises(p, "cannot read labels", load_labels)
    q = tmp_path / "l.npy"
    np.save(q, np.array([1.0, 2.5]))
    _raises(q, "integers", load_labels)


def test_load_labels_unknown_extension(tmp_path: Path) -> None:
    p = tmp_path / "l.csv"
    p.write_text("1,2\n")
    _raises(p, "unknown label format", load_labels)


# ---------------------------------------------------------------- check_k


def test_check_k() -> None:
    check_k(1, 2)
    check_k(79, 80)
    with pytest.raises(InputError, match="only 80"):
        check_k(80, 80)
    with pytest.raises(InputError, match="only 5"):
        check_k(80, 5, "tiny.bin")
    with pytest.raises(InputError, match="at least 1"):
        check_k(0, 100)
    with pytest.raises(InputError, match="^tiny.bin: "):
        check_k(10, 3, "tiny.bin")


def test_atomic_files_all_or_nothing(tmp_path: Path) -> None:
    from facecluster.clustering.io import AtomicFiles, atomic_write

    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old\n")

    def fail(fh) -> None:
        fh.write(b"half")
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError), AtomicFiles([a, b]) as out:
        assert len(list(tmp_path.iterdir())) == 3  # a.txt and both temporary files, created on entering
        out.commit({str(a): lambda fh: fh.write(b"new\n"), str(b): fail})
    assert a.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    atomic_write(b, lambda fh: fh.write(b"x\n"))
    umask = os.umask(0)
    os.umask(umask)
    assert b.read_text() == "x\n" and (b.stat().st_mode & 0o777) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]
    with pytest.raises(InputError, match="does not exist"):
        atomic_write(tmp_path / "absent" / "c.txt", lambda fh: None)
