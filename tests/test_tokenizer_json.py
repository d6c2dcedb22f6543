"""The tokenizer.json check (`io.tokenizer_json`): every tokenizer protlm makes or supports passes it;
regular expressions, unknown components and deep or huge component trees do not; a Rust panic that
happens anyway is one error line (the crafted files through the CLI are in test_security.py)."""

from __future__ import annotations

import json

import pytest

from backbones import build_esm, build_protbert, build_roberta_bpe
from conftest import DATA
from protlm.errors import InputError, ProtlmError
from protlm.io import iter_fasta
from protlm.io.tokenizer_json import MAX_DEPTH, check_tokenizer, check_tokenizer_file, rust_guard
from protlm.tokenization import KINDS, TokenizerInfo, load_tokenizer, save_tokenizer, train_tokenizer

OWN = json.loads((DATA / "tokenizer_bpe300" / "tokenizer.json").read_text())
# Oniguruma gives up (a panic) on this protein: 33 residues, the last A can never be followed by `$A`.
CATASTROPHIC = {"type": "Split", "pattern": {"Regex": "(.+)+$A"}, "behavior": "Isolated", "invert": False}
PANICS = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_protlm_trains_passes(tmp_path, kind):
    seqs = [r.seq for r in iter_fasta(DATA / "swissprot_50.fasta")]
    tok = train_tokenizer(seqs, kind=kind, vocab_size=400 if kind != "byte-bpe" else 300)
    save_tokenizer(tok, tmp_path / kind, TokenizerInfo(kind, len(tok)))
    check_tokenizer_file(tmp_path / kind / "tokenizer.json")
    load_tokenizer(tmp_path / kind)


def test_the_test_backbones_tokenizers_pass(tmp_path):
    """ESM-2 (vocab.txt, slow), ProtBERT (BertTokenizer with tokenizer.json), RoBERTa (vocab.json +
    merges.txt, converted to a fast tokenizer by transformers)."""
    dirs = [build_esm(tmp_path / "esm"), build_protbert(tmp_path / "protbert"),
            build_roberta_bpe(tmp_path / "roberta", [r.seq for r in iter_fasta(DATA / "swissprot_50.fasta")])]  # fmt: skip
    assert (tmp_path / "protbert" / "tokenizer.json").is_file()
    for d in dirs:
        tok = load_tokenizer(d)
        check_tokenizer(json.loads(tok.backend.to_str()), d)  # what `corpus prepare` workers run


def _with(**parts) -> dict:
    return {**json.loads(json.dumps(OWN)), **parts}


@pytest.mark.parametrize(
    "doc, words",
    [
        (_with(pre_tokenizer=CATASTROPHIC), "'Split'"),
        (_with(pre_tokenizer={"type": "Sequence", "pretokenizers": [{"type": "ByteLevel"}, CATASTROPHIC]}), "'Split'"),
        (_with(normalizer={"type": "Replace", "pattern": {"Regex": "a"}, "content": "b"}), "Regex"),
        (_with(decoder={"type": "Replace", "pattern": {"String": "a"}, "content": "b"}), "decoder 'Replace'"),
        (_with(normalizer={"type": "Precompiled", "precompiled_charsmap": "AAAA"}), "'Precompiled'"),
        (_with(normalizer="NFC"), "component object"),
        (_with(model={"type": "Nope"}), "model 'Nope'"),
        ([1], "JSON object"),
        (_with(model={"type": ["BPE"]}), "model list"),  # once a set lookup of a list: TypeError
        (_with(normalizer={"type": ["Sequence"]}), "normalizer list"),
        # each residue A becomes 10**8 characters through 8 chained Replaces (9.4 GB before the check)
        (
            _with(
                normalizer={
                    "type": "Sequence",
                    "normalizers": [{"type": "Replace", "pattern": {"String": "A"}, "content": "A" * 10}] * 8,
                }
            ),
            "content is longer",
        ),
        (_with(normalizer={"type": "Replace", "pattern": {"String": ""}, "content": ""}), "content is longer"),
    ],
)
def test_refused_components(doc, words):
    with pytest.raises(InputError, match="t.json: ") as e:
        check_tokenizer(doc, "t.json")
    assert words in str(e.value)


