"""What `pip install protlm` promises: ranges with floors, the user's torch kept, the CI pins apart (issue 18).

The wheel itself is checked end to end by scripts/check_wheel.py (`make test` runs it after pytest)."""

from __future__ import annotations

import importlib.util
import re
import sys
from importlib.metadata import metadata, requires
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
DATA_RELEASES = {"p-scldata"}  # pinned on purpose: one data release, so metrics compare across installs


def core_requirements() -> list[Requirement]:
    reqs = [Requirement(r) for r in requires("protlm")]
    return [r for r in reqs if not (r.marker and "extra" in str(r.marker))]


def test_every_dependency_has_a_floor_and_no_exact_pin():
    for req in core_requirements():
        ops = {s.operator for s in req.specifier}
        if req.name in DATA_RELEASES:
            assert ops == {"=="}, req
            continue
        assert ">=" in ops, f"{req} has no floor"
        assert not ops & {"==", "===", "~="}, f"{req} pins a version: users' environments would conflict"


def test_torch_is_a_range_that_keeps_the_users_torch():
    (torch,) = [r for r in core_requirements() if r.name == "torch"]
    assert {s.operator for s in torch.specifier} == {">="}, torch  # no ceiling: a newer CUDA torch is kept
    assert all(torch.specifier.contains(v) for v in ("2.6.0", "2.9.1+cu128", "2.13.0+cpu", "2.15.0", "3.0.0"))
    assert not torch.specifier.contains("2.5.1")  # below it, transformers >= 5.20 switches torch off


def test_python_versions_are_310_and_up():
    spec = SpecifierSet(metadata("protlm")["Requires-Python"])
    assert all(spec.contains(v) for v in ("3.10.0", "3.11.7", "3.12.1", "3.13.0", "3.14.0"))
    assert not spec.contains("3.9.18")


def test_the_exact_torch_pin_lives_in_the_ci_constraints_that_make_uses():
    pins = [ln for ln in (ROOT / "constraints" / "ci.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    assert pins == ["torch==2.13.0", "ruff==0.17.6"]  # torch's on-disk CPU build; ruff formats one way
    makefile = (ROOT / "Makefile").read_text()
    assert "CONSTRAINTS := constraints/ci.txt" in makefile
    assert len(re.findall(r"pip install .*-c \$\(CONSTRAINTS\) -e", makefile.replace("$(PIP)", "pip"))) == 2
    test_target = makefile.split("\ntest:")[1].split("\n\n")[0]
    assert "scripts/check_wheel.py" in test_target  # CI builds and runs the wheel
    assert "ruff format --check" in test_target  # and checks formatting, so `make lint` cannot rot


def test_optional_features_are_extras():
    extras = set(metadata("protlm").get_all("Provides-Extra"))
    assert {"tensorboard", "bench", "dev"} <= extras
    core = {r.name for r in core_requirements()}
    assert not core & {"tensorboard", "fair-esm", "pytest", "datasets"}


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_matrix_reads_locks_and_pytest_summaries(tmp_path):
    matrix = load_script("test_matrix")
    lock = tmp_path / "lock.txt"
    lock.write_text("numpy==1.26.0\ntorch==2.6.0 ; sys_platform == 'linux'\n# comment\nPyYAML==6.0\n")
    assert matrix.pins(lock) == {"numpy": "1.26.0", "torch": "2.6.0", "pyyaml": "6.0"}
    log = tmp_path / "cell.log"
    log.write_text("....F.\n=========== 1 failed, 5 passed, 2 warnings in 12.3s ===========\n")
    assert matrix.summary(log) == "1 failed, 5 passed, 2 warnings in 12.3s"
    log.write_text("error: resolution failed\n")
    assert matrix.summary(log) == "no pytest summary (see log)"
    row = {
        "python": "3.10",
        "set": "floors",
        "versions": {"torch": "2.6.0"},
        "result": "5 passed in 1s",
        "ok": True,
        "seconds": 60.0,
    }
    assert "| 3.10 | floors | 2.6.0 |" in matrix.table([row]) and "pass: 5 passed" in matrix.table([row])
