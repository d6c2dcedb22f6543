"""Every command that reads user files x every malformed input: exit 2 with one line naming the file (and the
line or record where there is one), never a traceback; or, for input that is merely untidy, read whole with
the skips counted.

The inputs are generated here. `MATRIX` below is what the README's reliability figure counts.
"""

from __future__ import annotations

import gzip
import pickle
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import DATA, run_cli, write_lmdb

TOK = DATA / "tokenizer_bpe300"
LOC = DATA / "protlm_0.1" / "localization"  # a fine-tuned model (localization head)
MLM = DATA / "protlm_0.1" / "mlm"
PDB = DATA / "structures" / "2hhb_ab.pdb.gz"
CIF = DATA / "structures" / "2hhb_ab.cif.gz"
GOOD = ">P1 Nucleus-S\nMKTAYIAKQRQISFVKSHFSRQ\n>P2 Cytoplasm-M\nMSVLTPLLLRGLTGSARRLPVPRAKIH\n"


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


# --- malformed FASTA: name -> (bytes, what the one-line message must say) ---------------------------------------
FASTA_ERRORS = {
    "truncated-gzip": (half(gzip.compress(GOOD.encode() * 50, mtime=0)), "truncated or corrupt gzip"),
    "binary": (bytes(range(256)) * 4, "not UTF-8"),
    "invalid-residue": (b">P1 Nucleus-S\nMKTAYIAK\n>P2 Nucleus-S\nMK#L\n", "line 3 (record P2): invalid residue '#'"),
    "data-before-header": (b"MKTAYIAK\n>P1 Nucleus-S\nMKT\n", "line 1: sequence data before the first '>'"),
    "empty-file": (b"", "no records (an empty file?)"),
    "nucleotide-strict": (b">N1 Nucleus-S\n" + b"ACGTTGCAACGTAGCTAGCTAGGATCCA\n", "line 1 (record N1): looks like"),
}
# untidy but valid: read whole, skips counted
FASTA_UNTIDY = {
    "empty-record": (b">E0 Nucleus-S\n" + GOOD.encode(), "3 records read, 2 used, 1 skipped (1 empty sequence)"),
    "duplicate-ids": (GOOD.encode() + b">P1 Nucleus-S\nMKV\n", "3 records read, 2 used, 1 skipped (1 duplicate id)"),
    "crlf-lowercase-multiline": (
        GOOD.lower().replace("\n", "\r\n").replace("qrq", "qrq\r\n").encode(),
        "2 records read, 2 used, 0 skipped",
    ),
    "no-final-newline": (GOOD.rstrip("\n").encode(), "2 records read, 2 used, 0 skipped"),
    "nucleotide": (
        b">N1 Nucleus-S\nACGTTGCAACGTAGCTAGCTAGGATCCA\n" + GOOD.encode(),
        "3 used, 0 skipped; warning: 1 record looks like a nucleotide sequence (only A, C, G, T, U, N; "
        "first: line 1 (record N1)); --strict rejects them",
    ),
}


def fasta_commands(tmp: Path, micro: Path) -> dict[str, callable]:
    """Each command that reads a FASTA, as `path -> argv`."""
    out = tmp / "out"
    pairs = write(tmp / "pairs.tsv", "id_a\tid_b\nP1\tP2\n")
    return {
        "tokenizer train": lambda p: ["tokenizer", "train", "--corpus", p, "--kind", "char", "--out", out / "t"],
        "tokenizer stats": lambda p: ["tokenizer", "stats", "--tokenizer", TOK, "--corpus", p],
        "corpus prepare": lambda p: ["corpus", "prepare", p, "--tokenizer", TOK, "--out", out / "s"],
        "pretrain --corpus": lambda p: pretrain_args(tmp, "--corpus", p),
        "pretrain --assemblies": lambda p: pretrain_args(tmp, "--no-corpus", "--assemblies", p),
        "finetune": lambda p: [
            "finetune",
            "--task",
            "localization",
            "--data",
            p,
            "--model",
            micro,
            "--out",
            out / "f",
            "--max-steps",
            1,
            "--cache-dir",
            tmp / "cache",
        ],  # fmt: skip
        "evaluate": lambda p: ["evaluate", "--model", LOC, "--data", p, "--out", out / "ev"],
        "embed": lambda p: ["embed", p, "--model", micro, "--out", out / "e.parquet"],
        "predict": lambda p: ["predict", p, "--model", LOC, "--out", out / "p.tsv"],
        "attention export --fasta": lambda p: [
            "attention",
            "export",
            "--fasta",
            p,
            "--model",
            micro,
            "--out",
            out / "a.npz",
        ],  # fmt: skip
        "attention export --pair": lambda p: [
            "attention",
            "export",
            "--pair",
            p,
            p,
            "--model",
            micro,
            "--out",
            out / "a.npz",
        ],  # fmt: skip
        "pairs build": lambda p: ["pairs", "build", "--pairs", pairs, "--sequences", p, "--out", out / "pb"],
        "pairs build-string": lambda p: [
            "pairs",
            "build-string",
            "--links",
            DATA / "string_links.txt.gz",
            "--sequences",
            p,
            "--out",
            out / "ps",
        ],  # fmt: skip
    }