@pytest.mark.parametrize("where", ["vocab", "added", "template", "unk"])
def test_token_ids_are_bounded_by_the_vocabulary(where):
    """An id of 4e9 in a 300-token vocabulary made `tokenizers` allocate 16 GB (or abort) when serialised."""
    from protlm.io.tokenizer_json import ID_SLACK

    doc = json.loads((DATA / "tokenizer_bpe300" / "tokenizer.json").read_text())
    check_tokenizer(doc, "t.json")
    huge = 4_000_000_000
    if where == "vocab":
        doc["model"]["vocab"]["ZZZ"] = huge
    elif where == "added":
        doc["added_tokens"][0]["id"] = huge
    elif where == "template":
        doc["post_processor"]["special_tokens"]["<s>"]["ids"] = [huge]
    else:
        doc["model"] = {"type": "Unigram", "vocab": [["A", -1.0]], "unk_id": huge}
    with pytest.raises(InputError, match=f"token id {huge} far outside"):
        check_tokenizer(doc, "t.json")
    assert ID_SLACK >= 10_000  # gaps in an honest vocabulary stay accepted


def test_depth_and_size_are_bounded_without_recursion():
    deep: dict = {"type": "Lowercase"}
    for _ in range(MAX_DEPTH):
        deep = {"type": "Sequence", "normalizers": [deep]}
    with pytest.raises(InputError, match="nested deeper"):
        check_tokenizer(_with(normalizer=deep), "t.json")
    wide = {"type": "Sequence", "normalizers": [{"type": "Lowercase"}] * 200_000}
    with pytest.raises(InputError, match="larger than"):
        check_tokenizer(_with(normalizer=wide), "t.json")
    check_tokenizer(_with(normalizer={"type": "Sequence", "normalizers": [{"type": "Replace", "pattern": {"String": "J"},
                                                                           "content": "X"}]}), "t.json")  # fmt: skip


def _panicking_tokenizer():
    from tokenizers import Tokenizer

    return Tokenizer.from_str(json.dumps(_with(pre_tokenizer=CATASTROPHIC)))


def test_a_panic_under_the_guard_is_one_error_and_no_hook_output(capfd):
    tok = _panicking_tokenizer()
    with pytest.raises(ProtlmError, match=r"x/tokenizer.json: the tokenizer failed \(Rust panic: .*retry-limit"):
        with rust_guard("x/tokenizer.json"):
            tok.encode(PANICS)
    assert capfd.readouterr().err == ""
    with rust_guard("x"):  # what is written without a panic is passed on
        import os

        os.write(2, b"kept\n")
    assert capfd.readouterr().err == "kept\n"


def test_a_panic_in_a_prepare_worker_is_one_error(tmp_path, capfd):
    from protlm.io import ResiduePolicy
    from protlm.store import prepare

    prepare._WORKER.update(tok=_panicking_tokenizer(), where="x/tokenizer.json")
    try:
        chunk = [("in.fa", f"p{i}", i, PANICS) for i in range(50)]
        meta = prepare.build_shard(str(tmp_path), 0, chunk, ResiduePolicy(), {}, 300)
    finally:
        prepare._WORKER.clear()
    assert meta.keys() == {"error"} and meta["error"].startswith("x/tokenizer.json: the tokenizer failed")
    assert capfd.readouterr().err == ""
    assert not any(tmp_path.iterdir())  # no shard written


def test_the_cli_turns_a_stray_panic_into_one_line(monkeypatch, capsys):
    import protlm.tokenizer_report as report
    from conftest import run_cli

    def boom(*args, **kwargs):
        _panicking_tokenizer().encode(PANICS)

    monkeypatch.setattr(report, "compression_report", boom)
    code, _, err = run_cli(["tokenizer", "stats", "--tokenizer", str(DATA / "tokenizer_bpe300"), "--corpus",
                            str(DATA / "swissprot_50.fasta")], capsys)  # fmt: skip
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("protlm: error: ") and "Rust panic" in last and "Traceback" not in err
