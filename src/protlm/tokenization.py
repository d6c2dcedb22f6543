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

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from protlm.errors import ProtlmError
from protlm.io.atomic import output_dir, write_json
from protlm.io.hf_dirs import refuse_remote_code
from protlm.io.structured import parse_json, read_json
from protlm.io.tokenizer_json import check_tokenizer, check_tokenizer_file, rust_guard, tokenizer_file
from protlm.io.validate import ALPHABET, RARE

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
# Standard residues, X, and the rare letters (kept so raw user strings never hit <unk>).
RESIDUE_ALPHABET = ALPHABET + RARE
KINDS = ("bpe-shortest", "bpe", "byte-bpe", "unigram", "char")
BPE_KINDS = ("bpe-shortest", "bpe", "byte-bpe")
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


def base_vocab_size(kind: str) -> int:
    """Tokens every tokenizer of `kind` has before training: the 5 specials and the alphabet."""
    return len(SPECIAL_TOKENS) + alphabet_size(kind)


def vocab_size_for_merges(kind: str, merges: int) -> int:
    """Vocabulary size that gives `merges` BPE merges (5 specials + alphabet + merges)."""
    if kind not in BPE_KINDS:
        raise ProtlmError(f"--merges applies to BPE tokenizers only, not {kind!r}; use --vocab-size")
    return base_vocab_size(kind) + merges


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
) -> ProteinTokenizer:
    """Train a tokenizer of `kind` on protein `sequences` (ignored for `char`)."""
    minimum = base_vocab_size(kind)
    if kind != "char" and vocab_size < minimum:
        raise ProtlmError(f"--vocab-size {vocab_size} is below the {minimum} base tokens of a {kind} tokenizer")
    tok, trainer = _base_tokenizer(kind, vocab_size)
    if trainer is not None:
        tok.train_from_iterator(sequences, trainer)
    if kind == "bpe-shortest":
        tok = shortest_segmentation(tok)
    return _wrap(tok)


def _wrap(tok: Tokenizer) -> ProteinTokenizer:
    """Add RoBERTa's templates and wrap as an HF fast tokenizer."""
    cls, sep = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    assert (cls, sep) == (0, 2), "special tokens must come first in the vocabulary"
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", cls), ("</s>", sep)],
    )
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
    )
    return ProteinTokenizer(hf)


def shortest_of(bpe: ProteinTokenizer) -> ProteinTokenizer:
    """The `bpe-shortest` tokenizer of a trained residue `bpe` tokenizer (same vocabulary and ids)."""
    return _wrap(shortest_segmentation(bpe.backend))


