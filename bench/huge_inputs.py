"""Benchmark: one protein of 10,000 / 30,000 / 100,000 residues through `embed`, `predict` and `attention export`.

Each command runs in its own process; its peak resident memory is that process's ru_maxrss. Models (random
weights, real architectures and vocabularies): ESM-2 8M's shape (6 x 320, 1,024 positions), and the same
encoder as ProtBERT (40,000 positions: windows capped at 2,048 tokens by default, or one 40,000-token
window of O(L^2) attention). An ss3 head is fine-tuned for one step on the fixture to have a residue task.
Windows bound the memory of `embed` and `predict`; `attention export` refuses inputs longer than the model
(attention maps are L x L per head) with one line naming the limit.

    .venv/bin/python bench/huge_inputs.py --lengths 10000,30000,100000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPE = {"hidden_size": 320, "num_hidden_layers": 6, "num_attention_heads": 20, "intermediate_size": 1280}


def build_models(work: Path) -> dict[str, Path]:
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer, EsmConfig, EsmForMaskedLM, EsmTokenizer

    sys.path.insert(0, str(ROOT))
    from tests.backbones import ESM_VOCAB, PROTBERT_VOCAB

    torch.manual_seed(0)
    esm = work / "esm"
    esm.mkdir()
    (esm / "vocab.txt").write_text("\n".join(ESM_VOCAB))
    EsmForMaskedLM(EsmConfig(vocab_size=len(ESM_VOCAB), **SHAPE, max_position_embeddings=1026,
                             position_embedding_type="rotary", token_dropout=True, emb_layer_norm_before=False,
                             pad_token_id=1, mask_token_id=32)).save_pretrained(esm)  # fmt: skip
    EsmTokenizer(str(esm / "vocab.txt")).save_pretrained(esm)
    bert = work / "protbert"
    bert.mkdir()
    (bert / "vocab.txt").write_text("\n".join(PROTBERT_VOCAB) + "\n")
    BertForMaskedLM(BertConfig(vocab_size=len(PROTBERT_VOCAB), **SHAPE, max_position_embeddings=40000,
                               type_vocab_size=2, pad_token_id=0)).save_pretrained(bert)  # fmt: skip
    BertTokenizer(vocab=str(bert / "vocab.txt"), do_lower_case=False).save_pretrained(bert)
    subprocess.run([sys.executable, "-m", "protlm", "finetune", "--task", "ss3", "--data",
                    str(ROOT / "tests/data/tasks/ss_dssp_small.tsv"), "--model", str(esm), "--out", str(work / "ss3"),
                    "--max-steps", "1", "--cache-dir", str(work / "cache")], check=True, capture_output=True)  # fmt: skip
    return {"esm": esm, "protbert": bert, "ss3": work / "ss3" / "seed-0" / "model"}


def measure(argv: list[str]) -> dict:
    """Run `protlm ARGV` in a fresh process: exit status, seconds, peak RSS (MB), last stderr line."""
    code = ("import resource, subprocess, sys, time\nt = time.perf_counter()\n"
            "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "print(p.returncode, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
            "print((p.stderr.strip().splitlines() or [''])[-1][:300])\n")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "protlm", *argv],
                         capture_output=True, text=True, check=True).stdout.splitlines()  # fmt: skip
    rc, secs, rss = out[0].split()
    return {"exit": int(rc), "seconds": round(float(secs), 1), "peak_mb": int(rss) // 1024, "stderr": out[1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="10000,30000,100000")
    ap.add_argument("--json", type=Path, help="Also write the rows here.")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        models = build_models(work)
        print(f"models built in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
        import numpy as np

        rng = np.random.default_rng(0)
        letters = np.frombuffer(b"ACDEFGHIKLMNPQRSTVWY", dtype=np.uint8)
        for n in map(int, args.lengths.split(",")):
            fasta = work / f"p{n}.fa"
            fasta.write_text(f">huge_{n}\n{letters[rng.integers(0, 20, n)].tobytes().decode()}\n")
            cases = {
                "embed ESM-2 shape, mean -> parquet": ["embed", fasta, "--model", models["esm"],
                                                       "--out", work / "e.parquet"],
                "embed ESM-2 shape, per residue -> h5": ["embed", fasta, "--model", models["esm"],
                                                         "--pool", "residue", "--out", work / "e.h5"],
                "embed ProtBERT shape (2,048-token windows)": ["embed", fasta, "--model", models["protbert"],
                                                               "--out", work / "b.parquet"],
                "predict ss3 (ESM-2 shape)": ["predict", fasta, "--model", models["ss3"], "--out", work / "p.tsv"],
                "attention export (ESM-2 shape)": ["attention", "export", "--fasta", fasta, "--model", models["esm"],
                                                   "--out", work / "a.npz"],
            }  # fmt: skip
            if n <= 10000:  # without the cap: one window as long as the protein (O(L^2) attention)
                cases["embed ProtBERT shape, uncapped (--max-tokens 40000)"] = [
                    "embed",
                    fasta,
                    "--model",
                    models["protbert"],
                    "--max-tokens",
                    "40000",
                    "--out",
                    work / "w.parquet",
                ]
            for name, argv in cases.items():
                r = {"residues": n, "command": name, **measure([str(a) for a in argv])}
                rows.append(r)
                print(json.dumps(r), file=sys.stderr)
    print("| residues | command | exit | seconds | peak RSS MB | last line |\n|---:|---|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['residues']:,} | {r['command']} | {r['exit']} | {r['seconds']} | {r['peak_mb']:,} | "
              f"{r['stderr'].replace('|', '/')[:140]} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
