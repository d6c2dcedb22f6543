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
- Pairs longer than `max_tokens` under `tokenizer` (its pair template, e.g. `<s> A </s></s> B </s>`) are dropped
  and counted.
Output: Parquet shards `pairs-*.parquet` with `id_a, id_b, seq_a, seq_b, label, split`, and
`report.json`, each renamed into place when complete. DuckDB spills to disk under `memory_limit`.

Safety (SECURITY.md): no input string is ever pasted into SQL. Options are validated before any SQL
runs, header words must be identifiers, and paths and values go as bound parameters. DuckDB itself
may read only the links and groups files and write only its work directory, and that configuration
is locked before the first query, so even a missed injection could not touch other files.
"""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from protlm.errors import InputError, ProtlmError
from protlm.hashing import sql_unit
from protlm.io import ResiduePolicy, SkipReport, open_text, read_sequences
from protlm.io.atomic import new_temp_dir, output_dir, write_json
from protlm.io.duck import check_memory_limit, connect, write_parquet
from protlm.io.fasta import MAX_HEADER
from protlm.io.tables import bounded_lines
from protlm.pairs.splits import empty_split_warning

OVERSAMPLE = 4  # candidate partners drawn per wanted negative before rejection
_WORD = re.compile(r"[A-Za-z0-9_]+")


@dataclass(frozen=True)
class StringOptions:
    """Every option of the builder, validated before any SQL runs (`check`)."""

    min_score: int = 700
    species: str | None = None
    negatives_per_positive: float = 1.0
    split: str = "strict"
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    max_tokens: int = 512
    seed: int = 0
    memory_limit: str = "1GB"
    threads: int | None = None

    def check(self) -> StringOptions:
        def bad(option: str, why: str):
            raise ProtlmError(f"{option} {why}")

        if type(self.min_score) is not int or not 0 <= self.min_score <= 1000:
            bad("--min-score", f"must be an integer from 0 to 1000 (STRING's scale), got {self.min_score!r}")
        if self.species is not None and not re.fullmatch(r"[0-9]{1,10}", str(self.species)):
            bad("--species", f"must be an NCBI taxon id such as 9606, got {self.species!r}")
        n = self.negatives_per_positive
        if not isinstance(n, int | float) or not math.isfinite(n) or not 0 <= n <= 1000:
            bad("--negatives-per-positive", f"must be a number from 0 to 1000, got {n!r}")
        if self.split not in ("strict", "random"):
            bad("--split", f"must be strict or random, got {self.split!r}")
        f = self.fractions
        if len(f) != 3 or not all(isinstance(x, int | float) and math.isfinite(x) and x >= 0 for x in f) or sum(f) <= 0:
            bad("fractions", f"must be three non-negative numbers with a positive sum, got {f!r}")
        if type(self.max_tokens) is not int or self.max_tokens < 1:
            bad("--max-tokens", f"must be a positive integer, got {self.max_tokens!r}")
        if type(self.seed) is not int:
            bad("--seed", f"must be an integer, got {self.seed!r}")
        check_memory_limit(self.memory_limit)
        if self.threads is not None and (type(self.threads) is not int or self.threads < 1):
            bad("--threads", f"must be a positive integer, got {self.threads!r}")
        return self

    def split_cuts(self) -> tuple[float, float]:
        """Cumulative hash cut-offs of train and dev. Strict splits hash proteins, and a pair stays
        only when both proteins fall on one side, so protein shares are the square roots."""
        f = np.asarray(self.fractions, dtype=float)
        p = np.sqrt(f) / np.sqrt(f).sum() if self.split == "strict" else f / f.sum()
        return float(p[0]), float(p[0] + p[1])


def _header(path: Path) -> list[str]:
    """The links file's column names, each an identifier (they become DuckDB column names)."""
    with open_text(path) as fh:  # a bounded readline: one huge line costs MAX_HEADER characters, no more
        header = next(bounded_lines(fh, path, MAX_HEADER), "").split()
    for word in header:
        if not _WORD.fullmatch(word):
            raise InputError(path, f"header word {word[:40]!r} is not a column name (letters, digits, _)", line=1)
    if len(set(header)) != len(header):
        raise InputError(path, "header repeats a column name", line=1)
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


