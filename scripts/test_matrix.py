"""Run the test suite on each Python x dependency set: `make test-matrix`.

    .venv/bin/python scripts/test_matrix.py [--pythons 3.10,3.11,3.12,3.13] [--sets floors,latest]

For each cell, uv resolves `pyproject.toml` with the dev extra for that Python, wheels only:
- floors: `--resolution lowest-direct`, every direct dependency at the oldest release the metadata admits
  that has a wheel for that Python (so numpy 1.26 on 3.10 but 2.1 on 3.13); what it picked is the
  constraints file `.matrix/<py>-floors.txt`;
- latest: the newest release of everything, torch included (PyPI's build, CUDA on Linux; it runs on the CPU).
Then a fresh venv gets exactly that set plus protlm (editable, no deps) and runs `pytest -q`. uv hardlinks
from its cache, so the venvs share one copy of each wheel. Logs, lock files and `results.md` go to --out.
Cells run one after another; a 2-core machine takes about 10 minutes a cell.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESOLUTION = {"floors": "lowest-direct", "latest": "highest"}
SHOWN = ("torch", "transformers", "tokenizers", "numpy", "pandas", "pyarrow", "scikit-learn", "duckdb", "peft")


def uv() -> str:
    found = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if not Path(found).exists():
        sys.exit("test_matrix: uv is needed (`.venv/bin/python -m pip install uv`; `make test-matrix` does it)")
    return found


def interpreter(py: str) -> str:
    """`python<py>` from PATH, else from pyenv's versions folder; uv would otherwise try to download one."""
    candidates = [f"python{py}"]
    pyenv_root = os.environ.get("PYENV_ROOT") or (
        shutil.which("pyenv") and subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip()
    )
    if pyenv_root:
        candidates += sorted(Path(pyenv_root).glob(f"versions/{py}.*/bin/python{py}"), reverse=True)
    for exe in candidates:
        try:
            return subprocess.run(
                [str(exe), "-c", "import sys; print(sys.executable)"], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            continue
    sys.exit(f"test_matrix: no python{py} on PATH or under pyenv (install it, or leave it out of --pythons)")


def run(cmd: list[str], log, **kw) -> int:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, **kw).returncode


def pins(lock: Path) -> dict[str, str]:
    found = {}
    for line in lock.read_text().splitlines():
        m = re.match(r"([A-Za-z0-9_.-]+)==([^\s;]+)", line)
        if m:
            found[m.group(1).lower()] = m.group(2)
    return found


def summary(log: Path) -> str:
    """pytest's last summary line, e.g. '549 passed, 1 skipped in 412.3s'."""
    lines = [ln.strip("= \n") for ln in log.read_text(errors="replace").splitlines()]
    done = [ln for ln in lines if re.search(r"\d+ (passed|failed|error)", ln) and " in " in ln]
    return done[-1] if done else "no pytest summary (see log)"


def cell(py: str, which: str, out: Path, pytest_args: list[str]) -> dict:
    name = f"{py}-{which}"
    lock, venv, log_path = out / f"{name}.txt", out / f"venv-{name}", out / f"{name}.log"
    row = {"python": py, "set": which, "versions": {}, "result": "", "ok": False, "seconds": 0.0}
    t0 = time.time()
    with open(log_path, "w") as log:
        steps = [
            [
                uv(),
                "pip",
                "compile",
                "pyproject.toml",
                "--extra",
                "dev",
                "--python-version",
                py,
                "--resolution",
                RESOLUTION[which],
                "--only-binary",
                ":all:",
                "--no-header",
                "--no-annotate",
                "-q",
                "-o",
                str(lock),
            ],
            [uv(), "venv", "-q", "--clear", "--no-python-downloads", "--python", interpreter(py), str(venv)],
            [uv(), "pip", "install", "-q", "--python", str(venv / "bin" / "python"), "-r", str(lock)],
            [uv(), "pip", "install", "-q", "--python", str(venv / "bin" / "python"), "--no-deps", "-e", "."],
        ]
        for step in steps:
            if run(step, log) != 0:
                row["result"] = f"install failed: {step[1]} {step[2]} (see {log_path.name})"
                row["seconds"] = time.time() - t0
                return row
        row["versions"] = pins(lock)
        env = dict(os.environ, PATH=f"{venv / 'bin'}:{os.environ['PATH']}", VIRTUAL_ENV=str(venv))
        code = run(
            [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args], log, env=env
        )
    row.update(result=summary(log_path), ok=code == 0, seconds=time.time() - t0)
    return row


def table(rows: list[dict]) -> str:
    head = ["Python", "set", *SHOWN, "suite", "minutes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        versions = [r["versions"].get(p, "") for p in SHOWN]
        verdict = ("pass: " if r["ok"] else "FAIL: ") + r["result"]
        lines.append("| " + " | ".join([r["python"], r["set"], *versions, verdict, f"{r['seconds'] / 60:.1f}"]) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pythons", default="3.10,3.11,3.12,3.13")
    ap.add_argument("--sets", default="floors,latest")
    ap.add_argument("--out", type=Path, default=ROOT / ".matrix")
    ap.add_argument(
        "--keep-venvs", action="store_true", help="keep each cell's venv (several GB each without uv's hardlinks)"
    )
    ap.add_argument("pytest_args", nargs="*", help="passed to pytest, e.g. -- -x tests/test_kernels.py")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for py in args.pythons.split(","):
        for which in args.sets.split(","):
            if which not in RESOLUTION:
                sys.exit(f"test_matrix: --sets: unknown set {which!r} (floors, latest)")
            row = cell(py, which, args.out, args.pytest_args)
            rows.append(row)
            print(
                f"{py} {which}: {'pass' if row['ok'] else 'FAIL'}: {row['result']} ({row['seconds'] / 60:.1f} min)",
                flush=True,
            )
            if not args.keep_venvs:
                shutil.rmtree(args.out / f"venv-{py}-{which}", ignore_errors=True)
            (args.out / "results.md").write_text(table(rows))
    print(table(rows))
    sys.exit(0 if all(r["ok"] for r in rows) else 1)


if __name__ == "__main__":
    main()
