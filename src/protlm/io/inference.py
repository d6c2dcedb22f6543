"""Reading sequences for inference (`embed`, `predict`, `attention export`): FASTA records or table rows
whose sequence may be an assembly, chains joined by `:` (ColabFold's convention for complexes).

An assembly stays one record (its chains joined) so that outputs keep one entry per input; the
model encodes it with the tokenizer's template (`<s> A </s></s> B </s>`). Chains are validated one by
one with the shared residue policy; an empty chain (`A::B`) is an error naming the line.
"""

from __future__ import annotations

from pathlib import Path

from protlm.errors import InputError
from protlm.io import ResiduePolicy, SeqRecord, SkipReport, is_fasta, iter_fasta, iter_table
from protlm.io.validate import check_id

CHAIN_SEP = ":"


def split_chains(raw: str, policy: ResiduePolicy, path, line: int | None, record: str) -> tuple[str, ...]:
    """`A:B:C` -> validated chains; an empty chain is an error (`A::B` is a typo, not a protein)."""
    chains = raw.split(CHAIN_SEP)
    out = []
    for k, chain in enumerate(chains, start=1):
        try:
            seq = policy.clean(chain.strip())
        except ValueError as e:
            where = f"chain {k}: " if len(chains) > 1 else ""
            raise InputError(path, f"{where}{e}", line=line, record=record) from None
        if not seq:
            raise InputError(path, f"chain {k} is empty (chains are joined with ':')", line=line, record=record)
        out.append(seq)
    return tuple(out)


def read_inputs(
    path: str | Path, policy: ResiduePolicy, report: SkipReport, id_col: str = "id", seq_col: str = "sequence"
):
    """Records to embed or predict: FASTA records or table rows whose sequence may be an assembly
    (chains joined by ':', kept joined in the returned sequence)."""
    for rec, chains in raw_chains(path, policy, report, id_col, seq_col):
        if policy.max_length is not None and sum(map(len, chains)) > policy.max_length:
            report.skip(f"longer than {policy.max_length} residues", rec.id, rec.line)
            continue
        report.n_used += 1
        yield SeqRecord(rec.id, CHAIN_SEP.join(chains), rec.description)


def raw_chains(path, policy: ResiduePolicy, report: SkipReport, id_col: str = "id", seq_col: str = "sequence"):
    """(raw record, validated chains) of a FASTA or table; a record without ':' is one chain.
    Duplicate ids and empty records are skipped and counted; every record is counted as read."""
    seen: set[str] = set()
    raw = iter_fasta(path, policy.keep(chains=True)) if is_fasta(path) else iter_table(path, id_col, seq_col)
    for rec in raw:
        check_id(rec.id, path, rec.line)
        report.n_read += 1
        if rec.id in seen:
            report.skip("duplicate id", rec.id, rec.line)
        elif rec.truncated:
            seen.add(rec.id)
            report.skip(f"longer than {policy.max_length} residues", rec.id, rec.line)
        elif not rec.seq.strip():
            report.skip("empty sequence", rec.id, rec.line)
        else:
            seen.add(rec.id)
            chains = split_chains(rec.seq, policy, path, rec.line, rec.id)
            report.note(rec.seq, rec.id, rec.line)
            yield rec, chains
