"""The installed project holds every module of the source tree.

The image (Dockerfile) and `pip install .` install the wheel, not the folder: a subpackage that
pyproject.toml's package list leaves out works in the tests (they import from the source tree) and
fails only in the container. So the wheel is built here, from a copy of the tree, and its file list
is compared with the source's.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "app", "coordinator")


def _source_files() -> set[str]:
    """The modules and data files a running service needs, as paths in the wheel."""
    files: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*"):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            if path.suffix in {".py", ".json"} or path.name == "py.typed":
                files.add(path.relative_to(ROOT).as_posix())
    return files


def test_the_wheel_holds_every_module_and_data_file(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    # The PEP 517 hook itself, as pip and uv call it: a venv made by uv has no pip.
    build = "import sys, setuptools.build_meta as b; b.build_wheel(sys.argv[1])"
    subprocess.run(
        [sys.executable, "-c", build, str(wheels)],
        cwd=tree,
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = wheels.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())

    expected = _source_files()
    assert "app/tracing/fast/provider.py" in expected  # the subpackages are part of the check
    missing = sorted(expected - in_wheel)
    assert not missing, f"left out of the wheel (pyproject.toml's package list): {missing}"