def shortest_segmentation(bpe: Tokenizer) -> Tokenizer:
    """Same vocabulary (same ids) as `bpe`, encoding each word into the fewest tokens.

    A Unigram model whose pieces all cost the same: its Viterbi search minimises the number of
    pieces. Greedy merge replay (classic BPE encoding) is not length-optimal for proteins, whose
    "words" are hundreds of residues long.
    """
    vocab = bpe.get_vocab()
    pieces = [(token, -1.0) for token, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    return Tokenizer(models.Unigram(pieces, unk_id=vocab["<unk>"], byte_fallback=False))


def save_tokenizer(tokenizer: ProteinTokenizer, out: str | Path, info: TokenizerInfo) -> Path:
    """Save as an HF tokenizer directory plus `protlm_tokenizer.json` provenance."""
    out = output_dir(out)
    tokenizer.save_pretrained(out)
    write_json(out / INFO_FILE, asdict(info))
    return out


def load_tokenizer(path: str | Path) -> ProteinTokenizer:
    """Load any model's tokenizer directory (protlm, ESM-2, ProtBERT, RoBERTa) as a `ProteinTokenizer`:
    plain `AutoTokenizer`, never remote code (see `io.hf_dirs`). Its first encodes (the template, the
    residue probe) run under `rust_guard`: a panic in `tokenizers` is one line naming the file."""
    hf = load_hf_tokenizer(path)
    with rust_guard(tokenizer_file(path)):
        return ProteinTokenizer(hf)


def load_hf_tokenizer(path: str | Path):
    """The HF tokenizer of a directory, with one-line errors for missing or malformed files. A
    `tokenizer.json`, and the tokenizer transformers builds, may hold only the components that
    `io.tokenizer_json.check_tokenizer` allows (no regular expressions)."""
    path = Path(path)
    files = ("tokenizer.json", "vocab.txt", "vocab.json")
    if not any((path / f).is_file() for f in files):
        raise ProtlmError(
            f"{path}: not a tokenizer directory (no tokenizer.json, vocab.txt or vocab.json); train one with "
            "`protlm tokenizer train`"
        )
    refuse_remote_code(path)
    where = tokenizer_file(path)
    if where != path:
        check_tokenizer_file(where)  # one-line error for a file that is not JSON or runs what protlm does not
    from transformers import AutoTokenizer

    try:
        with rust_guard(where):
            hf = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        backend = getattr(hf, "backend_tokenizer", None)
        if backend is not None:  # as converted from vocabulary files, or as loaded
            check_tokenizer(parse_json(backend.to_str(), where), where)
        with rust_guard(where):  # settings of tokenizer_config.json are used only when encoding: try them now
            hf("MKTAYIAKQR")
            hf("MKTAY", "LLVAAG")
        return hf
    except ProtlmError:
        raise
    except Exception as e:  # tokenizers raises plain Exception for a malformed tokenizer.json
        raise ProtlmError(f"{path}: not a tokenizer transformers can load ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:160] if str(e) else 'malformed'})") from None  # fmt: skip


@dataclass(frozen=True)
class Template:
    """Where special tokens go around the proteins of one input, read off the tokenizer itself.

    k proteins become `prefix A between B between C ... suffix`:
    RoBERTa / protlm `<s> A </s></s> B </s>`, ESM-2 `<cls> A <eos> B <eos>`, ProtBERT `[CLS] A [SEP] B [SEP]`.
    """

    prefix: tuple[int, ...]
    between: tuple[int, ...]
    suffix: tuple[int, ...]

    def length(self, part_lengths) -> int:
        """Tokens of the assembled input of parts with these lengths."""
        k = len(part_lengths)
        return int(sum(part_lengths)) + self.overhead(k)

    def overhead(self, k: int) -> int:
        """Special tokens around k parts."""
        return len(self.prefix) + len(self.suffix) + max(k - 1, 0) * len(self.between)

    @property
    def start(self) -> int:
        """Input position of the first content token."""
        return len(self.prefix)


class ProteinTokenizer:
    """An HF tokenizer seen as protlm needs it: residue strings -> content ids (in Rust), the model's
    input template, its special ids, and how many residues every token covers.

    `backend` is a `tokenizers.Tokenizer` that maps a raw protein string (no spaces) to content ids.
    For protlm and RoBERTa (byte-level BPE) tokenizers it is the tokenizer's own; for one-token-per-
    residue vocabularies whose own tokenizer needs spaced input (ProtBERT) or is pure Python (ESM) it
    is a character tokenizer over the same vocabulary (same ids, tested against the HF tokenizer).
    """

    def __init__(self, hf):
        self.hf = hf
        self.name = getattr(hf, "name_or_path", "")
        self.backend = _protein_backend(hf)
        self.template = _template(hf)
        self.pad_token_id = _required_id(hf, "pad")
        self.mask_token_id = _required_id(hf, "mask")
        self.cls_token_id = hf.cls_token_id if hf.cls_token_id is not None else self.template.prefix[0]
        self.mask_token = hf.mask_token
        self.special_ids = np.array(sorted({int(i) for i in hf.all_special_ids}), dtype=np.int64)
        self._residue_lengths: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.hf)

    def encode_batch(self, seqs: list[str]) -> list[np.ndarray]:
        """Content token ids (no specials) of residue strings."""
        encode = getattr(self.backend, "encode_batch_fast", self.backend.encode_batch)
        return [np.asarray(e.ids, dtype=np.int64) for e in encode(list(seqs), add_special_tokens=False)]

    def encode(self, seq: str) -> np.ndarray:
        return np.asarray(self.backend.encode(seq, add_special_tokens=False).ids, dtype=np.int64)

    def assemble(self, parts) -> np.ndarray:
        """Model input ids of one protein or of several (pair, assembly), per the template."""
        t = self.template
        pieces = [np.asarray(t.prefix, dtype=np.int64)]
        for k, part in enumerate(parts):
            if k:
                pieces.append(np.asarray(t.between, dtype=np.int64))
            pieces.append(np.asarray(part, dtype=np.int64))
        pieces.append(np.asarray(t.suffix, dtype=np.int64))
        return np.concatenate(pieces)

    @property
    def residue_lengths(self) -> np.ndarray:
        """(vocab,) residues each token id covers: 0 for specials and for tokens that are not residues."""
        if self._residue_lengths is None:
            self._residue_lengths = _residue_lengths(self.hf, self.special_ids)
        return self._residue_lengths

    @property
    def residue_token_ids(self) -> np.ndarray:
        """Ids of the tokens that stand for residues: what MLM's random replacement draws from."""
        return np.flatnonzero(self.residue_lengths > 0)

    def convert_ids_to_tokens(self, ids):
        return self.hf.convert_ids_to_tokens(ids)

    def save_pretrained(self, path) -> None:
        self.hf.save_pretrained(path)


