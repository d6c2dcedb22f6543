"""What a corpus store is made from, and what identifies it: the inputs (files, globs, `scl2205[:SPLIT]`)
with their sizes and modification times, the residue tokenizer's hash, and the fingerprint a store and a
cache key are checked against (nothing here reads the corpus)."""

from __future__ import annotations

import glob
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from protlm.errors import InputError, ProtlmError
from protlm.io import RawRecord, ResiduePolicy
from protlm.io.structured import parse_json
from protlm.store.format import FORMAT, VERSION


@dataclass(frozen=True)
class Inputs:
    """The corpus specs of one store, in order, with what identifies their content."""

    specs: tuple[str, ...]
    id_col: str = "id"
    seq_col: str = "sequence"

    @staticmethod
    def expand(specs: list[str] | tuple[str, ...], id_col: str = "id", seq_col: str = "sequence") -> Inputs:
        """Files, globs (sorted) or `scl2205[:split]`; a glob that matches nothing is an error."""
        out: list[str] = []
        for spec in specs:
            if spec == "scl2205" or spec.startswith("scl2205:") or Path(spec).exists():
                out.append(spec)
                continue
            matches = sorted(glob.glob(spec))
            if not matches:
                raise InputError(spec, "file not found (and no file matches it as a glob)")
            out.extend(matches)
        if not out:
            raise ProtlmError("no corpus inputs given")
        return Inputs(tuple(out), id_col, seq_col)

    def identity(self) -> list[dict]:
        """Path, size and modification time of each file (the builtin corpus: its package version)."""
        from importlib.metadata import version

        ident = []
        for spec in self.specs:
            if spec == "scl2205" or spec.startswith("scl2205:"):
                ident.append({"spec": spec, "p-scldata": version("p-scldata")})
            else:
                st = Path(spec).stat()
                ident.append({"spec": str(Path(spec).resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns})
        return ident

    def raw_records(self, keep: int | None = None) -> Iterator[tuple[str, RawRecord]]:
        """(source name, raw record) for every record of every input, in order (no validation yet); FASTA
        sequences longer than `keep` characters are cut short and flagged (see `iter_fasta`)."""
        from protlm.corpora import DEFAULT_SCL_SPLIT, load_scl2205
        from protlm.io import is_fasta, iter_fasta, iter_table

        for spec in self.specs:
            if spec == "scl2205" or spec.startswith("scl2205:"):
                entries = load_scl2205().split(spec.partition(":")[2] or DEFAULT_SCL_SPLIT)
                source = f"{spec} (scldata/data/scl2205.csv)"
                yield from ((source, RawRecord(e.id, e.seq, line=e.index + 2)) for e in entries)
            else:
                raw = iter_fasta(spec, keep) if is_fasta(spec) else iter_table(spec, self.id_col, self.seq_col)
                yield from ((spec, r) for r in raw)


def tokenizer_fingerprint(tokenizer_dir: str | Path) -> tuple[str, str, int]:
    """(serialised residue tokenizer, its sha256, vocabulary size incl. added tokens) of a tokenizer or
    model directory. A `tokenizer.json` that splits raw protein strings (protlm's, byte-level BPE) is read
    with `tokenizers` alone (no transformers / torch import: prepare stays small); any other (ESM-2,
    ProtBERT) goes through `ProteinTokenizer`, whose residue tokenizer the workers then run."""
    from tokenizers import Tokenizer

    from protlm.io.hf_dirs import refuse_remote_code
    from protlm.io.tokenizer_json import check_tokenizer, check_tokenizer_file, rust_guard
    from protlm.tokenization import load_tokenizer, splits_residues

    directory = Path(tokenizer_dir)
    path = directory / "tokenizer.json"
    tok, own = None, False
    if path.is_file():
        refuse_remote_code(tokenizer_dir)
        check_tokenizer_file(path)  # no regular expressions, nothing protlm's tokenizers never hold
        try:
            with rust_guard(path):
                tok = Tokenizer.from_file(str(path))
                own = splits_residues(tok)
        except Exception as e:  # tokenizers raises plain Exception on a malformed file
            if isinstance(e, ProtlmError):
                raise
            raise ProtlmError(f"{tokenizer_dir}: not a tokenizer tokenizers can load ({str(e)[:160]})") from None
    if tok is None or not own:
        tok = load_tokenizer(directory).backend  # e.g. ESM-2's vocab.txt, ProtBERT's spaced WordPiece
    text = tok.to_str()
    where = path if path.is_file() else directory
    check_tokenizer(parse_json(text, where), where)  # what the workers will run
    return text, hashlib.sha256(text.encode()).hexdigest(), tok.get_vocab_size(with_added_tokens=True)


def fingerprint(inputs: Inputs, tokenizer_sha: str, vocab: int, policy: ResiduePolicy, shard_size: int) -> dict:
    return {"format": FORMAT, "version": VERSION, "tokenizer_sha256": tokenizer_sha, "vocab_size": vocab,
            "policy": policy.identity(), "shard_size": shard_size, "inputs": inputs.identity(),
            "id_col": inputs.id_col, "seq_col": inputs.seq_col}  # fmt: skip
