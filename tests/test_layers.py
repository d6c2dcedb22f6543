"""Imports flow downward: the rules scripts/import_graph.py checks on every `protlm.X` import, lazy ones too."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "import_graph.py"
_spec = importlib.util.spec_from_file_location("import_graph", SCRIPT)
graph = sys.modules["import_graph"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(graph)

EDGES = graph.edges()
# The backbone table (issue 27) removed the last cycle (models/loading -> tasks/model -> models/longformer ->
# models/loading). None may appear.
KNOWN_CYCLES: list[list[str]] = []


def imports_of(prefix: str) -> set[str]:
    return {e.imported for e in EDGES if e.importer == prefix or e.importer.startswith(prefix + ".")}


def test_the_graph_sees_lazy_imports():
    assert any(e.lazy and e.importer == "protlm.models.loading" and e.imported == "protlm.tasks.model" for e in EDGES)


def test_analysis_and_inference_do_not_import_tasks_or_training():
    assert not {m for m in imports_of("protlm.attention") if m.startswith(("protlm.tasks", "protlm.train"))}
    assert not {m for m in imports_of("protlm.embed") if m.startswith("protlm.train")}
    assert not {m for m in imports_of("protlm.variants") if m.startswith(("protlm.tasks", "protlm.train"))}


def test_device_and_align_sit_at_the_bottom():
    assert imports_of("protlm.device") == {"protlm.errors"}
    assert imports_of("protlm.align") == {"protlm.errors"}


def test_no_import_cycles_but_the_known_one():
    assert graph.cycles([e for e in EDGES if not e.lazy]) == []
    assert [c for c in graph.cycles(EDGES) if c not in KNOWN_CYCLES] == []