def _load_links(con, links: Path, header: list[str], opts: StringOptions) -> None:
    """`links`: every linked pair once (unordered, max score); `pos`: those at the threshold."""
    import duckdb

    # The column spec is built from header words that passed _WORD, so it is a literal of identifiers.
    columns = ", ".join(f"'{c}': '{'VARCHAR' if c in ('protein1', 'protein2') else 'INTEGER'}'" for c in header)
    species = "AND protein1 LIKE $prefix AND protein2 LIKE $prefix" if opts.species else ""
    params = {"links": str(links)} | ({"prefix": f"{opts.species}.%"} if opts.species else {})
    try:
        con.execute(
            f"""CREATE TABLE links AS
            SELECT least(protein1, protein2) AS a, greatest(protein1, protein2) AS b, max(combined_score) AS score
            FROM read_csv($links, delim=' ', header=true, columns={{{columns}}}, quote='', escape='')
            WHERE protein1 <> protein2 {species}
            GROUP BY ALL""",
            params,
        )
    except duckdb.Error as e:
        raise _duck_error(links, e) from None
    con.execute("CREATE TABLE pos AS SELECT a, b FROM links WHERE score >= $min_score", {"min_score": opts.min_score})


def _load_proteins(
    con, sequences, groups: Path | None, tokenizer, policy: ResiduePolicy, opts: StringOptions
) -> tuple[int, int, SkipReport]:
    """`prot`: id, sequence, token count, organism and split of each protein in a positive; returns
    (proteins with a sequence, proteins in the positives, the sequence file's skip report)."""
    import pyarrow as pa

    wanted = {r[0] for r in con.execute("SELECT a FROM pos UNION SELECT b FROM pos").fetchall()}
    ids, seqs = [], []
    report = SkipReport(str(sequences))
    for rec in read_sequences(sequences, policy, report):
        if rec.id in wanted:
            ids.append(rec.id)
            seqs.append(rec.seq)
    report.require_used()
    if not ids:
        raise InputError(sequences, f"no sequence for any of the {len(wanted):,} proteins in the positive pairs")
    con.register("prot_tbl", pa.table({"id": ids, "seq": seqs, "ntok": _token_lengths(tokenizer, seqs)}))
    if groups:
        con.execute(
            """CREATE TABLE grp AS SELECT DISTINCT ON (member) member, rep
            FROM read_csv($groups, delim='\t', header=false, columns={'rep': 'VARCHAR', 'member': 'VARCHAR'})""",
            {"groups": str(groups)},
        )
    else:
        con.execute("CREATE TABLE grp (member VARCHAR, rep VARCHAR)")
    # Strict splits hash the protein's group (e.g. its sequence-identity cluster) when given.
    cut_train, cut_dev = opts.split_cuts()
    con.execute(
        f"""CREATE TABLE prot AS
        WITH h AS (SELECT prot_tbl.*, {sql_unit("coalesce(grp.rep, prot_tbl.id)", "seed")} AS u
                   FROM prot_tbl LEFT JOIN grp ON grp.member = prot_tbl.id)
        SELECT id, seq, ntok, split_part(id, '.', 1) AS taxid,
               CASE WHEN u < $train THEN 'train' WHEN u < $dev THEN 'dev' ELSE 'test' END AS split
        FROM h""",
        {"seed": str(opts.seed), "train": cut_train, "dev": cut_dev},
    )
    con.unregister("prot_tbl")
    return len(ids), len(wanted), report


