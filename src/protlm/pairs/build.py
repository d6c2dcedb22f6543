"""Build a pair set (positives + sampled negatives, split) from an id-pair table and sequences."""

from __future__ import annotations

from collections import Counter
from importlib import resources
from pathlib import Path

import numpy as np

from protlm.errors import ProtlmError
from protlm.io import ResiduePolicy, SkipReport
from protlm.io.atomic import refuse_links, write_json
from protlm.pairs.generic import read_id_pairs
from protlm.pairs.splits import empty_split_warning, sample_negatives, split_pairs
from protlm.pairs.table import SPLITS, Pair, read_pairs, write_pairs

BUILTIN = "omnipath_human_pairs.parquet"


def builtin_pairs() -> Path:
    """The pair set shipped inside the package (see docs/pairs.md for provenance and licence)."""
    return Path(str(resources.files("protlm") / "data" / BUILTIN))


def build_pairs(
    pairs_path: str | Path,
    sequences_path: str | Path,
    out: str | Path,
    split: str = "strict",
    negatives_per_positive: float = 1.0,
    seed: int = 0,
    policy: ResiduePolicy = ResiduePolicy(),
    groups: str | Path | None = None,
) -> dict:
    """Write `out/pairs.parquet` and `out/report.json`; returns the report.

    `groups`: TSV `representative<TAB>member` (mmseqs cluster.tsv) kept on one side of a strict split.
    """
    refuse_links(out)
    report, seq_report = SkipReport(str(pairs_path)), SkipReport(str(sequences_path))
    positives = [p for p in read_id_pairs(pairs_path, sequences_path, policy, report, seq_report=seq_report)
                 if p.label == 1]  # fmt: skip
    if not positives:
        raise ProtlmError(f"{pairs_path}: no usable positive pairs ({report.summary()})")
    group_map = read_groups(groups) if groups else None
    kept, dropped = split_pairs(positives, split, seed=seed, groups=group_map)
    negatives = sample_negatives(kept, negatives_per_positive, seed=seed)
    out = Path(out)
    n = write_pairs(kept + negatives, out / "pairs.parquet")
    result = {
        "source": {"pairs": str(pairs_path), "sequences": str(sequences_path)},
        "read": report.summary(),
        "sequences_read": seq_report.summary(),
        "skip_examples": report.examples,
        "split": split,
        "dropped": dict(dropped),
        "rows": n,
        "sizes": (sizes := summarize(kept + negatives)["sizes"]),
        # a split with too few proteins cannot supply every negative: say how many are missing
        "negatives_short": {
            k: round(negatives_per_positive * v["positives"]) - v["negatives"]
            for k, v in sizes.items()
            if round(negatives_per_positive * v["positives"]) > v["negatives"]
        },
        "negative_rule": "random pairs of proteins of the same split, never a known positive, never a self-pair",
        "seed": seed,
        "warnings": [w for w in (empty_split_warning(sizes, split),) if w],
    }
    write_json(out / "report.json", result)
    return result


def read_groups(path: str | Path) -> dict[str, str]:
    """member -> representative from a two-column TSV (`mmseqs easy-cluster` *_cluster.tsv)."""
    from protlm.io.fasta import open_text
    from protlm.io.tables import bounded_lines

    out = {}
    with open_text(path) as fh:
        for line_no, line in enumerate(bounded_lines(fh, path), start=1):
            fields = line.rstrip("\r\n").split("\t")
            if fields == [""]:
                continue
            if len(fields) != 2:
                raise ProtlmError(
                    f"{path} line {line_no}: expected 'representative<TAB>member', found {len(fields)} fields"
                )
            out[fields[1]] = fields[0]
    return out


def summarize(pairs: list[Pair], tokenizer=None) -> dict:
    """Label balance per split and length distribution (residues, and tokens with a tokenizer)."""
    sizes = {s: dict(Counter(p.label for p in pairs if p.split == s)) for s in SPLITS}
    sizes = {s: {"positives": c.get(1, 0), "negatives": c.get(0, 0)} for s, c in sizes.items()}
    res = np.array([len(p.seq_a) + len(p.seq_b) for p in pairs])
    stats = {"pairs": len(pairs), "sizes": sizes, "residues_per_pair": _quantiles(res)}
    if tokenizer is not None and pairs:
        lengths = [len(t) for t in tokenizer.encode_batch([s for p in pairs for s in (p.seq_a, p.seq_b)])]
        tok = np.add.reduceat(np.array(lengths), np.arange(0, len(lengths), 2)) + tokenizer.template.overhead(2)
        stats["tokens_per_pair"] = _quantiles(tok)
        stats["over_512_tokens_pct"] = float(100 * (tok > 512).mean())
    return stats


def _quantiles(x: np.ndarray) -> dict:
    if len(x) == 0:
        return {}
    q = np.percentile(x, [0, 50, 90, 99, 100])
    return {
        "mean": float(x.mean()),
        "min": int(q[0]),
        "median": int(q[1]),
        "p90": int(q[2]),
        "p99": int(q[3]),
        "max": int(q[4]),
    }


def pairs_stats(path: str | Path, tokenizer=None) -> dict:
    """Stats of a pair directory (its pairs.parquet) or a pair table file."""
    return summarize(list(read_pairs(path)), tokenizer)
