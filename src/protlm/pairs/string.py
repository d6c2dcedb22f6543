"""STRING pair builder on DuckDB: bounded memory whatever the size of the links file.

Reads STRING's own files: links (`protein.physical.links.v12.0.txt.gz`, or the `.detailed` /
`.full` variants: space-separated with a header that names `protein1 protein2 ... combined_score`,
ids `TAXID.ENSP...`) and sequences (`protein.sequences.v12.0.fa.gz`, same ids).

- Positives: unordered unique pairs with `combined_score >= min_score` (0-1000 scale), no self-pairs.
- Split (`strict` by default): every protein of a positive pair is assigned to one of
  train/dev/test by a seeded hash of its group (`groups`: a two-column TSV `representative member`,
  as written by `mmseqs easy-cluster` (`*_cluster.tsv`), so near-identical proteins stay on one
  side; default: each protein its own group); positives across splits are dropped and counted.
- Negatives: for each positive, random partners of the same organism *and split*, drawn by a
  seeded hash; a candidate is rejected when the pair appears in the links file at *any* score
  (or is a self-pair, or a duplicate); `negatives_per_positive` of them are kept per organism and
  split.
- Pairs longer than `max_tokens` under `tokenizer` (`<s> A </s></s> B </s>`) are dropped and counted.
Output: Parquet shards `pairs-*.parquet` with `id_a, id_b, seq_a, seq_b, label, split`, and
`report.json`. DuckDB spills to disk under `memory_limit`.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np

from protlm.errors import InputError, ProtlmError
from protlm.io import ResiduePolicy, open_text, read_sequences

OVERSAMPLE = 4  # candidate partners drawn per wanted negative before rejection


def _header(path: Path) -> list[str]:
    with open_text(path) as fh:
        header = fh.readline().split()
    missing = {"protein1", "protein2", "combined_score"} - set(header)
    if missing:
        raise InputError(path, f"not a STRING links file: header lacks {', '.join(sorted(missing))}", line=1)
    return header


def _duck_error(path: Path, err: Exception) -> InputError:
    text = str(err)
    m = re.search(r"Line: (\d+)", text)
    original = re.search(r"Original Line: (.*)", text)
    reason = text.splitlines()[2] if len(text.splitlines()) > 2 else text.splitlines()[0]
    if original:
        reason = f"{reason.strip()} in {original.group(1).strip()!r}"
    return InputError(path, f"malformed links line: {reason}", line=int(m.group(1)) if m else None)


def build_string_pairs(
    links: str | Path,
    sequences: str | Path,
    out: str | Path,
    min_score: int = 700,
    species: str | None = None,
    negatives_per_positive: float = 1.0,
    split: str = "strict",
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    tokenizer=None,
    max_tokens: int = 512,
    seed: int = 0,
    memory_limit: str = "1GB",
    threads: int | None = None,
    groups: str | Path | None = None,
    policy: ResiduePolicy = ResiduePolicy(),
) -> dict:
    """Build the pair set into `out`; returns the report (also written to out/report.json)."""
    import duckdb

    links, out = Path(links), Path(out)
    header = _header(links)
    if split not in ("strict", "random"):
        raise ProtlmError(f"--split must be strict or random, got {split!r}")
    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(out / ".work.duckdb"))
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"SET temp_directory = '{out / '.spill'}'")
    con.execute("SET preserve_insertion_order = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    cols = {c: ("INTEGER" if c not in ("protein1", "protein2") else "VARCHAR") for c in header}
    species_sql = f"AND protein1 LIKE '{int(species)}.%' AND protein2 LIKE '{int(species)}.%'" if species else ""
    report: dict = {"links": str(links), "sequences": str(sequences), "min_score": min_score, "species": species,
                    "split": split, "seed": seed, "memory_limit": memory_limit}  # fmt: skip
    try:
        # Every link once, as an unordered key (for the negative rule), and the positives.
        con.execute(f"""
            CREATE TABLE links AS
            SELECT least(protein1, protein2) AS a, greatest(protein1, protein2) AS b, max(combined_score) AS score
            FROM read_csv('{links}', delim=' ', header=true, columns={cols}, quote='', escape='')
            WHERE protein1 <> protein2 {species_sql}
            GROUP BY ALL""")
    except duckdb.Error as e:
        raise _duck_error(links, e) from None
    report["link_pairs"] = con.execute("SELECT count(*) FROM links").fetchone()[0]
    con.execute(f"CREATE TABLE pos AS SELECT a, b FROM links WHERE score >= {int(min_score)}")
    report["positives_at_threshold"] = con.execute("SELECT count(*) FROM pos").fetchone()[0]
    if report["positives_at_threshold"] == 0:
        raise ProtlmError(
            f"{links}: no pairs with combined_score >= {min_score}{' for species ' + species if species else ''}"
        )

    # Sequences of the proteins involved (streamed; ids missing from the FASTA are reported).
    wanted = {r[0] for r in con.execute("SELECT a FROM pos UNION SELECT b FROM pos").fetchall()}
    import pyarrow as pa

    ids, seqs = [], []
    for rec in read_sequences(sequences, policy):
        if rec.id in wanted:
            ids.append(rec.id)
            seqs.append(rec.seq)
    ntok = _token_lengths(tokenizer, seqs)
    prot_tbl = pa.table({"id": ids, "seq": seqs, "ntok": ntok})  # noqa: F841 - read by DuckDB below
    roots = np.sqrt(np.asarray(fractions, dtype=float))
    p = roots / roots.sum() if split == "strict" else np.asarray(fractions, dtype=float)
    # Strict splits hash the protein's group (e.g. its sequence-identity cluster) when given.
    if groups:
        con.execute(f"""CREATE TABLE grp AS SELECT DISTINCT ON (member) member, rep
            FROM read_csv('{groups}', delim='\t', header=false, columns={{'rep': 'VARCHAR', 'member': 'VARCHAR'}})""")
    else:
        con.execute("CREATE TABLE grp (member VARCHAR, rep VARCHAR)")
    bucket = f"(hash(coalesce(grp.rep, prot_tbl.id) || '{seed}') % 1000000) / 1000000.0"
    con.execute(f"""
        CREATE TABLE prot AS
        SELECT id, seq, ntok, split_part(id, '.', 1) AS taxid,
               CASE WHEN {bucket} < {p[0]} THEN 'train' WHEN {bucket} < {p[0] + p[1]} THEN 'dev' ELSE 'test' END AS split
        FROM prot_tbl LEFT JOIN grp ON grp.member = prot_tbl.id""")
    report["proteins_without_sequence"] = len(wanted) - len(ids)
    report["positives_missing_sequence"] = con.execute(
        "SELECT count(*) FROM pos WHERE a NOT IN (SELECT id FROM prot) OR b NOT IN (SELECT id FROM prot)"
    ).fetchone()[0]
    pair_split = (
        "pa.split"
        if split == "strict"
        else f"CASE WHEN (hash(pos.a || pos.b || '{seed}') % 1000000) / 1000000.0 < {p[0]} THEN 'train' WHEN (hash(pos.a || pos.b || '{seed}') % 1000000) / 1000000.0 < {p[0] + p[1]} THEN 'dev' ELSE 'test' END"
    )
    cross = "AND pa.split = pb.split" if split == "strict" else ""
    con.execute(f"""
        CREATE TABLE pos_kept AS
        SELECT pos.a, pos.b, {pair_split} AS split, pa.taxid, pa.ntok + pb.ntok + 4 AS ntok
        FROM pos JOIN prot pa ON pa.id = pos.a JOIN prot pb ON pb.id = pos.b WHERE true {cross}""")
    kept = con.execute("SELECT count(*) FROM pos_kept").fetchone()[0]
    report["positives_across_splits"] = report["positives_at_threshold"] - report["positives_missing_sequence"] - kept

    # Negatives: hash-drawn partners within (organism, split); anti-join against every link.
    group = "taxid, split" if split == "strict" else "taxid"
    con.execute(f"""
        CREATE TABLE pool AS
        SELECT id, {group}, row_number() OVER (PARTITION BY {group} ORDER BY id) - 1 AS k,
               count(*) OVER (PARTITION BY {group}) AS n
        FROM prot WHERE id IN (SELECT a FROM pos_kept UNION SELECT b FROM pos_kept)""")
    m = max(1, int(np.ceil(negatives_per_positive * OVERSAMPLE)))
    join_split = "AND q.split = pa.split" if split == "strict" else ""
    con.execute(f"""
        CREATE TABLE cand AS
        SELECT DISTINCT least(pos_kept.a, q.id) AS a, greatest(pos_kept.a, q.id) AS b, pos_kept.split, pos_kept.taxid
        FROM pos_kept CROSS JOIN range({m}) r(j)
        JOIN pool pa ON pa.id = pos_kept.a
        JOIN pool q ON q.taxid = pa.taxid {join_split}
             AND q.k = hash(pos_kept.a || pos_kept.b || r.j::VARCHAR || '{seed}') % pa.n
        WHERE q.id <> pos_kept.a""")
    con.execute("""
        CREATE TABLE neg_all AS
        SELECT c.* FROM cand c ANTI JOIN links l ON l.a = c.a AND l.b = c.b""")
    con.execute(f"""
        CREATE TABLE neg AS
        WITH ranked AS (
            SELECT n.*, row_number() OVER (PARTITION BY n.taxid, n.split ORDER BY hash(n.a || n.b || '{seed}')) AS r
            FROM neg_all n),
        wanted AS (SELECT taxid, split, round({negatives_per_positive} * count(*)) AS w FROM pos_kept GROUP BY ALL)
        SELECT ranked.a, ranked.b, ranked.split FROM ranked JOIN wanted USING (taxid, split) WHERE r <= w""")
    report["negatives"] = con.execute("SELECT count(*) FROM neg").fetchone()[0]
    report["negatives_short"] = max(0, round(negatives_per_positive * kept) - report["negatives"])

    con.execute("""
        CREATE VIEW final AS
        SELECT x.a AS id_a, x.b AS id_b, pa.seq AS seq_a, pb.seq AS seq_b, x.label, x.split,
               pa.ntok + pb.ntok + 4 AS ntok
        FROM (SELECT a, b, 1 AS label, split FROM pos_kept UNION ALL SELECT a, b, 0, split FROM neg) x
        JOIN prot pa ON pa.id = x.a JOIN prot pb ON pb.id = x.b""")
    over = f"ntok > {int(max_tokens)}" if tokenizer is not None else "false"
    report["pairs_over_max_tokens"] = dict(
        con.execute(
            f"SELECT CASE label WHEN 1 THEN 'positives' ELSE 'negatives' END, count(*) FROM final WHERE {over} GROUP BY ALL"
        ).fetchall()
    )
    for old in out.glob("pairs-*.parquet"):
        old.unlink()
    con.execute(f"""
        COPY (SELECT id_a, id_b, seq_a, seq_b, label, split FROM final WHERE NOT ({over}) ORDER BY split, label DESC, id_a, id_b)
        TO '{out}/pairs-0.parquet' (FORMAT parquet, ROW_GROUP_SIZE 100000)""")
    report["sizes"] = {
        s: {"positives": int(pos_n), "negatives": int(neg_n)}
        for s, pos_n, neg_n in con.execute(
            f"SELECT split, sum(label), sum(1 - label) FROM final WHERE NOT ({over}) GROUP BY split ORDER BY split"
        ).fetchall()
    }
    con.close()
    (out / ".work.duckdb").unlink(missing_ok=True)
    shutil.rmtree(out / ".spill", ignore_errors=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _token_lengths(tokenizer, seqs: list[str]) -> list[int]:
    """Content tokens per sequence (0 without a tokenizer: lengths are then not checked)."""
    if tokenizer is None:
        return [0] * len(seqs)
    from protlm.tokenized import tokenize

    return tokenize(tokenizer, [""] * len(seqs), seqs).lengths.tolist()