def _keep_positives(con, opts: StringOptions, overhead: int) -> None:
    """`pos_kept`: positives with both sequences, split, organism and token count (strict: same split)."""
    cut_train, cut_dev = opts.split_cuts()
    if opts.split == "strict":
        split, cross = "pa.split", "AND pa.split = pb.split"
    else:
        u = sql_unit("pos.a || '|' || pos.b", "seed")  # the key `pairs build` hashes: 'id_a|id_b'
        split = f"CASE WHEN {u} < $train THEN 'train' WHEN {u} < $dev THEN 'dev' ELSE 'test' END"
        cross = ""
    con.execute(
        f"""CREATE TABLE pos_kept AS
        SELECT pos.a, pos.b, {split} AS split, pa.taxid, pa.ntok + pb.ntok + {int(overhead)} AS ntok
        FROM pos JOIN prot pa ON pa.id = pos.a JOIN prot pb ON pb.id = pos.b WHERE true {cross}""",
        {"seed": str(opts.seed), "train": cut_train, "dev": cut_dev} if opts.split == "random" else {},
    )


def _draw_negatives(con, opts: StringOptions) -> None:
    """`neg`: hash-drawn partners within (organism[, split]) that are linked at no score."""
    group = "taxid, split" if opts.split == "strict" else "taxid"
    con.execute(f"""
        CREATE TABLE pool AS
        SELECT id, {group}, row_number() OVER (PARTITION BY {group} ORDER BY id) - 1 AS k,
               count(*) OVER (PARTITION BY {group}) AS n
        FROM prot WHERE id IN (SELECT a FROM pos_kept UNION SELECT b FROM pos_kept)""")
    join_split = "AND q.split = pa.split" if opts.split == "strict" else ""
    con.execute(
        f"""CREATE TABLE cand AS
        SELECT DISTINCT least(pos_kept.a, q.id) AS a, greatest(pos_kept.a, q.id) AS b, pos_kept.split, pos_kept.taxid
        FROM pos_kept CROSS JOIN range($m) r(j)
        JOIN pool pa ON pa.id = pos_kept.a
        JOIN pool q ON q.taxid = pa.taxid {join_split}
             AND q.k = hash(pos_kept.a || pos_kept.b || r.j::VARCHAR || $seed) % pa.n
        WHERE q.id <> pos_kept.a""",
        {"m": max(1, math.ceil(opts.negatives_per_positive * OVERSAMPLE)), "seed": str(opts.seed)},
    )
    con.execute("CREATE TABLE neg_all AS SELECT c.* FROM cand c ANTI JOIN links l ON l.a = c.a AND l.b = c.b")
    con.execute(
        """CREATE TABLE neg AS
        WITH ranked AS (
            SELECT n.*, row_number() OVER (PARTITION BY n.taxid, n.split ORDER BY hash(n.a || n.b || $seed)) AS r
            FROM neg_all n),
        wanted AS (SELECT taxid, split, round($ratio * count(*)) AS w FROM pos_kept GROUP BY ALL)
        SELECT ranked.a, ranked.b, ranked.split FROM ranked JOIN wanted USING (taxid, split) WHERE r <= w""",
        {"seed": str(opts.seed), "ratio": float(opts.negatives_per_positive)},
    )