def pretrain_args(tmp: Path, *extra) -> list:
    return ["pretrain", "--out", tmp / "out" / "r", "--tokenizer", TOK, "--model", DATA / "micro.yaml",
            "--max-steps", 1, "--tokens-per-batch", 512, "--max-tokens", 64, "--cache-dir", tmp / "cache",
            "--precision", "fp32", *extra]  # fmt: skip


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> Path:
    """A micro MLM (protlm 0.1's, committed) copied so that commands may write beside it."""
    d = tmp_path_factory.mktemp("m") / "mlm"
    shutil.copytree(MLM, d)
    return d


def assert_one_line_error(code, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [x for x in err.splitlines() if x.startswith("protlm: error:")]
    assert len(lines) == 1, err
    for f in fragments:
        assert f in lines[0], (f, err)


def run(argv: list, capsys, monkeypatch=None) -> tuple[int, str]:
    code, _, err = run_cli([str(a) for a in argv], capsys)
    return (0 if code is None else code), err


FASTA_COMMANDS = [
    "tokenizer train", "tokenizer stats", "corpus prepare", "pretrain --corpus", "pretrain --assemblies", "finetune",
    "evaluate", "embed", "predict", "attention export --fasta", "attention export --pair", "pairs build", "pairs build-string",
]  # fmt: skip


@pytest.mark.parametrize(
    "command, case",
    [(c, k) for c in FASTA_COMMANDS for k in sorted(FASTA_ERRORS) if (c, k) != ("evaluate", "nucleotide-strict")],
)  # evaluate reads --data under the policy the model was trained with: no --strict of its own
def test_malformed_fasta(command, case, tmp_path, micro, capsys):
    data, message = FASTA_ERRORS[case]
    name = f"in-{case}.fa" + (".gz" if case == "truncated-gzip" else "")
    path = write(tmp_path / name, data)
    argv = fasta_commands(tmp_path, micro)[command](path)
    if case == "nucleotide-strict":
        argv.append("--strict")
    code, err = run(argv, capsys)
    assert_one_line_error(code, err, str(path), message)
    assert not finished_outputs(tmp_path / "out"), "an output was written for a failed run"


# What a finished command leaves (a failed one leaves none of them; resume state like prepare.json may stay).
FINAL = {"tokenizer.json", "store.json", "e.parquet", "p.tsv", "a.npz", "pairs.parquet", "pairs-0.parquet",
         "report.json", "summary.json", "model.safetensors", "pairs.json", "assemblies.json"}  # fmt: skip


def finished_outputs(out: Path) -> list[str]:
    return [str(p) for p in out.rglob("*") if p.name in FINAL] if out.exists() else []


UNTIDY_COMMANDS = ["tokenizer stats", "corpus prepare", "embed", "predict", "attention export --fasta"]


@pytest.mark.parametrize("case", sorted(FASTA_UNTIDY))
@pytest.mark.parametrize("command", UNTIDY_COMMANDS)
def test_untidy_fasta_is_read_whole_with_counted_skips(command, case, tmp_path, micro, capsys):
    data, message = FASTA_UNTIDY[case]
    path = write(tmp_path / f"in-{case}.fa", data)
    code, err = run(fasta_commands(tmp_path, micro)[command](path), capsys)
    assert code == 0, err
    summary = next(x for x in err.splitlines() if "records read" in x)
    assert summary.startswith(str(path)) and message in summary, summary


# --- sequence tables (TSV / CSV / Parquet) --------------------------------------------------------------------
def parquet(path: Path, **columns) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def _tables(tmp: Path) -> dict[str, tuple[Path, str]]:
    return {
        "tsv-missing-column": (write(tmp / "a.tsv", "id\tseq\nP1\tMKT\n"), "line 1: missing column(s) sequence"),
        "tsv-field-count": (write(tmp / "b.tsv", "id\tsequence\nP1\tMKT\tx\n"), "line 2: expected 2 fields, found 3"),
        "tsv-not-utf8": (write(tmp / "c.tsv", b"id\tsequence\nP1\tMK\xff\n"), "not UTF-8"),
        "csv-overlong-field": (write(tmp / "d.csv", "id,sequence\nP1," + "M" * 200_000 + "\n"), "field larger"),
        "parquet-missing-column": (parquet(tmp / "e.parquet", id=["P1"], seq=["MKT"]), "missing column(s) sequence"),
        "parquet-wrong-type": (parquet(tmp / "f.parquet", id=["P1"], sequence=[12]), "line 2 (record P1): invalid"),
        "parquet-corrupt": (write(tmp / "g.parquet", b"PAR1" + bytes(100)), "not a readable Parquet file"),
    }


TABLE_CASES = ["tsv-missing-column", "tsv-field-count", "tsv-not-utf8", "csv-overlong-field", "parquet-missing-column",
               "parquet-wrong-type", "parquet-corrupt"]  # fmt: skip
TABLE_COMMANDS = ["tokenizer stats", "corpus prepare", "pretrain --corpus", "embed", "predict"]


@pytest.mark.parametrize("case", TABLE_CASES)
@pytest.mark.parametrize("command", TABLE_COMMANDS)
def test_malformed_table(command, case, tmp_path, micro, capsys):
    path, message = _tables(tmp_path)[case]
    code, err = run(fasta_commands(tmp_path, micro)[command](path), capsys)
    assert_one_line_error(code, err, str(path), message)
    assert not finished_outputs(tmp_path / "out")


# --- pair tables ----------------------------------------------------------------------------------------------
A, B = "MKTAYIAKQRQISFVKSHFSRQ", "MSVLTPLLLRGLTGSARRLPVPRAKIH"
PAIR_HEADER = "id_a\tid_b\tseq_a\tseq_b\tlabel\tsplit\n"
PAIR_ERRORS = {
    "label-2": (
        PAIR_HEADER + f"P1\tP2\t{A}\t{B}\t2\ttrain\n",
        "line 2 (record P1|P2): label must be 0 or 1, found '2'",
    ),
    "label-yes": (PAIR_HEADER + f"P1\tP2\t{A}\t{B}\tyes\ttrain\n", "label must be 0 or 1, found 'yes'"),
    "split-unknown": (PAIR_HEADER + f"P1\tP2\t{A}\t{B}\t1\tvalidation\n", "split must be one of"),
    "missing-seq-b": ("id_a\tid_b\tseq_a\nP1\tP2\tMKT\n", "missing column(s) seq_b"),
    "invalid-residue": (PAIR_HEADER + f"P1\tP2\t{A}\tMK#\t1\ttrain\n", "line 2 (record P1|P2): invalid residue '#'"),
    "same-id-two-sequences": (
        PAIR_HEADER + f"P1\tP2\t{A}\t{B}\t1\ttrain\nP1\tP3\t{B}\t{A}\t1\ttrain\n",
        "protein 'P1' has another sequence",
    ),  # fmt: skip
}
PAIR_COMMANDS = {
    "pretrain --pairs": lambda tmp, p: pretrain_args(tmp, "--no-corpus", "--pairs", p),
    "pairs prepare": lambda tmp, p: ["pairs", "prepare", p, "--tokenizer", TOK, "--out", tmp / "out" / "ps"],
}


@pytest.mark.parametrize("case", sorted(PAIR_ERRORS))
@pytest.mark.parametrize("command", sorted(PAIR_COMMANDS))
def test_malformed_pair_table(command, case, tmp_path, capsys):
    text, message = PAIR_ERRORS[case]
    path = write(tmp_path / "pairs.tsv", text)
    code, err = run(PAIR_COMMANDS[command](tmp_path, path), capsys)
    assert_one_line_error(code, err, str(path), message)
    assert not finished_outputs(tmp_path / "out")


def test_pair_table_skips_are_counted(tmp_path, capsys):
    """Self-pairs, repeated pairs and empty sequences are skipped and counted; ids without a sequence too."""
    rows = [f"P1\tP2\t{A}\t{B}\t1\ttrain", f"P1\tP1\t{A}\t{A}\t1\ttrain", f"P2\tP1\t{B}\t{A}\t1\ttrain",
            f"P3\tP4\t\t{B}\t0\ttrain", f"P5\tP6\t{A}\t{B}\t0\tdev"]  # fmt: skip
    path = write(tmp_path / "pairs.tsv", PAIR_HEADER + "\n".join(rows) + "\n")
    code, err = run(PAIR_COMMANDS["pairs prepare"](tmp_path, path), capsys)
    assert code == 0, err
    assert f"{path}: 5 records read, 2 used, 3 skipped" in err
    assert all(w in err for w in ("1 self-pair", "1 duplicate pair", "1 empty sequence")), err
    ids = write(tmp_path / "ids.tsv", "id_a\tid_b\nP1\tP2\nP1\tQ9\n")
    seqs = write(tmp_path / "s.fa", f">P1\n{A}\n>P2\n{B}\n")
    code, err = run(["pairs", "build", "--pairs", ids, "--sequences", seqs, "--out", tmp_path / "pb",
                     "--split", "random"], capsys)  # fmt: skip
    assert code == 0, err
    assert "2 records read, 1 used, 1 skipped (1 id without a sequence in s.fa)" in err


# --- structures -----------------------------------------------------------------------------------------------
def _atom(serial: int, name: str, res: str, chain: str, num: int, xyz: tuple[float, float, float]) -> str:
    x, y, z = (f"{v:8.3f}" if v == v else "     nan" for v in xyz)
    return f"ATOM  {serial:5d} {name:<4} {res:3} {chain}{num:4d}    {x}{y}{z}  1.00  0.00           {name[0]}"


def _peptide(chain: str, n: int, nan_at: int | None = None) -> list[str]:
    lines = []
    for k in range(n):
        for j, atom in enumerate(("N", "CA", "C", "O")):
            xyz = (k * 3.8 + j * 0.5, 0.0, float(ord(chain)))
            lines.append(_atom(len(lines) + 1, atom, "ALA", chain, k + 1, (float("nan"),) * 3 if k == nan_at else xyz))
    return lines


def _structures(tmp: Path) -> dict[str, tuple[Path, str]]:
    nan = write(tmp / "nan.pdb", "\n".join(_peptide("A", 12, nan_at=4) + _peptide("B", 12)) + "\nEND\n")
    return {
        "garbage": (write(tmp / "garbage.pdb", b"\x00\x01 not a structure \xff"), "no models (no ATOM"),
        "truncated-cif-gz": (write(tmp / "cut.cif.gz", half(CIF.read_bytes())), "not a readable structure"),
        "no-atoms": (write(tmp / "empty.pdb", "HEADER    NOTHING\nEND\n"), "no models (no ATOM / HETATM records)"),
        "nan-coordinate": (nan, "chain A residue 5: an atom has a non-finite coordinate"),
    }


STRUCTURE_CASES = ["garbage", "truncated-cif-gz", "no-atoms", "nan-coordinate"]
STRUCTURE_COMMANDS = {
    "attention export --pdb": lambda tmp, m, p: [
        "attention",
        "export",
        "--model",
        m,
        "--pdb",
        p,
        "--out",
        tmp / "out" / "a.npz",
    ],  # fmt: skip
    "attention sites": lambda tmp, m, p: [
        "attention",
        "sites",
        "--model",
        m,
        "--pdb",
        p,
        "--out",
        tmp / "out" / "s.json",
    ],  # fmt: skip
    "contacts": lambda tmp, m, p: ["contacts", "--model", m, "--pdb", p, "--out", tmp / "out" / "c.json"],
    "contacts fit": lambda tmp, m, p: ["contacts", "fit", "--model", m, "--pdb", p, "--out", tmp / "out" / "reg"],
}


@pytest.mark.parametrize("case", STRUCTURE_CASES)
@pytest.mark.parametrize("command", sorted(STRUCTURE_COMMANDS))
def test_malformed_structure(command, case, tmp_path, micro, capsys):
    path, message = _structures(tmp_path)[case]
    code, err = run(STRUCTURE_COMMANDS[command](tmp_path, micro, path), capsys)
    assert_one_line_error(code, err, str(path), message)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.*"))


def test_chain_names_never_become_paths(tmp_path, capsys):
    """An mmCIF chain named `A/../x`: the report's PNGs stay beside it, named from the sanitised chain id."""
    import gemmi

    from protlm.models import build_mlm
    from protlm.tokenization import load_tokenizer

    st = gemmi.read_structure(str(CIF))
    st[0]["A"].name = "A/../x"
    st.setup_entities()
    cif = tmp_path / "slash.cif"
    st.make_mmcif_document().write_file(str(cif))
    model = tmp_path / "m"
    tok = load_tokenizer(TOK)
    build_mlm(str(DATA / "micro.yaml"), tok, seed=0, max_position_embeddings=402).save_pretrained(model)
    tok.save_pretrained(model)
    report = tmp_path / "r" / "r.html"
    code, err = run(["attention", "sites", "--model", model, "--pdb", cif, "--report", report], capsys)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.rglob("*.png")) == ["r_attention_slash_A_.._xB.png", "r_head_auc.png"]
    assert all(p.parent == report.parent for p in tmp_path.rglob("*.png"))


