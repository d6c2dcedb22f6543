"""Protein tokenizers, trained with HF `tokenizers` and saved as HF tokenizer directories.

Every kind saves a `PreTrainedTokenizerFast` directory that plain
`transformers.AutoTokenizer.from_pretrained(DIR)` loads, with RoBERTa's special tokens
(`<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3, `<mask>`=4) and RoBERTa's pair template
`<s> A </s></s> B </s>`.

Kinds (see docs/tokenizers.md for the measurements behind the default):
- `bpe-shortest` (default): the `bpe` vocabulary, but each protein is split into the fewest tokens
  that vocabulary allows (Viterbi over the vocabulary with a uniform cost per token, stored as a
  `tokenizers` Unigram model) instead of replaying merges greedily: same vocabulary, shorter inputs.
- `bpe`: BPE over the residue alphabet (no byte alphabet, no pre-tokenizer: a protein is one word).
- `byte-bpe`: the paper's byte-level BPE (vocabulary 10,261 = 5 specials + 256 bytes + 10,000 merges).
- `unigram`: SentencePiece-style Unigram LM over the residue alphabet.
- `char`: one token per residue, the baseline (what ESM and ProtBert do).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from protlm.errors import ProtlmError
from protlm.io.hf_dirs import read_json_object, refuse_remote_code
from protlm.io.validate import ALPHABET, RARE

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
# Standard residues, X, and the rare letters (kept so raw user strings never hit <unk>).
RESIDUE_ALPHABET = ALPHABET + RARE
KINDS = ("bpe-shortest", "bpe", "byte-bpe", "unigram", "char")
DEFAULT_KIND = "bpe-shortest"
PAPER_MERGES = 10_000
DEFAULT_VOCAB_SIZE = len(SPECIAL_TOKENS) + 256 + PAPER_MERGES  # 10,261: the paper's vocabulary size
INFO_FILE = "protlm_tokenizer.json"


@dataclass(frozen=True)
class TokenizerInfo:
    """Provenance written beside the tokenizer (`protlm_tokenizer.json`)."""

    kind: str
    vocab_size: int
    corpus: str = ""
    n_sequences: int = 0
    n_residues: int = 0


def alphabet_size(kind: str) -> int:
    return 256 if kind == "byte-bpe" else len(RESIDUE_ALPHABET)


def vocab_size_for_merges(kind: str, merges: int) -> int:
    """Vocabulary size that gives `merges` BPE merges (5 specials + alphabet + merges)."""
    if kind not in ("bpe", "bpe-shortest", "byte-bpe"):
        raise ProtlmError(f"--merges applies to BPE tokenizers only, not {kind!r}; use --vocab-size")
    return len(SPECIAL_TOKENS) + alphabet_size(kind) + merges


def _base_tokenizer(kind: str, vocab_size: int) -> tuple[Tokenizer, trainers.Trainer | None]:
    specials = list(SPECIAL_TOKENS)
    if kind == "byte-bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        return tok, trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet, show_progress=False
        )
    if kind in ("bpe", "bpe-shortest"):
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        return tok, trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            initial_alphabet=list(RESIDUE_ALPHABET),
            limit_alphabet=len(RESIDUE_ALPHABET),
            show_progress=False,
        )
    if kind == "unigram":
        tok = Tokenizer(models.Unigram())
        return tok, trainers.UnigramTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            initial_alphabet=list(RESIDUE_ALPHABET),
            unk_token="<unk>",
            max_piece_length=16,
            show_progress=False,
        )
    if kind == "char":
        vocab = {t: i for i, t in enumerate([*specials, *RESIDUE_ALPHABET])}
        return Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>")), None
    raise ProtlmError(f"unknown tokenizer kind {kind!r}; choose from {', '.join(KINDS)}")


def train_tokenizer(
    sequences: Iterable[str], kind: str = DEFAULT_KIND, vocab_size: int = DEFAULT_VOCAB_SIZE
) -> PreTrainedTokenizerFast:
    """Train a tokenizer of `kind` on protein `sequences` (ignored for `char`)."""
    minimum = len(SPECIAL_TOKENS) + alphabet_size(kind)
    if kind != "char" and vocab_size < minimum:
        raise ProtlmError(f"--vocab-size {vocab_size} is below the {minimum} base tokens of a {kind} tokenizer")
    tok, trainer = _base_tokenizer(kind, vocab_size)
    if trainer is not None:
        tok.train_from_iterator(sequences, trainer)
    if kind == "bpe-shortest":
        tok = shortest_segmentation(tok)
    return _wrap(tok)


def _wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    """Add RoBERTa's templates and wrap as an HF fast tokenizer."""
    cls, sep = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    assert (cls, sep) == (0, 2), "special tokens must come first in the vocabulary"
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", cls), ("</s>", sep)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
    )


def shortest_of(bpe: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    """The `bpe-shortest` tokenizer of a trained residue `bpe` tokenizer (same vocabulary and ids)."""
    return _wrap(shortest_segmentation(bpe.backend_tokenizer))


def shortest_segmentation(bpe: Tokenizer) -> Tokenizer:
    """Same vocabulary (same ids) as `bpe`, encoding each word into the fewest tokens.

    A Unigram model whose pieces all cost the same: its Viterbi search minimises the number of
    pieces. Greedy merge replay (classic BPE encoding) is not length-optimal for proteins, whose
    "words" are hundreds of residues long.
    """
    vocab = bpe.get_vocab()
    pieces = [(token, -1.0) for token, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    return Tokenizer(models.Unigram(pieces, unk_id=vocab["<unk>"], byte_fallback=False))


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, out: str | Path, info: TokenizerInfo) -> Path:
    """Save as an HF tokenizer directory plus `protlm_tokenizer.json` provenance."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    (out / INFO_FILE).write_text(json.dumps(asdict(info), indent=2) + "\n")
    return out


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer directory with plain `AutoTokenizer`: never remote code (see `io.hf_dirs`)."""
    path = Path(path)
    if not (path / "tokenizer.json").is_file():
        raise ProtlmError(
            f"{path}: not a tokenizer directory (no tokenizer.json); train one with `protlm tokenizer train`"
        )
    refuse_remote_code(path)
    read_json_object(path / "tokenizer.json")  # one-line error for a file that is not JSON
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except Exception as e:  # tokenizers raises plain Exception for a malformed tokenizer.json
        raise ProtlmError(f"{path}: not a tokenizer transformers can load ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:160] if str(e) else 'malformed'})") from None  # fmt: skip


def tokenizer_info(path: str | Path) -> TokenizerInfo | None:
    """Provenance of a protlm-trained tokenizer, or None for a foreign one."""
    f = Path(path) / INFO_FILE
    return TokenizerInfo(**json.loads(f.read_text())) if f.is_file() else None


def train_from_corpus(
    corpus,
    out: str | Path,
    kind: str = DEFAULT_KIND,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    policy=None,
    report=None,
    max_sequences: int | None = None,
) -> PreTrainedTokenizerFast:
    """Train on a `protlm.corpora.Corpus` and save to `out` (with provenance). Fills `report`."""
    from itertools import islice

    from protlm.io import ResiduePolicy

    seqs = list(islice(corpus.sequences(policy or ResiduePolicy(), report), max_sequences))
    if not seqs:
        raise ProtlmError(f"{corpus.spec}: no usable sequences to train a tokenizer on")
    tok = train_tokenizer(seqs, kind=kind, vocab_size=vocab_size)
    info = TokenizerInfo(kind, len(tok), corpus.spec, len(seqs), sum(map(len, seqs)))
    save_tokenizer(tok, out, info)
    return tok
