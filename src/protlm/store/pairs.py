"""Pair stores: binding / non-binding pairs as protein indices into one corpus store.

    PAIRS/
      pairs.json     written last (the directory is renamed into place): format, fingerprint, counts,
                     the skip report
      proteins/      a corpus store (store/format.py) of every protein of the table once, ordered by id
      pairs.npy      (P, 2) int32 (int64 past 2^31 proteins): protein indices, in table order
      label.npy      (P,) uint8   1 binding, 0 non-binding
      split.npy      (P,) uint8   0 train, 1 dev, 2 test
      organism.npy   (N,) int64   NCBI taxon id of protein i for STRING ids `TAXID.ENSP...`, else -1
      known.npy      (K,) uint64  sorted keys min(a, b) << 32 | max(a, b) of every binding pair (all splits)

A pair costs 10 bytes, not two sequence copies; known links are looked up by binary search in
`known.npy`, never through a set of id strings. numpy reads every array without protlm.

Building one (`protlm pairs prepare`, or `pretrain --pairs TABLE` into the cache on first use) runs
on DuckDB, out of core: a pair table of any size (Parquet, TSV / CSV, a directory of
`pairs*.parquet` shards such as `pairs build-string` writes) is validated with the same rules as
`read_pairs` (labels, splits, the one residue policy; self-pairs, empty sequences and duplicate
unordered pairs skipped and counted), its proteins are deduplicated by id (one id with two
different sequences is an error naming both lines) and tokenized in parallel into `proteins/`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from protlm.errors import InputError, ProtlmError
from protlm.io import ResiduePolicy
from protlm.io.atomic import write_json
from protlm.io.lock import build_lock
from protlm.io.structured import read_json_object
from protlm.io.tables import table_header, table_kind
from protlm.io.validate import MAX_ID, NUCLEOTIDE_PATTERN, check_id
from protlm.pairs.table import PAIR_COLUMNS, SPLITS
from protlm.store.format import TokenStore, _load, cache_path, publish, read_meta, staging_dir

PAIR_FORMAT = "protlm-pair-store"
PAIR_VERSION = 1
LABELS_1 = ("1", "1.0", "True", "true")
LABELS_0 = ("0", "0.0", "False", "false")
_REQUIRED = ("id_a", "id_b", "seq_a", "seq_b")
_LINE = "__protlm_line"  # the source line of a TSV row converted to Parquet


def is_pair_store(path: str | Path) -> bool:
    return (Path(path) / "pairs.json").is_file()


class PairStore:
    """A prepared pair table, memory-mapped."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.meta = read_meta(self.path / "pairs.json", PAIR_FORMAT, PAIR_VERSION, "a pair store")
        self.proteins = TokenStore(self.path / "proteins")
        self.pairs = _load(self.path / "pairs.npy", mmap=True)
        self.label = _load(self.path / "label.npy", mmap=True)
        self.split = _load(self.path / "split.npy", mmap=True)
        self.organism = _load(self.path / "organism.npy", mmap=True)
        self.known = _load(self.path / "known.npy", mmap=True)
        n = int(self.meta["pairs"])
        if self.pairs.shape != (n, 2) or len(self.label) != n or len(self.split) != n:
            raise InputError(self.path / "pairs.npy", f"does not match pairs.json ({n:,} pairs): store damaged")
        if len(self.organism) != len(self.proteins):
            raise InputError(self.path / "organism.npy", "does not match the protein store: store damaged")

    def __len__(self) -> int:
        return len(self.label)

    @property
    def tokenizer_sha256(self) -> str:
        return self.proteins.tokenizer_sha256


# ----------------------------------------------------------------------------- building


def pair_table_files(spec: str | Path) -> list[Path]:
    """The files of a pair table: one file, a directory of `pairs*.parquet` shards, or `builtin`."""
    if str(spec) == "builtin":
        from protlm.pairs.build import builtin_pairs

        return [builtin_pairs()]
    path = Path(spec)
    if path.is_dir():
        shards = sorted(path.glob("pairs*.parquet"))
        if not shards:
            raise InputError(path, "directory holds no pairs*.parquet shards")
        return [p.resolve() for p in shards]
    if not path.is_file():
        raise InputError(path, "file not found")
    return [path.resolve()]


def pair_fingerprint(files: list[Path], tokenizer_sha: str, vocab: int, policy: ResiduePolicy) -> dict:
    ident = [{"path": str(f), "bytes": f.stat().st_size, "mtime_ns": f.stat().st_mtime_ns} for f in files]
    return {"format": PAIR_FORMAT, "version": PAIR_VERSION, "tokenizer_sha256": tokenizer_sha, "vocab_size": vocab,
            "policy": policy.identity(), "inputs": ident}  # fmt: skip


