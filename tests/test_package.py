"""``pip install .``: the wheel of pyproject.toml holds the one package ``facecluster`` (every module of the
checkout's ``facecluster/``, the shipped model, no top-level ``models`` or ``clustering`` to collide with other
packages) and a ``facecluster`` console script that works outside the checkout: installed into a fresh folder and
run from another directory, it clusters 128-d faces with the packaged model."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from facecluster.clustering.synthetic import make_synthetic

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built offline (no build isolation: setuptools of requirements.txt) from a copy of the files
    pyproject.toml reads, so that the build leaves nothing in the checkout."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("facecluster", "pretrained"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                        "--disable-pip-version-check", "-q", "-w", str(out), str(src)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = out.glob("facecluster-*.whl")
    return whl


def test_the_wheel_holds_one_package_every_module_and_the_shipped_model(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"facecluster"}
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "facecluster").rglob("*.py")}
    assert modules and modules <= set(names), sorted(modules - set(names))
    assert {"facecluster/pretrained/dlib128.pt", "facecluster/pretrained/dlib128.json"} <= set(names)
    info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "facecluster = facecluster.commands:main" in zipfile.ZipFile(wheel).read(info).decode()
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "Requires-Dist: torch==2.13.0" in meta and "Provides-Extra: photos" in meta and "Provides-Extra: gpu" in meta


def test_the_installed_console_script_works_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                        "--disable-pip-version-check", "--target", str(site), str(wheel)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    script = site / "bin" / "facecluster"
    assert script.is_file()
    work = tmp_path / "elsewhere"
    work.mkdir()
    x, _ = make_synthetic(n_identities=40, dim=128, seed=5)
    np.save(work / "faces.npy", x)
    # the installed package only: not the checkout (no PYTHONPATH to it, run from another folder)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(site), OMP_NUM_THREADS="1")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=300)

    top = run("--help")
    assert top.returncode == 0 and "photos" in top.stdout and "examples:" in top.stdout
    assert len(top.stdout.splitlines()) <= 25  # short: commands and examples, not a page of prose
    helps = {name: run(name, "--help") for name in ("cluster", "photos", "export")}
    for name, h in helps.items():
        assert h.returncode == 0 and f"usage: facecluster {name}" in h.stdout and "examples:" in h.stdout, name
    assert helps["cluster"].stdout.index("examples:") < 2500  # the examples near the top, not after pages
    r = run("cluster", "--features", "faces.npy", "--out", "clusters.txt")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "shipped model" in r.stderr and str(site) in r.stderr  # the packaged copy of pretrained/dlib128.pt
    ids = (work / "clusters.txt").read_text().split()
    assert len(ids) == len(x) and len(set(ids)) > 1
    bad = run("clutser")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "unknown command" in bad.stderr
    add = run("add", "--features", "faces.npy", "--out", "c2.txt")
    assert add.returncode == 2 and "--assign-to" in add.stderr and not (work / "c2.txt").exists()