def _write_pairs(con, out: Path, limit: int | None, overhead: int) -> dict:
    """Stream the final pairs into out/pairs-0.parquet (renamed into place); returns sizes per split."""

    con.execute(f"""
        CREATE VIEW final AS
        SELECT x.a AS id_a, x.b AS id_b, pa.seq AS seq_a, pb.seq AS seq_b, x.label, x.split,
               pa.ntok + pb.ntok + {int(overhead)} AS ntok
        FROM (SELECT a, b, 1 AS label, split FROM pos_kept UNION ALL SELECT a, b, 0, split FROM neg) x
        JOIN prot pa ON pa.id = x.a JOIN prot pb ON pb.id = x.b""")
    fits = "ntok <= $limit" if limit is not None else "true"
    params = {"limit": limit} if limit is not None else {}
    for old in out.glob("pairs-*.parquet"):
        old.unlink()
    write_parquet(
        con,
        f"""SELECT id_a, id_b, seq_a, seq_b, label, split FROM final WHERE {fits}
        ORDER BY split, label DESC, id_a, id_b""",
        params,
        out / "pairs-0.parquet",
    )  # no column of `final` holds nulls
    over = con.execute(
        f"SELECT CASE label WHEN 1 THEN 'positives' ELSE 'negatives' END, count(*) FROM final WHERE NOT ({fits}) "
        "GROUP BY ALL",
        params,
    ).fetchall()
    sizes = con.execute(
        f"SELECT split, sum(label), sum(1 - label) FROM final WHERE {fits} GROUP BY split ORDER BY split", params
    ).fetchall()
    return {"pairs_over_max_tokens": dict(over),
            "sizes": {s: {"positives": int(p), "negatives": int(n)} for s, p, n in sizes}}  # fmt: skip


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
    opts = StringOptions(min_score, species, negatives_per_positive, split, tuple(fractions), max_tokens, seed,
                         str(memory_limit), threads).check()  # fmt: skip
    links, out = Path(links).resolve(), Path(out).resolve()
    groups = Path(groups).resolve() if groups else None
    for f in (links, Path(sequences), groups):
        if f is not None and not f.is_file():
            raise InputError(f, "file not found")
    header = _header(links)
    output_dir(out)
    for stale in out.glob(".work*"):
        shutil.rmtree(stale, ignore_errors=True)  # a killed earlier run's leftovers
    work = new_temp_dir(out / ".work")
    con = connect(work, [p for p in (links, groups) if p], opts.memory_limit, opts.threads)
    try:
        report = _build(con, links, header, sequences, out, groups, tokenizer, policy, opts)
    finally:
        con.close()
        shutil.rmtree(work, ignore_errors=True)
    write_json(out / "report.json", report)
    return report


def _build(
    con, links: Path, header: list[str], sequences, out: Path, groups, tokenizer, policy, opts: StringOptions
) -> dict:
    """The stages in order, each a table in `con`; returns the report."""
    settings = {k: v for k, v in asdict(opts).items() if k in ("min_score", "species", "split", "seed", "memory_limit")}
    report: dict = {"links": str(links), "sequences": str(sequences)} | settings
    _load_links(con, links, header, opts)
    report["link_pairs"] = con.execute("SELECT count(*) FROM links").fetchone()[0]
    report["positives_at_threshold"] = con.execute("SELECT count(*) FROM pos").fetchone()[0]
    if report["positives_at_threshold"] == 0:
        for_species = f" for species {opts.species}" if opts.species else ""
        raise ProtlmError(f"{links}: no pairs with combined_score >= {opts.min_score}{for_species}")
    with_seq, wanted, read = _load_proteins(con, sequences, groups, tokenizer, policy, opts)
    report["sequences_read"] = read.summary()
    report["proteins_without_sequence"] = wanted - with_seq
    report["positives_missing_sequence"] = con.execute(
        "SELECT count(*) FROM pos WHERE a NOT IN (SELECT id FROM prot) OR b NOT IN (SELECT id FROM prot)"
    ).fetchone()[0]
    _keep_positives(con, opts, _overhead(tokenizer))
    kept = con.execute("SELECT count(*) FROM pos_kept").fetchone()[0]
    report["positives_across_splits"] = report["positives_at_threshold"] - report["positives_missing_sequence"] - kept
    _draw_negatives(con, opts)
    report["negatives"] = con.execute("SELECT count(*) FROM neg").fetchone()[0]
    report["negatives_short"] = max(0, round(opts.negatives_per_positive * kept) - report["negatives"])
    report |= _write_pairs(con, out, opts.max_tokens if tokenizer is not None else None, _overhead(tokenizer))
    report["warnings"] = [w for w in (empty_split_warning(report["sizes"], opts.split),) if w]
    return report


def _overhead(tokenizer) -> int:
    """Special tokens around a pair under the tokenizer's template (an int of ours: safe in SQL text)."""
    return int(tokenizer.template.overhead(2)) if tokenizer is not None else 4


def _token_lengths(tokenizer, seqs: list[str]) -> list[int]:
    """Content tokens per sequence (0 without a tokenizer: lengths are then not checked)."""
    if tokenizer is None:
        return [0] * len(seqs)
    from protlm.tokenized import tokenize

    return tokenize(tokenizer, [""] * len(seqs), seqs).lengths.tolist()