PROBE = RESIDUE_ALPHABET  # every residue letter protlm accepts


def _required_id(hf, name: str) -> int:
    value = getattr(hf, f"{name}_token_id")
    if value is None:
        raise ProtlmError(
            f"{hf.name_or_path}: the tokenizer has no {name} token; protlm needs one for batching and MLM"
        )
    return int(value)


def _residue_lengths(hf, special_ids: np.ndarray) -> np.ndarray:
    """Residues per token id, from each token decoded alone (char, BPE and byte-level BPE alike): a
    token counts only if its text is residue letters (`<null_1>`, `.` or a stray byte count 0)."""
    table = np.zeros(len(hf), dtype=np.int64)
    specials = set(special_ids.tolist())
    letters = set(RESIDUE_ALPHABET)
    for i in range(len(hf)):
        if i in specials:
            continue
        text = hf.decode([i], clean_up_tokenization_spaces=False).strip()
        if text and set(text) <= letters:
            table[i] = len(text)
    return table


def _protein_backend(hf) -> Tokenizer:
    """A `tokenizers.Tokenizer` mapping raw residue strings to `hf`'s content ids."""
    own = getattr(hf, "backend_tokenizer", None)
    if own is not None and splits_residues(own):
        return own
    vocab = hf.get_vocab()
    missing = [c for c in ALPHABET if c not in vocab]
    if missing:
        raise ProtlmError(
            f"{hf.name_or_path}: the tokenizer neither splits raw protein strings into residue tokens nor has a "
            f"token per residue letter (missing {''.join(missing[:10])})"
        )
    tok = Tokenizer(models.BPE(vocab=dict(vocab), merges=[], unk_token=str(hf.unk_token)))
    rare = [c for c in RARE if c not in vocab]  # e.g. J in ESM-2's alphabet: read as X, one residue still
    if rare:
        tok.normalizer = normalizers.Sequence([normalizers.Replace(c, "X") for c in rare])
    tok.add_special_tokens([str(t) for t in hf.all_special_tokens])
    return tok


def splits_residues(backend: Tokenizer) -> bool:
    """True when `backend` splits an unspaced protein string into non-special tokens that spell it exactly
    (protlm and byte-level BPE tokenizers; not a WordPiece that needs spaced residues, as ProtBERT's)."""
    ids = backend.encode(PROBE, add_special_tokens=False).ids
    special = {i for i, t in backend.get_added_tokens_decoder().items() if t.special}
    unk = backend.token_to_id(getattr(backend.model, "unk_token", None) or "<unk>")
    if not ids or set(ids) & special or unk in ids:
        return False
    return backend.decode(ids, skip_special_tokens=False).replace(" ", "") == PROBE


