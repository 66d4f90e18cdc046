"""The wheel a deployment installs (`pip install anjian`, not the editable install of `./run`)
holds every module, SQL migration, rule file and console file of the source tree, and its
modules import from the wheel alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("anjian", "collectors", "streams", "alarms", "command", "video", "gis", "web")
DATA = ("*.sql", "*.toml")  # migrations, warning rules


def _source_files() -> set[str]:
    """What a deployment needs of the tree: modules, migrations and rule files of the
    packages, and the console (with its vendored libraries, which are not in git)."""
    out: set[str] = set()
    for package in PACKAGES:
        for pattern in ("*.py", *DATA):
            out |= {
                p.relative_to(ROOT).as_posix()
                for p in (ROOT / package).rglob(pattern)
                if "__pycache__" not in p.parts
            }
    static = ROOT / "web" / "static"
    out |= {p.relative_to(ROOT).as_posix() for p in static.rglob("*") if p.is_file()}
    return out


def _python(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """This Python with only the unpacked wheel (and the venv's dependencies) to import from,
    run outside the checkout."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=site.parent,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )


def test_the_wheel_holds_every_module_and_data_file_and_imports_alone(tmp_path: Path) -> None:
    # Built from a copy, so that setuptools' build/ and egg-info stay out of the checkout.
    src = tmp_path / "src"
    skip = shutil.ignore_patterns(
        ".git", ".venv", "node_modules", "tests", "data", "build", "*.egg-info", "__pycache__"
    )
    shutil.copytree(ROOT, src, ignore=skip)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    assert "absent from the `packages` configuration" not in built.stderr, built.stderr
    (wheel,) = tmp_path.glob("anjian-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        z.extractall(tmp_path / "site")
    expected = _source_files()
    assert any(n.startswith("collectors/sim/") for n in expected)
    assert any(n.startswith("web/static/vendor/") for n in expected), "run ./run first (npm)"
    missing = sorted(expected - names)
    assert not missing, f"{len(missing)} files not in the wheel, e.g. {missing[:10]}"

    # Every module of the wheel imports from the wheel (not from the checkout).
    modules = sorted(
        n.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        for n in names
        if n.endswith(".py")
    )
    site = tmp_path / "site"
    code = (
        "import importlib, sys\n"
        f"site = {str(site)!r}\n"
        "bad = []\n"
        "for name in sys.argv[1:]:\n"
        "    m = importlib.import_module(name)\n"
        "    if not (m.__file__ or '').startswith(site):\n"
        "        bad.append(f'{name}: {m.__file__}')\n"
        "print('\\n'.join(bad))\n"
    )
    ran = _python(site, "-c", code, *modules)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "", f"imported from elsewhere:\n{ran.stdout}"
    assert len(modules) > 60

    # The benchmarks live in tests/, which a wheel does not carry: said so, not a bare error.
    bench = _python(site, "-m", "anjian.cli", "bench", "alarms")
    assert bench.returncode == 2
    assert "run from a source checkout" in bench.stderr, bench.stderr
