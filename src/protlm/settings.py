"""Settings declared once: a config field carries its own help, and options that many commands share
are declared here, once.

- `setting(default, help)` declares a field of a config dataclass (`train/config.py`,
  `tasks/finetune.py`): its type, default, help and, where the flag's text needs parsing (a list, a
  mapping), the parser. `cli/options.config_command` turns every field into exactly one flag, so
  a new setting is one line in its dataclass.
- `SHARED` holds the options that several commands take (`--model`, `--out`, `--device`, input
  columns ...): one flag name, one help. A command may add a `note` on what it accepts ("a .parquet,
  .npz or .h5 file"); the help itself is never restated. A config field named like a shared option
  takes the shared help.

No command-line library is imported here: the library's configs know their help without typer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, Field, field
from typing import Any

SHARED: dict[str, str] = {
    "model": "Model: a directory or an HF Hub id (protlm's own, ESM-2, ProtBERT, RoBERTa, Longformer).",
    "tokenizer": "Tokenizer directory (`protlm tokenizer train`, or a model's).",
    "out": "Output:",
    "device": "auto (a GPU when there is one, else the CPU), cpu, cuda or cuda:N.",
    "precision": "auto (training: bf16 where it is measured faster on the device; inference: bf16 on a GPU, fp32 on "
    "the CPU), bf16 or fp32.",
    "corpus": "Single proteins: FASTA / TSV / CSV / Parquet (.gz too), or scl2205[:SPLIT] with SPLIT one of train, "
    "eval, heldout, full, train+eval, cv0-train ... cv4-test.",
    "id_col": "Id column of a TSV / CSV / Parquet input.",
    "seq_col": "Sequence column of a TSV / CSV / Parquet input.",
    "strict": "Reject the rare residues U, O, B, Z, J instead of mapping them to X.",
    "max_length": "Skip (and report) sequences longer than this many residues.",
    "max_tokens": "Longest input in tokens, special tokens included.",
    "tokens_per_batch": "Token budget of one batch (padded tokens).",
    "seed": "Random seed.",
    "sequences": "Sequences of the proteins an id table names: FASTA / TSV / Parquet (.gz too).",
    "split": "Split.",
    "data": "Task data (format by task: docs/finetune.md).",
    "background": "tcr: background CDR3 beta sequences, one per line, for negatives.",
    "cache_dir": "Tokenized-data cache (default ~/.cache/protlm).",
    "pdb": "PDB / mmCIF file(s) or folder(s) of them.",
    "fasta": "FASTA (or an id,sequence table) of the inputs:",
    "chains": "Chain names, comma-separated, e.g. A,B.",
    "top_k": "How many to keep.",
    "workers": "Tokenizing processes (one core each).",
    "memory_limit": "DuckDB memory limit; it spills to disk beyond it.",
    "negatives_per_positive": "Sampled non-binding pairs per positive.",
    "groups": "Clusters for the strict split: TSV 'representative<TAB>member' (mmseqs cluster.tsv).",
    "pairs": "Binding / non-binding pairs.",
    "config": "YAML recipe; flags given on the command line override it.",
    "report": "Self-contained HTML report (PNGs written beside it).",
    "reference": "Reference:",
    "strategy": "Variant scores: masked-marginal, wt-marginal, pll or span (docs/variants.md); on tokenizers whose "
    "tokens span several residues (BPE) the marginals become span.",
    "context": "span: tokens of context scored either side of the tokens a mutation changed.",
}


def setting(
    default: Any = MISSING,
    help: str | None = None,
    *,
    factory: Callable[[], Any] | None = None,
    parse: Callable[[str], Any] | None = None,
    note: str | None = None,
    off: str | None = None,
) -> Field:
    """A config field and its flag. `help` is required unless the field is named like a `SHARED`
    option, whose help it takes (`note` adds what this command accepts). `parse` turns the flag's text
    into the value (`0,1,2` -> [0, 1, 2]); `off` names a second flag that sets the field to "" (off)."""
    meta = {"help": help, "note": note, "parse": parse, "off": off}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def help_text(name: str, help: str | None = None, note: str | None = None) -> str:
    """The help of an option: its own, or the shared one; a command's note after it."""
    base = help if help is not None else SHARED.get(name)
    if base is None:
        raise KeyError(f"option {name!r} has no help: declare it in SHARED or give help=")
    return f"{base} {note}" if note else base