def _tsv_to_parquet(path: Path, out: Path, columns: list[str]) -> Path:
    """A TSV / CSV pair table as Parquet with each row's line number (DuckDB's CSV reader has none),
    streamed in batches through the one table reader."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from protlm.io.tables import iter_table_rows

    schema = pa.schema([(c, pa.string()) for c in columns] + [(_LINE, pa.int64())])
    with pq.ParquetWriter(out, schema) as writer:
        batch: list[tuple[int, dict]] = []
        for row in iter_table_rows(path, columns):
            batch.append(row)
            if len(batch) == 65_536:
                _write_rows(writer, schema, columns, batch)
                batch = []
        _write_rows(writer, schema, columns, batch)
    return out


def _write_rows(writer, schema, columns: list[str], rows: list[tuple[int, dict]]) -> None:
    import pyarrow as pa

    arrays = [pa.array([r[c] for _, r in rows], pa.string()) for c in columns]
    writer.write_batch(pa.RecordBatch.from_arrays([*arrays, pa.array([n for n, _ in rows], pa.int64())], schema=schema))


def _scan_sql(files: list[Path], work: Path, policy: ResiduePolicy) -> tuple[str, dict]:
    """SQL for `(file, line, id_a, id_b, seq_a, seq_b, label, split)` over every input file, with
    parameters. Only column names from PAIR_COLUMNS and integers are written into the SQL."""
    scans, params = [], {}
    for k, f in enumerate(files):
        header = table_header(f)
        missing = [c for c in _REQUIRED if c not in header]
        if missing:
            raise InputError(f, f"missing column(s) {', '.join(missing)}; the file has: {', '.join(header)}", line=1)
        present = [c for c in PAIR_COLUMNS if c in header]
        if table_kind(f) != "parquet":
            f = _tsv_to_parquet(f, work / f"table-{k}.parquet", present)
            line = _LINE
        else:
            _check_parquet_pages(f, present)  # before DuckDB decompresses a page of gigabytes
            line = "file_row_number + 2"  # iter_table_rows' convention: the header is line 1
        label = "coalesce(CAST(label AS VARCHAR), '')" if "label" in present else "'1'"
        split = "coalesce(nullif(trim(CAST(split AS VARCHAR)), ''), 'train')" if "split" in present else "'train'"
        cols = ", ".join(f"trim(coalesce(CAST({c} AS VARCHAR), '')) AS {c}" for c in _REQUIRED)
        scans.append(f"SELECT {k} AS file, {line} AS line, {cols}, trim({label}) AS label, {split} AS split "
                     f"FROM read_parquet($f{k}, file_row_number=true)")  # fmt: skip
        params[f"f{k}"] = str(f)
    return " UNION ALL ".join(scans), params


def _check_parquet_pages(path: Path, columns: list[str]) -> None:
    import pyarrow.parquet as pq

    from protlm.io.parquet_pages import check_pages

    check_pages(path, pq.ParquetFile(path), columns)


def _first_bad_row(con, files: list[Path], scan: str, params: dict, policy: ResiduePolicy) -> None:
    """Raise the error `read_pairs` would raise for the first invalid row (id, residues, label, split)."""
    labels = ", ".join(f"'{v}'" for v in LABELS_1 + LABELS_0)
    splits = ", ".join(f"'{s}'" for s in SPLITS)
    row = con.execute(
        f"""SELECT file, line, id_a, id_b, seq_a, seq_b, label, split FROM ({scan})
        WHERE NOT regexp_full_match(seq_a, $pattern) OR NOT regexp_full_match(seq_b, $pattern)
              OR ($strict AND (regexp_full_match(seq_a, $nucleotide) OR regexp_full_match(seq_b, $nucleotide)))
              OR label NOT IN ({labels}) OR split NOT IN ({splits})
              OR length(id_a) > $max_id OR length(id_b) > $max_id
        ORDER BY file, line LIMIT 1""",
        params
        | {"pattern": policy.pattern(), "strict": policy.strict, "nucleotide": NUCLEOTIDE_PATTERN, "max_id": MAX_ID},
    ).fetchall()
    if not row:
        return
    k, line, a, b, seq_a, seq_b, label, split = row[0]
    check_id(a, files[k], int(line))
    check_id(b, files[k], int(line))
    where = {"line": int(line), "record": f"{a}|{b}"}
    try:
        policy.clean(seq_a)
        policy.clean(seq_b)
    except ValueError as e:
        raise InputError(files[k], str(e), **where) from None
    if label not in LABELS_1 + LABELS_0:
        raise InputError(files[k], f"label must be 0 or 1, found {label!r}", **where)
    raise InputError(files[k], f"split must be one of {', '.join(SPLITS)}, found {split!r}", **where)


def _load_rows(con, files: list[Path], work: Path, policy: ResiduePolicy) -> None:
    """Tables `rows` (cleaned sequences, label 0/1, split 0/1/2, skip reason or NULL) and `prot`."""
    scan, params = _scan_sql(files, work, policy)
    _first_bad_row(con, files, scan, params, policy)
    labels_1 = ", ".join(f"'{v}'" for v in LABELS_1)
    con.execute(
        f"""CREATE TABLE raw AS
        SELECT file, line, id_a, id_b, {policy.sql_clean("seq_a")} AS seq_a, {policy.sql_clean("seq_b")} AS seq_b,
               CAST(label IN ({labels_1}) AS UTINYINT) AS label,
               CAST(CASE split WHEN 'dev' THEN 1 WHEN 'test' THEN 2 ELSE 0 END AS UTINYINT) AS split,
               CASE WHEN seq_a = '' OR seq_b = '' THEN 'empty sequence' WHEN id_a = id_b THEN 'self-pair' END AS skip,
               regexp_full_match(seq_a, $nucleotide) OR regexp_full_match(seq_b, $nucleotide) AS nucleotide
        FROM ({scan})""",
        params | {"nucleotide": NUCLEOTIDE_PATTERN},
    )
    # A later copy of an unordered pair is a duplicate (only among rows not skipped already, as read_pairs).
    con.execute("""
        CREATE TABLE rows AS
        SELECT file, line, id_a, id_b, seq_a, seq_b, label, split, nucleotide,
               CASE WHEN skip IS NULL AND row_number() OVER (
                        PARTITION BY skip IS NULL, least(id_a, id_b), greatest(id_a, id_b) ORDER BY file, line) > 1
                    THEN 'duplicate pair' ELSE skip END AS skip
        FROM raw""")
    con.execute("DROP TABLE raw")
    con.execute("""
        CREATE TABLE sides AS
        SELECT id_a AS id, seq_a AS seq, file, line FROM rows WHERE skip IS NULL
        UNION ALL SELECT id_b, seq_b, file, line FROM rows WHERE skip IS NULL""")
    clash = con.execute(
        "SELECT id FROM sides GROUP BY id HAVING count(DISTINCT seq) > 1 ORDER BY min(file), min(line) LIMIT 1"
    ).fetchall()
    if clash:
        clash = clash[0]
        seen = con.execute(
            "SELECT file, line, seq FROM sides WHERE id = $id ORDER BY file, line", {"id": clash[0]}
        ).fetchall()
        first = seen[0]
        k, line, _ = next(s for s in seen if s[2] != first[2])
        raise InputError(files[k], f"protein {clash[0]!r} has another sequence than at line {first[1]} of "
                                   f"{files[first[0]].name}", line=int(line))  # fmt: skip
    con.execute("CREATE TABLE prot AS SELECT id, any_value(seq) AS seq FROM sides GROUP BY id")
    con.execute("DROP TABLE sides")


def _skip_report(con, files: list[Path]) -> dict:
    counts = dict(con.execute("SELECT skip, count(*) FROM rows WHERE skip IS NOT NULL GROUP BY ALL").fetchall())
    read = con.execute("SELECT count(*) FROM rows").fetchall()[0][0]
    head = con.execute(
        "SELECT file, line, id_a, id_b, skip FROM rows WHERE skip IS NOT NULL ORDER BY file, line LIMIT 5"
    ).fetchall()
    name = (lambda k: f"{files[k].name} ") if len(files) > 1 else (lambda k: "")
    examples = [f"{name(k)}line {line} (record {a}|{b}): {why}" for k, line, a, b, why in head]
    nucleotide = con.execute(
        "SELECT file, line, id_a, id_b, count(*) OVER () FROM rows WHERE skip IS NULL AND nucleotide "
        "ORDER BY file, line LIMIT 1"
    ).fetchall()
    first = [f"{name(k)}line {line} (record {a}|{b})" for k, line, a, b, _ in nucleotide]
    return {"read": int(read), "used": int(read) - sum(counts.values()), "skipped": counts, "examples": examples,
            "nucleotide": int(nucleotide[0][4]) if nucleotide else 0, "nucleotide_first": "".join(first)}  # fmt: skip


def _register_store_ids(con, proteins: TokenStore) -> None:
    """Table `pidx(idx, id)` of the protein store, fed from its memory-mapped id blobs (no Python strings)."""
    import pyarrow as pa

    batches = []
    for s in range(len(proteins.starts) - 1):
        sh = proteins.maps.shard(s)
        n = len(sh.id_offsets) - 1
        ids = pa.LargeStringArray.from_buffers(n, pa.py_buffer(np.ascontiguousarray(sh.id_offsets)),
                                               pa.py_buffer(np.ascontiguousarray(sh.id_bytes)))  # fmt: skip
        start = int(proteins.starts[s])
        batches.append(pa.record_batch([pa.array(np.arange(start, start + n, dtype=np.int64)), ids], ["idx", "id"]))
    schema = pa.schema([("idx", pa.int64()), ("id", pa.large_string())])
    con.register("pidx_arrow", pa.Table.from_batches(batches, schema=schema))
    con.execute("CREATE TABLE pidx AS SELECT idx, CAST(id AS VARCHAR) AS id FROM pidx_arrow")
    con.unregister("pidx_arrow")


def _stream_to_npy(con, query: str, path: Path, n: int, columns: list[tuple[str, np.dtype]], shape) -> None:
    """Write a query's rows (in order) into a .npy array of `shape`, batch by batch."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=columns[0][1], shape=shape)
    pos = 0
    for batch in con.sql(query).to_arrow_reader(1_000_000):
        k = batch.num_rows
        cols = [batch.column(i).to_numpy(zero_copy_only=False).astype(dt) for i, (_, dt) in enumerate(columns)]
        out[pos : pos + k] = np.stack(cols, axis=1) if out.ndim == 2 else cols[0]
        pos += k
    if pos != n:
        raise ProtlmError(f"{path}: wrote {pos:,} rows, expected {n:,}")
    out.flush()
    del out


