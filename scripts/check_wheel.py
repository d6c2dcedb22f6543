"""The install check that `make test` (and so CI) runs: protlm as a user gets it, not as the checkout has it.

    .venv/bin/python scripts/check_wheel.py [--work DIR]

1. `python -m build`: the sdist, then the wheel built from that sdist (so the sdist is complete);
   the wheel must carry the package data (built-in pairs, preset configs).
2. A fresh venv gets the user's torch first (here constraints/ci.txt's CPU build), then
   `pip install protlm-*.whl` with no constraints: torch must be left as it was.
3. From a directory outside the checkout, with no PYTHONPATH: `protlm --help`, `protlm doctor`,
   `pip check`, and `protlm demo --quick`, which finds SCL2205 and the built-in pairs in the
   installed packages. Exits 1 naming the step that failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DATA = ("data", "configs")  # folders under src/protlm that pyproject's package-data ships


def fail(msg: str) -> None:
    sys.exit(f"check_wheel: {msg}")


def step(title: str, cmd: list[str], cwd: Path, env: dict | None = None) -> str:
    t0 = time.time()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    print(f"  {title}: {time.time() - t0:.0f}s", flush=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-25:])
        fail(f"{title} failed (exit {done.returncode}): {' '.join(cmd)}\n{tail}")
    return done.stdout + done.stderr


def check_wheel_contents(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = [
        f"protlm/{p.relative_to(ROOT / 'src' / 'protlm').as_posix()}"
        for folder in PACKAGE_DATA
        for p in sorted((ROOT / "src" / "protlm" / folder).iterdir())
        if p.is_file() and p.suffix != ".py" and not p.name.startswith(".")
    ]
    missing = [n for n in expected if n not in names]
    if not expected or missing:
        fail(f"{wheel.name} lacks package data: {missing or 'nothing found to check'}")
    print(f"  wheel carries {len(expected)} package-data files", flush=True)


def torch_stamp(python: Path) -> str:
    """torch's version and where/when its files were written: changes if pip reinstalls it."""
    code = "import os, torch; print(torch.__version__, torch.__file__, os.stat(torch.__file__).st_mtime_ns)"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def footprint(python: Path) -> str:
    """How many distributions the install holds and their size on disk, torch (the user's) left out."""
    code = (
        "import importlib.metadata as m, os\n"
        "dists = [d for d in m.distributions() if d.metadata['Name'].lower() not in ('torch', 'pip')]\n"
        "size = sum(os.path.getsize(f.locate()) for d in dists for f in (d.files or []) if os.path.isfile(f.locate()))\n"
        "print(f'{len(dists)} distributions, {size / 1e6:,.0f} MB besides torch')"
    )
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, help="keep the build, venv and demo run here (default: a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="protlm-wheel-") as tmp:
        work = (args.work or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        dist, venv, outside = work / "dist", work / "venv", work / "elsewhere"
        outside.mkdir(exist_ok=True)
        print("check_wheel:", flush=True)
        step("build sdist + wheel", [sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], ROOT)
        wheels, sdists = sorted(dist.glob("protlm-*.whl")), sorted(dist.glob("protlm-*.tar.gz"))
        if len(wheels) != 1 or len(sdists) != 1:
            fail(f"expected one wheel and one sdist in {dist}, found {[p.name for p in dist.iterdir()]}")
        check_wheel_contents(wheels[0])

        base = getattr(sys, "_base_executable", sys.executable)
        step("fresh venv", [base, "-m", "venv", "--clear", str(venv)], outside)
        python, pip = (
            venv / "bin" / "python",
            [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"],
        )
        step("the user's torch", [*pip, "install", "-q", "-c", str(ROOT / "constraints" / "ci.txt"), "torch"], outside)
        before = torch_stamp(python)
        log = step("pip install the wheel", [*pip, "install", str(wheels[0])], outside)
        if torch_stamp(python) != before or "Uninstalling torch" in log:
            fail(f"installing the wheel replaced torch: {before} -> {torch_stamp(python)}")
        print(f"  torch kept: {before.split()[0]}; the install: {footprint(python)}", flush=True)
        step("pip check", [*pip, "check"], outside)

        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        where = step(
            "import from site-packages", [str(python), "-c", "import protlm; print(protlm.__file__)"], outside, env
        ).strip()
        if not Path(where).is_relative_to(venv) or Path(where).is_relative_to(ROOT):
            fail(f"protlm was imported from {where}, not from the fresh venv")
        protlm = str(venv / "bin" / "protlm")
        step("protlm --help", [protlm, "--help"], outside, env)
        step("protlm doctor", [protlm, "doctor"], outside, env)
        out = step("protlm demo --quick", [protlm, "demo", "--quick", "--out", str(work / "demo")], outside, env)
        if "SCL2205 heldout" not in out or "pre-trained" not in out:
            fail(f"protlm demo --quick printed no results table:\n{out[-2000:]}")
        print("check_wheel: ok", flush=True)


if __name__ == "__main__":
    main()
