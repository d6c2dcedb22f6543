"""Shared fixtures. Small real data lives in tests/data/; ../shared/data is optional."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
SHARED = Path(os.environ.get("PROTLM_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def swissprot50() -> Path:
    """50 real Swiss-Prot 2014 records, 60 residues per line (cut from the shared FASTA)."""
    return DATA / "swissprot_50.fasta"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data when present (optional checks), else skip."""
    if not SHARED.is_dir():
        pytest.skip("../shared/data not present")
    return SHARED


def write(path: Path, text: str, newline: str = "\n") -> Path:
    path.write_bytes(text.replace("\n", newline).encode())
    return path


def write_lmdb(path: Path, records: list[bytes]) -> Path:
    """A TAPE / PEER style LMDB: `num_examples` and records under keys '0', '1', ... (bytes as given)."""
    import pickle

    import lmdb

    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(b"num_examples", pickle.dumps(len(records)))
        for i, value in enumerate(records):
            txn.put(str(i).encode(), value)
    env.close()
    return path


def run_cli(args: list[str], capsys) -> tuple[int | None, str, str]:
    """Run `protlm ARGS` in-process: (exit code, stdout, stderr)."""
    from protlm.cli import main

    with pytest.raises(SystemExit) as e:
        main(args)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


@pytest.fixture(scope="session")
def micro_model(tmp_path_factory) -> Path:
    """A micro RoBERTa MLM (tests/data/micro.yaml, 32 hidden) saved as `protlm pretrain` saves models."""
    from protlm.models import build_mlm
    from protlm.tokenization import load_tokenizer

    out = tmp_path_factory.mktemp("micro") / "model"
    tok = load_tokenizer(DATA / "tokenizer_bpe300")
    build_mlm(str(DATA / "micro.yaml"), tok, seed=0).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out