def _write_arrays(con, tmp: Path, n_proteins: int) -> dict:
    """pairs / label / split / organism / known .npy from the kept rows mapped onto the protein store."""
    con.execute("""
        CREATE TABLE final AS
        SELECT r.file, r.line, ia.idx AS a, ib.idx AS b, r.label, r.split
        FROM rows r JOIN pidx ia ON ia.id = r.id_a JOIN pidx ib ON ib.id = r.id_b WHERE r.skip IS NULL""")
    n = con.execute("SELECT count(*) FROM final").fetchall()[0][0]
    idx = np.int32 if n_proteins < 2**31 else np.int64
    order = "ORDER BY file, line"
    _stream_to_npy(con, f"SELECT a, b FROM final {order}", tmp / "pairs.npy", n, [("a", idx), ("b", idx)], (n, 2))
    _stream_to_npy(con, f"SELECT label FROM final {order}", tmp / "label.npy", n, [("label", np.uint8)], (n,))
    _stream_to_npy(con, f"SELECT split FROM final {order}", tmp / "split.npy", n, [("split", np.uint8)], (n,))
    taxid = "CASE WHEN regexp_full_match(id, '(?s)[0-9]{1,18}\\..*') THEN CAST(split_part(id, '.', 1) AS BIGINT) ELSE -1 END"  # noqa: E501
    _stream_to_npy(con, f"SELECT {taxid} FROM pidx ORDER BY idx", tmp / "organism.npy", n_proteins,
                   [("taxid", np.int64)], (n_proteins,))  # fmt: skip
    key = "(CAST(least(a, b) AS UBIGINT) << 32) | CAST(greatest(a, b) AS UBIGINT)"
    k = con.execute(f"SELECT count(DISTINCT {key}) FROM final WHERE label = 1").fetchall()[0][0]
    _stream_to_npy(con, f"SELECT DISTINCT {key} AS k FROM final WHERE label = 1 ORDER BY k", tmp / "known.npy", k,
                   [("k", np.uint64)], (k,))  # fmt: skip
    sizes = con.execute(
        "SELECT split, sum(label), count(*) - sum(label) FROM final GROUP BY split ORDER BY split"
    ).fetchall()
    lost = con.execute("SELECT count(*) FROM rows WHERE skip IS NULL").fetchall()[0][0] - n
    return {"pairs": int(n), "known": int(k), "lost": int(lost),
            "sizes": {SPLITS[s]: {"positives": int(p), "negatives": int(q)} for s, p, q in sizes}}  # fmt: skip