# --- model and tokenizer directories --------------------------------------------------------------------------
class _Unpickled:
    """Unpickling this creates a file: proof that a pickled weights file was opened."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


MODEL_DAMAGE = {
    "no-config": (lambda d: (d / "config.json").unlink(), "config.json"),
    "config-not-json": (lambda d: write(d / "config.json", "{not json"), "config.json"),
    "config-wrong-type": (
        lambda d: write(d / "config.json", '{"model_type": "roberta", "hidden_size": "big"}'),
        "config.json",
    ),  # fmt: skip
    "weights-corrupt": (
        lambda d: write(d / "model.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage"),
        "model.safetensors",
    ),  # fmt: skip
    "weights-missing": (lambda d: (d / "model.safetensors").unlink(), "no model.safetensors"),
    # a pickle that would create UNPICKLED in the model dir if anything opened it
    "weights-pickled": (
        lambda d: [
            (d / "model.safetensors").unlink(),
            write(d / "pytorch_model.bin", pickle.dumps(_Unpickled(str(d / "UNPICKLED")))),
        ],
        "no model.safetensors",
    ),  # fmt: skip
    "tokenizer-json-wrong": (lambda d: write(d / "tokenizer.json", '{"x": 1}'), "tokenizer"),
    "tokenizer-missing": (
        lambda d: [(d / f).unlink() for f in ("tokenizer.json", "tokenizer_config.json")],
        "tokenizer",
    ),  # fmt: skip
}
MODEL_COMMANDS = {
    "embed": lambda tmp, m: ["embed", write(tmp / "in.fa", GOOD), "--model", m, "--out", tmp / "out" / "e.parquet"],
    "fill": lambda tmp, m: ["fill", "MKT<mask>AYIAK", "--model", m],
    "attention export": lambda tmp, m: [
        "attention",
        "export",
        "--fasta",
        write(tmp / "in.fa", GOOD),
        "--model",
        m,
        "--out",
        tmp / "out" / "a.npz",
    ],  # fmt: skip
    "pretrain --model": lambda tmp, m: [
        "pretrain",
        "--out",
        tmp / "out" / "r",
        "--model",
        m,
        "--max-steps",
        1,
        "--corpus",
        DATA / "swissprot_50.fasta",
        "--cache-dir",
        tmp / "cache",
    ],  # fmt: skip
    "finetune --model": lambda tmp, m: [
        "finetune",
        "--task",
        "localization",
        "--data",
        DATA / "tasks" / "deeploc_small.fasta",
        "--model",
        m,
        "--out",
        tmp / "out" / "f",
        "--max-steps",
        1,
        "--cache-dir",
        tmp / "cache",
    ],  # fmt: skip
    "predict": lambda tmp, m: ["predict", write(tmp / "in.fa", GOOD), "--model", m, "--out", tmp / "out" / "p.tsv"],
    "evaluate": lambda tmp, m: [
        "evaluate",
        "--model",
        m,
        "--data",
        DATA / "tasks" / "deeploc_small.fasta",
        "--out",
        tmp / "out" / "ev",
    ],  # fmt: skip
    "contacts": lambda tmp, m: ["contacts", "--model", m, "--pdb", PDB, "--out", tmp / "out" / "c.json"],
}


@pytest.mark.parametrize("damage", sorted(MODEL_DAMAGE))
@pytest.mark.parametrize("command", sorted(MODEL_COMMANDS))
def test_damaged_model_dir(command, damage, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(LOC if command in ("predict", "evaluate") else MLM, model)
    spoil, message = MODEL_DAMAGE[damage]
    spoil(model)
    code, err = run(MODEL_COMMANDS[command](tmp_path, model), capsys)
    assert_one_line_error(code, err, str(model), message)
    assert not finished_outputs(tmp_path / "out")
    assert not (model / "UNPICKLED").exists()  # no route opened the planted pickle


@pytest.mark.parametrize("damage", ["tokenizer-json-wrong", "tokenizer-missing"])
@pytest.mark.parametrize("command", ["tokenizer stats", "corpus prepare"])
def test_damaged_tokenizer_dir(command, damage, tmp_path, capsys):
    tok = tmp_path / "tok"
    shutil.copytree(TOK, tok)
    MODEL_DAMAGE[damage][0](tok)
    argv = {"tokenizer stats": ["tokenizer", "stats", "--tokenizer", tok, "--corpus", DATA / "swissprot_50.fasta"],
            "corpus prepare": ["corpus", "prepare", DATA / "swissprot_50.fasta", "--tokenizer", tok,
                               "--out", tmp_path / "out" / "s"]}[command]  # fmt: skip
    code, err = run(argv, capsys)
    assert_one_line_error(code, err, str(tok), "tokenizer")
    assert not finished_outputs(tmp_path / "out")


# --- LMDB records (TAPE / PEER) -------------------------------------------------------------------------------
PPI = {"primary_1": A, "primary_2": B}
LMDB_ERRORS = {
    "os-system": (b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00echo\x85R.", "record 0"),
    "set-record": (pickle.dumps({1, 2}), "record 0"),
    "interaction-yes": (pickle.dumps({**PPI, "interaction": "yes"}), "interaction must be 0 or 1, found 'yes'"),
    "interaction-2": (pickle.dumps({**PPI, "interaction": 2}), "interaction must be 0 or 1, found 2"),
    "not-a-pickle": (b"garbage", "record 0"),
    "missing-field": (pickle.dumps({"primary_1": A, "interaction": 1}), "record 0): record lacks field(s) primary_2"),
}


@pytest.mark.parametrize("case", sorted(LMDB_ERRORS))
def test_malformed_lmdb(case, tmp_path, capsys):
    record, message = LMDB_ERRORS[case]
    db = write_lmdb(tmp_path / "ppi.lmdb", [pickle.dumps({**PPI, "interaction": 1}), record][::-1])
    code, err = run(["pairs", "from-lmdb", db, "--out", tmp_path / "out" / "p.tsv"], capsys)
    assert_one_line_error(code, err, str(db), message)
    assert not finished_outputs(tmp_path / "out")


def test_crafted_lmdb_in_a_task_split_dir(tmp_path, capsys):
    """finetune reads TAPE LMDB split files through the same restricted unpickler."""
    d = tmp_path / "ss"
    d.mkdir()
    for split in ("train", "valid", "cb513"):
        shutil.copytree(DATA / "tasks" / "secondary_structure" / f"secondary_structure_{split}.lmdb",
                        d / f"secondary_structure_{split}.lmdb")  # fmt: skip
    shutil.rmtree(d / "secondary_structure_valid.lmdb")
    write_lmdb(d / "secondary_structure_valid.lmdb", [b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00echo\x85R."])
    code, err = run(["finetune", "--task", "ss3", "--data", d, "--model", MLM, "--out", tmp_path / "out",
                     "--max-steps", 1, "--cache-dir", tmp_path / "cache"], capsys)  # fmt: skip
    assert_one_line_error(code, err, "secondary_structure_valid.lmdb", "record 0")
    assert not finished_outputs(tmp_path / "out")
