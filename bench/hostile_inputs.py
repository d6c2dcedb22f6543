"""Hostile inputs as a user meets them (SECURITY.md): each crafted file is given to `protlm` in a fresh
process, and the row says how it ended: exit status, stderr lines, seconds and the command's peak RSS.
The contract is exit 2, one line, seconds, and memory near a bare start-up's (the first row).

    .venv/bin/python bench/hostile_inputs.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import DATA, write_lmdb  # noqa: E402
from test_input_bounds import gzip_line, write_parquet  # noqa: E402

TOK = str(DATA / "tokenizer_bpe300")
FASTA = str(DATA / "swissprot_50.fasta")
# The command's own peak RSS: measured from a small parent, not from this (larger) process.
PEAK = """import resource, subprocess, sys
code = subprocess.call(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=open(sys.argv[1], "w"))
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(code if code >= 0 else 128 - code)"""


def cases(tmp: Path) -> dict[str, list]:
    """name -> protlm arguments, each input built under `tmp`."""
    out: dict[str, list] = {"bare start-up: protlm tokenizer stats on 50 proteins": ["tokenizer", "stats",
                            "--tokenizer", TOK, "--corpus", FASTA]}  # fmt: skip
    deep = write_lmdb(tmp / "deep.lmdb", [b"\x80\x02}" + b")" + b"\x85" * 1_000_000 + b"Ns."])
    out["LMDB record: dict key of 1M nested tuples (was SIGSEGV)"] = [
        "pairs",
        "from-lmdb",
        deep,
        "--out",
        tmp / "p.tsv",
    ]
    shared = b"\x80\x02})q\x000" + b"".join(b"h%ch%c\x86q%c0" % (k - 1, k - 1, k) for k in range(1, 81))
    dag = write_lmdb(tmp / "dag.lmdb", [shared + b"hPNs."])
    out["LMDB record: key of 80 shared levels (2**80 to hash)"] = ["pairs", "from-lmdb", dag, "--out", tmp / "q.tsv"]
    bus = tmp / "bus.lmdb"
    shutil.copytree(DATA / "human_ppi_small.lmdb", bus)
    data = bytearray((bus / "data.mdb").read_bytes())
    data[8211] = 0x57
    (bus / "data.mdb").write_bytes(bytes(data))
    out["LMDB: one flipped byte in data.mdb (was SIGBUS)"] = ["pairs", "from-lmdb", bus, "--out", tmp / "r.tsv"]
    laughs = tmp / "laughs.yaml"
    laughs.write_text("a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)))  # fmt: skip
    run = ["--out", tmp / "run", "--tokenizer", TOK, "--corpus", FASTA, "--max-steps", "1"]
    out["recipe: 640 bytes of nested YAML aliases (was a hang)"] = ["pretrain", "--config", laughs, *run]
    huge = tmp / "huge.yaml"
    huge.write_text((DATA / "micro.yaml").read_text().replace("hidden_size: 32", "hidden_size: 65536")
                    .replace("num_hidden_layers: 1", "num_hidden_layers: 1000"))  # fmt: skip
    out["preset: a terabyte-sized model"] = ["pretrain", "--model", huge, *run]
    tok = tmp / "tok"
    shutil.copytree(TOK, tok)
    doc = json.loads((tok / "tokenizer.json").read_text())
    doc["model"]["vocab"]["ZZZ"] = 4_000_000_000
    (tok / "tokenizer.json").write_text(json.dumps(doc))
    out["tokenizer.json: a vocabulary id of 4e9 (was 16 GB)"] = [
        "tokenizer",
        "stats",
        "--tokenizer",
        tok,
        "--corpus",
        FASTA,
    ]
    line = gzip_line(tmp / "big.tsv.gz", b"id\tsequence\nP1\t", b"M" * (1 << 20), b"\n", 1024)
    out["table: one 1 GiB line, gzip (was 2.3 GB)"] = ["tokenizer", "stats", "--tokenizer", TOK, "--corpus", line]
    links = gzip_line(tmp / "links.txt.gz", b"", b"protein1" * (2 << 20), b" protein2 combined_score\n", 64)
    (tmp / "s.fa").write_text(">9606.A\nMKVLA\n>9606.B\nMKTAY\n")
    out["STRING: a 1 GiB header (was 2.1 GB)"] = ["pairs", "build-string", "--links", links, "--sequences",
                                                 tmp / "s.fa", "--out", tmp / "string"]  # fmt: skip
    parquet = write_parquet(tmp / "huge.parquet", 'pq.write_table(pa.table({"id": ["P1"], "sequence": '
                                                   '["M" * (512 << 20)]}), path, compression="zstd")')  # fmt: skip
    out[f"Parquet: {parquet.stat().st_size // 1024} KB holding a 512M-residue value (was 3.2 GB)"] = [
        "tokenizer", "stats", "--tokenizer", TOK, "--corpus", parquet]  # fmt: skip
    ids = [f"P{k:04d}" for k in range(1001)] + ["Q" * 1_000_000]
    (tmp / "ids.fa").write_text("".join(f">{i}\nMKTAYIAKQRQ\n" for i in ids))
    (tmp / "ids.tsv").write_text(
        "id_a\tid_b\n" + "".join(f"{a}\t{b}\n" for a, b in zip(ids[::2], ids[1::2], strict=True))
    )
    out["pairs build: one 1M-character id (was 9.7 GB)"] = ["pairs", "build", "--pairs", tmp / "ids.tsv",
                                                            "--sequences", tmp / "ids.fa", "--out", tmp / "pb",
                                                            "--split", "random"]  # fmt: skip
    return out


def run(argv: list, tmp: Path) -> tuple[int, int, float, float]:
    """(exit status, stderr lines, seconds, peak RSS in MB) of `protlm ARGV`."""
    err = tmp / "stderr.txt"
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK, err, sys.executable, "-m", "protlm", *map(str, argv)],
                          capture_output=True, text=True)  # fmt: skip
    seconds = time.perf_counter() - t0
    lines = [x for x in err.read_text().splitlines() if x.strip()]
    return done.returncode, len(lines), seconds, int(done.stdout.split()[-1]) / 1024


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print("| input | exit | stderr lines | seconds | peak RSS (MB) |\n|---|---:|---:|---:|---:|")
        for name, argv in cases(tmp).items():
            code, lines, seconds, peak = run(argv, tmp)
            print(f"| {name} | {code} | {lines} | {seconds:.1f} | {peak:,.0f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