def prepare_pair_store(
    spec: str | Path,
    tokenizer_dir: str | Path,
    out: str | Path,
    policy: ResiduePolicy = ResiduePolicy(),
    workers: int = 1,
    memory_limit: str = "1GB",
    log: Callable[[str], None] = lambda s: None,
) -> dict:
    """Build the pair store of a pair table into `out` (renamed into place when complete); returns
    pairs.json. An existing store of the same fingerprint is kept; one of another is an error.
    Two processes building one store take turns: the later one finds it built."""
    with build_lock(Path(out), log):
        return _prepare_pair_store(spec, tokenizer_dir, out, policy, workers, memory_limit, log)


def _prepare_pair_store(spec, tokenizer_dir, out, policy, workers, memory_limit, log) -> dict:
    from protlm.io.duck import check_memory_limit, connect
    from protlm.store.inputs import Inputs, tokenizer_fingerprint
    from protlm.store.prepare import prepare_store

    check_memory_limit(memory_limit)
    files = pair_table_files(spec)
    _, tok_sha, vocab = tokenizer_fingerprint(tokenizer_dir)
    meta = pair_fingerprint(files, tok_sha, vocab, policy)
    out = Path(out).resolve()
    if is_pair_store(out):
        old = read_json_object(out / "pairs.json")
        if old.get("fingerprint") != meta:
            what = [k for k in meta if (old.get("fingerprint") or {}).get(k) != meta[k]]
            raise ProtlmError(f"{out}: a pair store prepared with different {', '.join(what)} is already there; "
                              "give another --out or delete it")  # fmt: skip
        return old
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ProtlmError(f"{out}: exists and is not a pair store; give an empty or new directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(out)
    work = tmp / ".work"
    con = connect(work, [f for f in files if table_kind(f) == "parquet"], memory_limit)
    try:
        _load_rows(con, files, work, policy)
        report = _skip_report(con, files)
        from protlm.io.duck import write_parquet

        n_prot = write_parquet(con, "SELECT id, seq AS sequence FROM prot ORDER BY id", {}, work / "proteins.parquet")
        if n_prot == 0:
            raise InputError(files[0], f"no usable pairs ({report['read']:,} read, all skipped: {report['skipped']})")
        log(f"{report['read']:,} pairs read, {report['used']:,} used, {n_prot:,} proteins: tokenizing")
        prepare_store(Inputs((str(work / "proteins.parquet"),)), tokenizer_dir, tmp / "proteins", policy,
                      workers=workers, log=log)  # fmt: skip
        proteins = TokenStore(tmp / "proteins")
        _register_store_ids(con, proteins)
        counts = _write_arrays(con, tmp, len(proteins))
    finally:
        con.close()
        shutil.rmtree(work, ignore_errors=True)
    skipped_proteins = proteins.meta["skip_report"]["skipped"]
    if counts["lost"]:  # proteins the store skipped (--max-length): their pairs go too, counted
        reason = "pairs with a protein skipped (" + ", ".join(skipped_proteins) + ")"
        report["skipped"][reason] = counts["lost"]
        report["used"] -= counts["lost"]
    result = {"format": PAIR_FORMAT, "version": PAIR_VERSION, "fingerprint": meta, "pairs": counts["pairs"],
              "proteins": len(proteins), "known_binding_pairs": counts["known"], "sizes": counts["sizes"],
              "skip_report": report}  # fmt: skip
    write_json(tmp / "pairs.json", result)
    publish(tmp, out)
    return result


def ensure_pair_store(
    spec: str | Path,
    tokenizer_dir: str | Path,
    policy: ResiduePolicy,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> Path:
    """The pair store for a spec: a pair store as given; a pair table (or `builtin`) prepared once into
    `cache_dir/pairs-<key>`, the key a hash of the fingerprint (tokenizer, policy, each file's path,
    size and modification time)."""
    from protlm.store.inputs import tokenizer_fingerprint

    if is_pair_store(spec):
        return Path(spec)
    _, sha, vocab = tokenizer_fingerprint(tokenizer_dir)
    path = cache_path("pairs", pair_fingerprint(pair_table_files(spec), sha, vocab, policy), cache_dir)
    if not is_pair_store(path):
        log(f"preparing {spec} into the pair store {path} (once)")
        workers = workers or max(1, min(4, os.cpu_count() or 1))
        prepare_pair_store(spec, tokenizer_dir, path, policy, workers=workers, log=log)
    return path