def _template(hf) -> Template:
    """Read the single and pair templates off `hf` with two residue tokens, and check they agree."""
    a = hf("A", add_special_tokens=False)["input_ids"]
    c = hf("C", add_special_tokens=False)["input_ids"]
    single = hf("A")["input_ids"]
    pair = hf("A", "C")["input_ids"]

    def split(ids, content):
        for k in range(len(ids) - len(content) + 1):
            if ids[k : k + len(content)] == content:
                return ids[:k], ids[k + len(content) :]
        raise ProtlmError(f"{hf.name_or_path}: cannot read the input template off the tokenizer")

    prefix, suffix = split(single, a)
    p2, rest = split(pair, a)
    between, s2 = split(rest, c)
    if p2 != prefix or s2 != suffix or not prefix:
        raise ProtlmError(
            f"{hf.name_or_path}: the tokenizer's single and pair templates disagree ({single} vs {pair}); "
            "protlm needs `START A [SEP] B END` style inputs"
        )
    return Template(tuple(prefix), tuple(between), tuple(suffix))


def tokenizer_info(path: str | Path) -> TokenizerInfo | None:
    """Provenance of a protlm-trained tokenizer, or None for a foreign one."""
    f = Path(path) / INFO_FILE
    return TokenizerInfo(**read_json(f)) if f.is_file() else None


def train_from_corpus(
    corpus,
    out: str | Path,
    kind: str = DEFAULT_KIND,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    policy=None,
    report=None,
    max_sequences: int | None = None,
    log=None,
) -> ProteinTokenizer:
    """Train on a `protlm.corpora.Corpus` and save to `out` (with provenance). Fills `report`; a corpus
    too small for the vocabulary asked is named through `log` (`small_corpus_warning`)."""
    from itertools import islice

    from protlm.io import ResiduePolicy

    seqs = list(islice(corpus.sequences(policy or ResiduePolicy(), report), max_sequences))
    if not seqs:
        if report is not None:
            report.require_used()
        raise ProtlmError(f"{corpus.spec}: no usable sequences to train a tokenizer on")
    tok = train_tokenizer(seqs, kind=kind, vocab_size=vocab_size)
    warning = small_corpus_warning(tok, seqs, kind, vocab_size)
    if warning and log is not None:
        log(warning)
    info = TokenizerInfo(kind, len(tok), corpus.spec, len(seqs), sum(map(len, seqs)))
    save_tokenizer(tok, out, info)
    return tok


# Training residues per learned token below which the tokens fit the training proteins rather than
# proteins. Swiss-Prot, bpe-shortest, residues per token on the training set vs 2,000 held-out proteins:
# 1,000 proteins / 10,000 merges (30 residues each) 2.8 vs 2.7; 200 / 10,000 (6) 3.4 vs 2.5; 50 / 10,000
# (1.5) 296 vs 2.1: every training protein one token.
RESIDUES_PER_LEARNED_TOKEN = 30


def small_corpus_warning(tok: ProteinTokenizer, seqs: list[str], kind: str, vocab_size: int) -> str:
    """A warning ('' when none) for a corpus too small for the vocabulary asked. BPE merges until the
    vocabulary is full, so on 50 proteins the default 10,000 merges end by joining whole proteins: one
    token per protein, which trains nothing and says nothing about proteins the tokenizer has not seen.
    Says what the tokenizer became, how many proteins the vocabulary needs and what to ask for instead."""
    learned = vocab_size - base_vocab_size(kind)
    n_res = sum(map(len, seqs))
    if kind == "char" or learned <= 0 or n_res >= RESIDUES_PER_LEARNED_TOKEN * learned:
        return ""
    lengths = np.array([len(ids) for ids in tok.encode_batch(seqs)])
    whole = int((lengths == 1).sum())
    need = -(-RESIDUES_PER_LEARNED_TOKEN * learned * len(seqs) // n_res)  # at this corpus's mean length
    fits = n_res // RESIDUES_PER_LEARNED_TOKEN  # learned tokens this corpus supports
    flag = f"--merges {fits:,}" if kind in BPE_KINDS else f"--vocab-size {fits + base_vocab_size(kind):,}"
    unit = "merges" if kind in BPE_KINDS else "learned tokens"
    became = f"{lengths.mean():.1f} tokens per protein" + (f", {whole:,} proteins one token each" if whole else "")
    return (
        f"warning: {len(seqs):,} proteins ({n_res:,} residues) are too few for {learned:,} {unit} "
        f"({became}); train on ~{need:,} proteins or more, or ask for {flag} or fewer"
    )
