"""Benchmark: `protlm embed` vs fair-esm's own extraction pipeline, same size, same FASTA, one run.

- Input: 2,000 real SCL2205 train sequences of at most 1,022 residues (ESM's extract.py truncates
  longer ones; with this cap both sides embed every residue), seeded sample, written as FASTA.
- ESM: `esm.ESM2(num_layers=6, embed_dim=320, attention_heads=20)` (randomly initialised, built
  offline), batched exactly as fair-esm's `scripts/extract.py`: `FastaBatchedDataset.from_file`,
  `get_batch_indices(toks_per_batch, extra_toks_per_seq=1)`, the alphabet's batch converter,
  `model(toks, repr_layers=[6])`, mean over the residue positions of each sequence.
- protlm: the `esm-size` preset (RoBERTa 6 x 320, 20 heads, 1,024 tokens; randomly initialised)
  with the `make demo` BPE tokenizer, `protlm.embed.Embedder` (what `protlm embed` runs), mean pool.
Both on CPU with torch's default threads, fp32, in inference mode; the two sides alternate for
`--reps` repetitions and the best time of each is reported (the machine is noisy). The same token
budget per batch is used for both (`--toks-per-batch`, ESM's default 4,096); protlm's default
budget (16,384) is reported too. A bf16-vs-fp32 check of protlm's embeddings (a few short sequences) is printed as well.

    .venv/bin/pip install -e '.[bench]'   # fair-esm
    .venv/bin/python bench/embed_throughput.py --reps 2
    python bench/embed_throughput.py --command --device cuda --n 20000 --toks-per-batch 16384   # on a GPU

`--command` times `protlm embed --device D` as a user runs it (a subprocess: start-up, model loading,
reading the FASTA, embedding, writing Parquet) against fair-esm's pipeline on the same device with its
model already built (its start-up is not counted: a conservative ratio for protlm).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent


def make_fasta(path: Path, n: int, max_len: int, seed: int = 0) -> tuple[list[str], list[str]]:
    from protlm.corpora import load_scl2205

    entries = [
        e for e in load_scl2205().split("train") if len(e.seq) <= max_len and set(e.seq) <= set("ACDEFGHIKLMNPQRSTVWY")
    ]
    pick = np.random.default_rng(seed).choice(len(entries), n, replace=False)
    ids, seqs = [entries[i].id for i in pick], [entries[i].seq for i in pick]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f">{i}\n{s}\n" for i, s in zip(ids, seqs, strict=True)))
    return ids, seqs


def run_esm(fasta: Path, toks_per_batch: int, device: str = "cpu") -> tuple[float, dict[str, np.ndarray]]:
    import esm

    torch.manual_seed(0)
    alphabet = esm.data.Alphabet.from_architecture("ESM-1b")
    model = esm.ESM2(num_layers=6, embed_dim=320, attention_heads=20, alphabet=alphabet).eval().to(device)
    t0 = time.perf_counter()
    dataset = esm.FastaBatchedDataset.from_file(str(fasta))
    batches = dataset.get_batch_indices(toks_per_batch, extra_toks_per_seq=1)
    loader = torch.utils.data.DataLoader(dataset, collate_fn=alphabet.get_batch_converter(1022), batch_sampler=batches)
    out = {}
    with torch.no_grad():  # as extract.py
        for labels, strs, toks in loader:
            toks = toks.to(device, non_blocking=True)  # as extract.py on a GPU
            reps = model(toks, repr_layers=[6], return_contacts=False)["representations"][6]
            for i, label in enumerate(labels):
                n = min(1022, len(strs[i]))
                out[label] = reps[i, 1 : n + 1].mean(0).cpu().numpy()
    return time.perf_counter() - t0, out


def run_protlm(fasta: Path, tokenizer_dir: Path, toks_per_batch: int, precision: str = "fp32"):
    from transformers import AutoConfig, AutoModel

    from protlm.embed import Embedder, EmbedOptions
    from protlm.io import read_sequences
    from protlm.models import load_preset
    from protlm.tokenization import load_tokenizer

    tok = load_tokenizer(str(tokenizer_dir))
    cfg = load_preset("esm-size")
    kind = cfg.pop("model_type")
    config = AutoConfig.for_model(kind, **cfg, vocab_size=len(tok), pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = AutoModel.from_config(config, attn_implementation="sdpa", add_pooling_layer=False).eval()
    n_params = sum(p.numel() for p in model.parameters())
    t0 = time.perf_counter()
    embedder = Embedder(model, tok, EmbedOptions(pools=("mean",), tokens_per_batch=toks_per_batch, precision=precision))
    out = {e.id: e.vectors["mean"] for e in embedder.embed(read_sequences(fasta))}
    return time.perf_counter() - t0, out, n_params


def save_model_dir(tokenizer_dir: Path, out: Path) -> Path:
    """The `esm-size` preset, randomly initialised, saved as a model directory `protlm embed` loads."""
    from protlm.models import build_mlm
    from protlm.tokenization import load_tokenizer

    tok = load_tokenizer(str(tokenizer_dir))
    model = build_mlm("esm-size", tok, seed=0)
    model.save_pretrained(out, safe_serialization=True)
    tok.hf.save_pretrained(out)
    return out


def run_command(fasta: Path, model_dir: Path, out: Path, device: str) -> float:
    """`protlm embed` as a user runs it, whole: start-up, loading, reading, embedding, writing."""
    import subprocess
    import sys

    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "protlm", "embed", str(fasta), "--model", str(model_dir), "--out", str(out),
                    "--device", device], check=True)  # fmt: skip
    return time.perf_counter() - t0


def command_main(args) -> None:
    """`--command`: the whole `protlm embed --device D` command against fair-esm's pipeline on D."""
    fasta = ROOT / "out" / f"embed_{args.n}.fasta"
    _, seqs = make_fasta(fasta, args.n, args.max_len)
    residues = sum(map(len, seqs))
    model_dir = save_model_dir(args.tokenizer, ROOT / "out" / "embed_model")
    print(f"{len(seqs):,} SCL2205 sequences, {residues:,} residues; device {args.device}", flush=True)
    best: dict[str, float] = {}
    for rep in range(args.reps):
        for name, fn in (
            ("esm", lambda: run_esm(fasta, args.toks_per_batch, args.device)[0]),
            ("protlm embed", lambda: run_command(fasta, model_dir, ROOT / "out" / "embed.parquet", args.device)),
        ):
            seconds = fn()
            best[name] = min(best.get(name, float("inf")), seconds)
            print(f"rep {rep}: {name:<13} {seconds:7.2f} s  {residues / seconds:10,.0f} residues/s", flush=True)
    ratio = best["esm"] / best["protlm embed"]
    print(f"protlm embed (whole command, best of {args.reps}): {residues / best['protlm embed']:,.0f} residues/s = "
          f"{ratio:.2f}x fair-esm's pipeline ({residues / best['esm']:,.0f} residues/s, model already loaded)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--max-len", type=int, default=1022)
    ap.add_argument("--toks-per-batch", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--bf16-check", type=int, default=8, help="sequences (<= 300 residues) in the bf16 check")
    ap.add_argument("--bf16-only", action="store_true", help="run only the bf16 numeric check")
    ap.add_argument("--tokenizer", type=Path, default=ROOT.parent / "runs" / "demo" / "tokenizer")
    ap.add_argument("--device", default="cpu", help="with --command: cpu, cuda or cuda:N")
    ap.add_argument("--command", action="store_true", help="time `protlm embed --device D` as a whole command")
    args = ap.parse_args()
    if args.bf16_only:
        return bf16_check(args)
    if args.command:
        return command_main(args)
    fasta = ROOT / "out" / f"embed_{args.n}.fasta"
    ids, seqs = make_fasta(fasta, args.n, args.max_len)
    residues = sum(map(len, seqs))
    print(
        f"{len(seqs):,} SCL2205 sequences, {residues:,} residues (max {max(map(len, seqs))}), torch threads {torch.get_num_threads()}"
    )
    best: dict[str, float] = {}
    for rep in range(args.reps):
        for name, fn in (
            ("esm", lambda: run_esm(fasta, args.toks_per_batch)[0]),
            ("protlm", lambda: run_protlm(fasta, args.tokenizer, args.toks_per_batch)[0]),
            ("protlm-default", lambda: run_protlm(fasta, args.tokenizer, 16384)[0]),
        ):
            seconds = fn()
            best[name] = min(best.get(name, float("inf")), seconds)
            print(f"rep {rep}: {name:<15} {seconds:7.1f} s  {residues / seconds:9,.0f} residues/s", flush=True)
    _, _, n_params = run_protlm(fasta, args.tokenizer, args.toks_per_batch)
    print(
        f"protlm esm-size parameters: {n_params / 1e6:.2f}M (ESM2 6x320: 7.5M; the difference is the 10k-token embedding)"
    )
    for name in ("protlm", "protlm-default"):
        print(
            f"{name}: {residues / best[name]:,.0f} residues/s = {best['esm'] / best[name]:.2f}x ESM ({residues / best['esm']:,.0f} residues/s)"
        )
    bf16_check(args)


def bf16_check(args) -> None:
    # bf16 numeric check (forced bf16 autocast against fp32). Few short sequences: on CPUs without
    # bf16 kernels a bf16 matmul runs ~500x slower than fp32 (which is why `auto` picks fp32 there).
    small = ROOT / "out" / "embed_check.fasta"
    make_fasta(small, args.bf16_check, 300, seed=1)
    _, fp32, _ = run_protlm(small, args.tokenizer, 16384, "fp32")
    t_bf, bf16, _ = run_protlm(small, args.tokenizer, 16384, "bf16")
    cos = [float(np.dot(fp32[k], bf16[k]) / (np.linalg.norm(fp32[k]) * np.linalg.norm(bf16[k]))) for k in fp32]
    rel = [float(np.abs(fp32[k] - bf16[k]).max() / np.abs(fp32[k]).max()) for k in fp32]
    print(
        f"bf16 vs fp32 mean embeddings ({len(fp32)} sequences, bf16 {t_bf:.0f} s): min cosine {min(cos):.5f}, max relative error {max(rel):.4f}"
    )


if __name__ == "__main__":
    main()
