"""Corpora: SCL2205 splits as shipped, file corpora, and the default pre-training corpus."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from protlm.corpora import load_scl2205, open_corpus
from protlm.errors import InputError, ProtlmError
from protlm.io import SkipReport


def test_scl2205_splits_index_into_entries_as_shipped():
    scl = load_scl2205()
    data = resources.files("scldata") / "data"
    raw = json.loads((data / "splits.json").read_text())
    entries = json.loads((data / "entries.json").read_text())
    assert len(scl.entries) == 19_074 and len(scl.label_names) == 13
    sizes = {name: len(scl.split(name)) for name in ("train", "eval", "heldout")}
    assert sizes == {"train": 15_183, "eval": 1_260, "heldout": 2_631}
    assert [e.id for e in scl.split("heldout")] == [entries[str(i)] for i in raw["tst"]]
    assert [e.id for e in scl.split("cv2-test")] == [entries[str(i)] for i in raw["cv"]["f2"]["tst"]]
    ids = {name: {e.id for e in scl.split(name)} for name in ("train", "eval", "heldout")}
    assert not (ids["train"] & ids["heldout"]) and not (ids["eval"] & ids["heldout"])
    with pytest.raises(ProtlmError, match="unknown SCL2205 split 'test'"):
        scl.split("test")


def test_default_corpus_is_train_plus_eval_never_heldout():
    report = SkipReport("scl2205")
    ids = {r.id for r in open_corpus().records(report=report)}
    heldout = {e.id for e in load_scl2205().split("heldout")}
    assert len(ids) == 15_183 + 1_260 and not ids & heldout
    assert report.n_read == report.n_used == 16_443


def test_file_corpus(swissprot50, tmp_path):
    assert len(list(open_corpus(str(swissprot50)).sequences())) == 50
    with pytest.raises(InputError, match="file not found"):
        open_corpus(str(tmp_path / "nope.fa")).sequences()
