"""Assembly stores: inputs of 2+ proteins as index lists into one corpus store of their chains.

    ASM/
      assemblies.json   written last (the directory is renamed into place): format, fingerprint, counts,
                        the skip report
      proteins/         a corpus store (store/format.py) of every member protein once, ordered by id
      members.npy       (M,) int32 (int64 past 2^31 proteins): protein indices of every assembly, concatenated
      offsets.npy       (A + 1,) int64: assembly k is members[offsets[k]:offsets[k + 1]], in input order

Sources are those of `pairs/assemblies.read_assemblies`: a FASTA whose records join chains with ':'
(chain k of record R is protein `R:k`), or an `id, members` table plus the members' sequences. The
reader validates as everywhere else; proteins are written once to Parquet, tokenized in parallel by
`prepare_store`, and the assemblies become arrays. The build holds one id string per distinct member
protein (complexes number in the hundreds of thousands, not the billions of STRING links).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from protlm.errors import InputError, ProtlmError
from protlm.io import ResiduePolicy, SkipReport
from protlm.io.atomic import write_json
from protlm.io.lock import build_lock
from protlm.io.structured import read_json_object
from protlm.store.format import TokenStore, _load, cache_path, publish, read_meta, staging_dir

ASM_FORMAT = "protlm-assembly-store"
ASM_VERSION = 1


def is_assembly_store(path: str | Path) -> bool:
    return (Path(path) / "assemblies.json").is_file()


class AssemblyStore:
    """A prepared assembly set, memory-mapped."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.meta = read_meta(self.path / "assemblies.json", ASM_FORMAT, ASM_VERSION, "an assembly store")
        self.proteins = TokenStore(self.path / "proteins")
        self.members = _load(self.path / "members.npy", mmap=True)
        self.offsets = _load(self.path / "offsets.npy")
        n = int(self.meta["assemblies"])
        if len(self.offsets) != n + 1 or int(self.offsets[-1]) != len(self.members):
            raise InputError(self.path / "offsets.npy", f"does not match assemblies.json ({n:,}): store damaged")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def tokenizer_sha256(self) -> str:
        return self.proteins.tokenizer_sha256


def _identity(files: list[Path]) -> list[dict]:
    return [{"path": str(f), "bytes": f.stat().st_size, "mtime_ns": f.stat().st_mtime_ns} for f in files]


def assembly_fingerprint(spec, sequences, tokenizer_sha: str, vocab: int, policy: ResiduePolicy) -> dict:
    files = [Path(p).resolve() for p in (spec, sequences) if p is not None]
    for f in files:
        if not f.is_file():
            raise InputError(f, "file not found")
    return {"format": ASM_FORMAT, "version": ASM_VERSION, "tokenizer_sha256": tokenizer_sha, "vocab_size": vocab,
            "policy": policy.identity(), "inputs": _identity(files)}  # fmt: skip


def prepare_assembly_store(
    spec: str | Path,
    sequences: str | Path | None,
    tokenizer_dir: str | Path,
    out: str | Path,
    policy: ResiduePolicy = ResiduePolicy(),
    workers: int = 1,
    log: Callable[[str], None] = lambda s: None,
) -> dict:
    """Build the assembly store of `spec` into `out` (renamed into place when complete); returns
    assemblies.json. An existing store of the same fingerprint is kept; one of another is an error.
    Two processes building one store take turns: the later one finds it built."""
    with build_lock(Path(out), log):
        return _prepare_assembly_store(spec, sequences, tokenizer_dir, out, policy, workers, log)


def _prepare_assembly_store(spec, sequences, tokenizer_dir, out, policy, workers, log) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from protlm.pairs.assemblies import read_assemblies
    from protlm.store.inputs import Inputs, tokenizer_fingerprint
    from protlm.store.prepare import prepare_store

    _, tok_sha, vocab = tokenizer_fingerprint(tokenizer_dir)
    meta = assembly_fingerprint(spec, sequences, tok_sha, vocab, policy)
    out = Path(out).resolve()
    if is_assembly_store(out):
        old = read_json_object(out / "assemblies.json")
        if old.get("fingerprint") != meta:
            raise ProtlmError(f"{out}: an assembly store of other inputs, tokenizer or policy is already there; "
                              "give another --out or delete it")  # fmt: skip
        return old
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ProtlmError(f"{out}: exists and is not an assembly store; give an empty or new directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(out)
    report = SkipReport(str(spec))
    seqs: dict[str, str] = {}
    sizes: list[int] = []
    names: list[str] = []
    for asm in read_assemblies(spec, sequences, policy, report):
        for pid, seq in zip(asm.member_ids, asm.seqs, strict=True):
            seqs.setdefault(pid, seq)
        sizes.append(len(asm.member_ids))
        names.extend(asm.member_ids)
    if not sizes:
        shutil.rmtree(tmp, ignore_errors=True)
        report.require_used()
        raise InputError(spec, f"no usable assemblies ({report.summary()})")
    ids = sorted(seqs)
    table = tmp / ".work" / "proteins.parquet"
    pq.write_table(pa.table({"id": ids, "sequence": [seqs[i] for i in ids]}), table)
    del seqs
    log(f"{report.summary()}; {len(ids):,} member proteins: tokenizing")
    prepare_store(Inputs((str(table),)), tokenizer_dir, tmp / "proteins", policy, workers=workers, log=log)
    proteins = TokenStore(tmp / "proteins")
    index = {proteins.ids[i]: i for i in range(len(proteins))}
    members = np.array([index.get(n, -1) for n in names], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    whole = np.minimum.reduceat(members, offsets[:-1]) >= 0  # every member kept by the protein store
    lost = int((~whole).sum())
    if lost:
        reason = "assemblies with a protein skipped (" + ", ".join(proteins.meta["skip_report"]["skipped"]) + ")"
        report.skipped[reason] += lost
        report.n_used -= lost
        keep = np.repeat(whole, sizes)
        members, sizes = members[keep], np.asarray(sizes)[whole]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    dtype = np.int32 if len(proteins) < 2**31 else np.int64
    np.save(tmp / "members.npy", members.astype(dtype), allow_pickle=False)
    np.save(tmp / "offsets.npy", offsets, allow_pickle=False)
    result = {"format": ASM_FORMAT, "version": ASM_VERSION, "fingerprint": meta, "assemblies": len(offsets) - 1,
              "proteins": len(proteins), "skip_report": report.as_dict()}  # fmt: skip
    write_json(tmp / "assemblies.json", result)
    publish(tmp, out)
    return result


def ensure_assembly_store(
    spec: str | Path,
    sequences: str | Path | None,
    tokenizer_dir: str | Path,
    policy: ResiduePolicy,
    cache_dir: str | Path | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> Path:
    """An assembly store as given, or `spec` prepared once into `cache_dir/assemblies-<key>`."""
    from protlm.store.inputs import tokenizer_fingerprint

    if is_assembly_store(spec):
        return Path(spec)
    _, sha, vocab = tokenizer_fingerprint(tokenizer_dir)
    path = cache_path("assemblies", assembly_fingerprint(spec, sequences, sha, vocab, policy), cache_dir)
    if not is_assembly_store(path):
        log(f"preparing {spec} into the assembly store {path} (once)")
        prepare_assembly_store(spec, sequences, tokenizer_dir, path, policy, workers=max(1, min(4, os.cpu_count() or 1)),
                               log=log)  # fmt: skip
    return path
