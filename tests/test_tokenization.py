"""Tokenizers: golden ids, HF loading, pair template, kinds, and the compression report."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from protlm.errors import ProtlmError
from protlm.io import read_sequences
from protlm.tokenization import (
    DEFAULT_VOCAB_SIZE,
    SPECIAL_TOKENS,
    load_tokenizer,
    train_tokenizer,
    vocab_size_for_merges,
)
from protlm.tokenizer_report import compression_report, plot_lengths

A = "MSQQKQQSWKPPNVPKCSPPQRSNPCLAPY"
B = "MKTAYIAKQRQISFVK"
# Golden ids of the shipped fixture tokenizer (BPE, vocabulary 300, trained on tests/data/swissprot_50.fasta).
GOLDEN_PAIR = [0, 144, 207, 152, 162, 197, 88, 18, 118, 15, 7, 23, 88, 21, 81, 85, 178, 68, 29, 2,
               2, 166, 24, 147, 51, 152, 254, 39, 10, 136, 2]  # fmt: skip


def test_golden_ids_through_plain_autotokenizer(data_dir):
    tok = AutoTokenizer.from_pretrained(data_dir / "tokenizer_bpe300")
    enc = tok(A, B)
    assert enc["input_ids"] == GOLDEN_PAIR
    tokens = tok.convert_ids_to_tokens(enc["input_ids"])
    # RoBERTa pair template: <s> A </s></s> B </s>
    assert tokens[0] == "<s>" and tokens[-1] == "</s>" and tokens.count("</s>") == 3
    i = tokens.index("</s>")
    assert tokens[i + 1] == "</s>"
    assert "".join(tokens[1:i]) == A and "".join(tokens[i + 2 : -1]) == B
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert tok.mask_token == "<mask>" and tok.pad_token_id == 1


def test_training_is_deterministic_and_matches_fixture(data_dir, swissprot50):
    seqs = [r.seq for r in read_sequences(swissprot50)]
    tok = train_tokenizer(seqs, "bpe", 300)
    assert tok.hf.get_vocab() == load_tokenizer(data_dir / "tokenizer_bpe300").hf.get_vocab()


@pytest.mark.parametrize("kind", ["bpe-shortest", "bpe", "byte-bpe", "unigram", "char"])
def test_kinds_round_trip_offsets_and_mask(tmp_path, swissprot50, kind):
    seqs = [r.seq for r in read_sequences(swissprot50)]
    tok = train_tokenizer(seqs, kind, 400)
    tok.save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    enc = tok(seqs[3], return_offsets_mapping=True, add_special_tokens=False)
    # Offsets tile the sequence exactly: every residue belongs to exactly one token.
    offsets = enc["offset_mapping"]
    assert offsets[0][0] == 0 and offsets[-1][1] == len(seqs[3])
    assert all(a[1] == b[0] for a, b in zip(offsets, offsets[1:], strict=False))
    assert tok.decode(enc["input_ids"]).replace(" ", "") == seqs[3]
    ids = tok("MKT<mask>LLV")["input_ids"]
    assert ids.count(tok.mask_token_id) == 1
    if kind == "char":
        assert len(enc["input_ids"]) == len(seqs[3]) and len(tok) == 5 + 26
    else:
        assert len(tok) == 400
        assert len(enc["input_ids"]) < len(seqs[3])


def test_shortest_segmentation_same_vocab_never_longer(data_dir, swissprot50):
    from protlm.tokenization import shortest_of

    bpe = load_tokenizer(data_dir / "tokenizer_bpe300")
    short = shortest_of(bpe)
    assert short.hf.get_vocab() == bpe.hf.get_vocab()
    seqs = [r.seq for r in read_sequences(swissprot50)]
    n_bpe = [len(bpe.hf(s)["input_ids"]) for s in seqs]
    n_short = [len(short.hf(s)["input_ids"]) for s in seqs]
    assert all(a <= b for a, b in zip(n_short, n_bpe, strict=True)) and sum(n_short) < sum(n_bpe)
    # still decodes to the sequence, and the pair template is unchanged
    assert short.hf.decode(short.hf(seqs[0], add_special_tokens=False)["input_ids"]).replace(" ", "") == seqs[0]
    assert short.convert_ids_to_tokens(short.hf("MK", "TA")["input_ids"])[0] == "<s>"


def test_vocab_sizes_and_errors():
    assert DEFAULT_VOCAB_SIZE == 10_261  # the paper: 5 specials + 256 bytes + 10,000 merges
    assert vocab_size_for_merges("byte-bpe", 10_000) == 10_261
    assert vocab_size_for_merges("bpe", 10_000) == 5 + 26 + 10_000
    with pytest.raises(ProtlmError, match="--merges applies to BPE"):
        vocab_size_for_merges("unigram", 100)
    with pytest.raises(ProtlmError, match="below the 261 base tokens"):
        train_tokenizer(["MKT"], "byte-bpe", 100)
    with pytest.raises(ProtlmError, match="unknown tokenizer kind"):
        train_tokenizer(["MKT"], "wordpiece", 100)


def test_compression_report_values(data_dir, tmp_path):
    tok = load_tokenizer(data_dir / "tokenizer_bpe300")
    seqs = ["MSQQKQQSWK", "M" * 600, "PP"]
    report, tok_len, res_len = compression_report(tok, seqs)
    expected = [len(tok.hf(s, add_special_tokens=False)["input_ids"]) for s in seqs]
    assert tok_len.tolist() == expected and res_len.tolist() == [10, 600, 2]
    assert report.n_tokens == sum(expected)
    assert report.residues_per_token == pytest.approx(612 / sum(expected))
    assert report.reduction_pct == pytest.approx(100 * (1 - sum(expected) / 612))
    assert report.over_residues_pct[512] == pytest.approx(100 / 3)
    assert report.over_tokens_pct[512] == pytest.approx(100 * (expected[1] > 512) / 3)
    assert report.residues_per_second > 0
    png = plot_lengths(tok_len, res_len, tmp_path / "h.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_load_tokenizer_error(tmp_path):
    with pytest.raises(ProtlmError, match="not a tokenizer directory"):
        load_tokenizer(tmp_path)
