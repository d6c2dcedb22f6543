"""Benchmark: `protlm pretrain` training throughput vs the seed paper's recipe, in one run.

Both sides train the same HF RobertaForMaskedLM config on the real SCL2205 train length
distribution, one optimizer step after another, for the same wall-clock budget each:

- seed recipe (paccmann_proteomics / HF run_language_modeling of 2020): eager attention, fp32,
  every sequence truncated/padded to 512 tokens, fixed batch size, logits for every position;
- HF Trainer: what a user would pick today (SDPA, dynamic padding, group_by_length);
- protlm: SDPA attention, fp32 and bf16 autocast (both measured), length-bucketed
  token-budget batches, LM head on masked positions only, random crops of long proteins, and its
  training kernels (chunked attention dropout, cheaper dropout masks; `--kernels off` row: without).

The seed recipe and the protlm rows step with protlm's own `train_step` (train/loop.py: the step
`protlm pretrain` runs, with its accumulation, clipping, schedule and AdamW, prepared by Accelerate);
HF Trainer steps with its own.

Reported: non-pad training tokens/s (the only tokens that teach the model), the ratio, padding
waste, and model FLOPs utilisation (MFU) against this machine's fp32 and bf16 matmul peak
measured in the same run. Model FLOPs per non-pad token use the same formula for both sides:
6 x non-embedding parameters + 12 x layers x context x hidden (attention) + 6 x hidden x vocab x 0.15.

    .venv/bin/python bench/pretrain_throughput.py --preset esm-size --seconds 60
    python bench/pretrain_throughput.py --device cuda --preset roberta-base --tokens-per-batch 65536

On CUDA the rows run in bf16 autocast (HF Trainer with `bf16=True`), and MFU is against the GPU's
measured bf16 matmul peak.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from protlm.batching import MaskingVocab, Packing, mask_for_mlm, pad_batch
from protlm.corpora import open_corpus
from protlm.device import autocast_dtype, make_accelerator, matmul_flops
from protlm.models import build_mlm
from protlm.models.kernels import training_kernels
from protlm.models.loading import POSITION_OFFSETS
from protlm.tokenization import DEFAULT_VOCAB_SIZE, load_tokenizer, train_tokenizer
from protlm.tokenized import tokenize
from protlm.train.config import TrainConfig
from protlm.train.data import Batch, PretrainData
from protlm.train.loop import StepSetup, kernels_on, make_optimizer, train_step
from protlm.train.objective import MaskedLMObjective


def flops_per_token(config, context: float) -> float:
    h, layers, v = config.hidden_size, config.num_hidden_layers, config.vocab_size
    non_embedding = layers * (4 * h * h + 2 * h * config.intermediate_size) + h * h  # + LM head transform
    return 6 * non_embedding + 12 * layers * context * h + 6 * h * v * 0.15


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


HORIZON = 10**6  # the schedule's horizon: the bench stops on time long before


def protlm_step(objective: nn.Module, precision: str, device: str, fused: bool = True) -> StepSetup:
    """protlm's own step (`train_step`) as `protlm pretrain` runs it: its default AdamW (fused on CUDA;
    `fused=False`: the lever's other side), clipping, warmup and decay, accumulation, autocast for
    `precision`, prepared by Accelerate on `device`."""
    cfg = TrainConfig(max_steps=HORIZON, precision=precision)
    acc = make_accelerator(device)
    opt = make_optimizer(objective, cfg, acc.device if fused else None)
    objective, opt = acc.prepare(objective, opt)
    return StepSetup(objective, opt, acc, cfg, HORIZON, autocast_dtype(precision, acc.device))


class FullLogits(nn.Module):
    """The seed recipe's loss: HF's MLM head and cross-entropy over every position (full-vocabulary logits)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, **fields):
        return self.model(**fields).loss, None


def run_seed_recipe(model, tset, tok, batch_size: int, seconds: float, device: str = "cpu") -> dict:
    """Every sequence padded to 512, eager attention, fp32, full-vocabulary logits; the step is protlm's
    (`train_step`), as HF's 2020 Trainer also clipped and scheduled."""
    model.config._attn_implementation = "eager"
    setup = protlm_step(FullLogits(model), "fp32", device)
    gen, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
    vocab = MaskingVocab.of(tok)
    order = rng.permutation(len(tset))
    tokens = steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        idx = order[(steps * batch_size) % len(order) :][:batch_size]
        seqs = [tok.assemble([tset.get(i)[:510]]) for i in idx]
        ids, attn = pad_batch(seqs, tok.pad_token_id)
        ids = F.pad(ids, (0, 512 - ids.shape[1]), value=1)
        attn = F.pad(attn, (0, 512 - attn.shape[1]), value=0)
        inputs, labels = mask_for_mlm(ids, vocab, gen)
        result = train_step(setup, steps, [Batch(inputs, attn, labels, int(attn.sum()))])
        tokens += result.tokens
        steps += 1
    sync(device)
    dt = time.perf_counter() - start
    return {
        "tokens_per_s": tokens / dt,
        "steps": steps,
        "pad_waste_pct": 100 * (1 - tokens / (steps * batch_size * 512)),
        "context": 512,
    }


WARMUP = 3  # HF Trainer steps not timed


def run_hf_trainer(model, tset, tok, batch_size: int, seconds: float, device: str = "cpu") -> dict:
    """What a user would pick today: HF `Trainer`, SDPA, fp32, dynamic padding, `group_by_length` sampling,
    `DataCollatorForLanguageModeling` (15%), AdamW, no logging / saving; timed over `seconds` of steps after
    `WARMUP` steps (its sampler puts the longest batch first on purpose, to fail early on memory)."""
    import tempfile

    from transformers import DataCollatorForLanguageModeling, Trainer, TrainerCallback, TrainingArguments

    model.config._attn_implementation = "sdpa"

    class Proteins(torch.utils.data.Dataset):
        def __len__(self):
            return len(tset)

        def __getitem__(self, i):
            return {"input_ids": tok.assemble([tset.get(i)[:510]]).tolist()}

    counts: list[int] = []
    collate = DataCollatorForLanguageModeling(tokenizer=tok.hf, mlm_probability=0.15)

    def counting(features):
        batch = collate(features)
        counts.append(int(batch["attention_mask"].sum()))
        return batch

    class Budget(TrainerCallback):
        start = None

        def on_step_end(self, args, state, control, **kw):
            if state.global_step == WARMUP:
                self.start = time.perf_counter()
            elif self.start is not None:
                control.should_training_stop = time.perf_counter() - self.start >= seconds

    budget = Budget()
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=batch_size, max_steps=10**6,
                                 train_sampling_strategy="group_by_length", use_cpu=device == "cpu",
                                 bf16=device != "cpu", report_to=[],
                                 save_strategy="no", logging_strategy="no", disable_tqdm=True,
                                 dataloader_num_workers=0, learning_rate=1e-4, seed=0)  # fmt: skip
        trainer = Trainer(model=model, args=args, train_dataset=Proteins(), data_collator=counting,
                          callbacks=[budget])  # fmt: skip
        state = trainer.train()
    dt = time.perf_counter() - budget.start
    steps = state.global_step - WARMUP
    tokens = sum(counts[WARMUP : state.global_step])  # the collator may have built one batch ahead
    return {"tokens_per_s": tokens / dt, "steps": steps, "pad_waste_pct": float("nan"),
            "context": float(tokens / max(1, steps) / batch_size)}  # fmt: skip


def _median(runs: list[dict]) -> dict:
    """The run of median tokens/s (its other numbers with it)."""
    return sorted(runs, key=lambda r: r["tokens_per_s"])[len(runs) // 2]


WARMUP_STEPS = 5  # protlm rows: steps before the clock starts (kernel choice, allocator, clocks)


def run_protlm(model, data: PretrainData, tokens_per_batch: int, seconds: float, precision: str,
               kernels: bool | None = None, device: str = "cpu", fused: bool = True,
               compile: bool = False, packed: bool = False) -> dict:  # fmt: skip
    """`train_step` on protlm's batches (length buckets, token budget, crops), as `protlm pretrain` runs it:
    `kernels=None` is `--kernels auto` (on on the CPU, off on a GPU); `packed` is `--pack on` (rows of
    the data's max tokens). Timed after `WARMUP_STEPS` steps."""
    model.config._attn_implementation = "sdpa"
    objective = MaskedLMObjective(model)
    if compile:  # the lever: the encoder compiled, shapes marked dynamic (the buckets vary in length)
        model.base_model.forward = torch.compile(model.base_model.forward, dynamic=True)
    setup = protlm_step(objective, precision, device, fused)
    accum = setup.cfg.grad_accum
    packing = Packing.of(tokens_per_batch, data.max_tokens, POSITION_OFFSETS["roberta"]) if packed else None
    plan = data.epoch_batches(0, tokens_per_batch, packing)
    tokens = padded = steps = 0
    ctx = []
    enabled = kernels_on("auto", setup.accelerator.device) if kernels is None else kernels
    with training_kernels(model, enabled=enabled):
        first = time.perf_counter()
        start = None
        while start is None or time.perf_counter() - start < seconds:
            if steps == WARMUP_STEPS:
                sync(device)
                start, tokens, padded, ctx = time.perf_counter(), 0, 0, []
            keys = range(steps * accum, (steps + 1) * accum)
            batches = [data.make_batch(plan[k % len(plan)], torch.Generator().manual_seed(k), packing=packing)
                       for k in keys]  # fmt: skip
            result = train_step(setup, steps, batches)
            tokens += result.tokens
            padded += result.padded
            ctx += [b.input_ids.shape[1] for b in batches]
            steps += 1
        sync(device)
        dt = time.perf_counter() - start
        steps -= WARMUP_STEPS
    return {"tokens_per_s": tokens / dt, "steps": steps, "pad_waste_pct": 100 * (1 - tokens / padded), "seconds": dt,
            "warmup_seconds": start - first, "context": float(np.mean(ctx)),
            "precision": "bf16" if setup.dtype else "fp32"}  # fmt: skip


SEED, HF = "seed recipe (eager, fp32, pad to 512)", "HF Trainer (SDPA, dynamic padding, group_by_length)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="esm-size")
    ap.add_argument("--tokenizer", default=None, help="tokenizer dir (default: train the default BPE on SCL2205 train)")
    ap.add_argument("--proteins", type=int, default=0, help="the first N SCL2205 train proteins (default: all)")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed-batch-size", type=int, default=8)
    ap.add_argument("--tokens-per-batch", type=int, default=8192)
    ap.add_argument("--hf-batch-size", type=int, help="HF Trainer batch size (default: --tokens-per-batch / 512)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--rows", default="seed,hf,protlm,protlm-kernels-on,protlm-bf16", help="which rows to run")
    ap.add_argument("--passes", type=int, default=1, help="run every row this often, alternating the order")
    ap.add_argument("--json", help="write every run and the medians here")
    args = ap.parse_args()
    torch.manual_seed(0)
    cuda = args.device.startswith("cuda")

    records = list(open_corpus("scl2205:train").records())[: args.proteins or None]
    seqs = [r.seq for r in records]
    tok = load_tokenizer(args.tokenizer) if args.tokenizer else train_tokenizer(seqs, vocab_size=DEFAULT_VOCAB_SIZE)
    tset = tokenize(tok, [r.id for r in records], seqs)
    print(f"SCL2205 train: {len(tset):,} proteins, mean {tset.lengths.mean():.0f} tokens; preset {args.preset}; "
          f"device {args.device}; torch threads {torch.get_num_threads()}")  # fmt: skip
    size = 8192 if cuda else 2048
    peaks = {d: matmul_flops(getattr(torch, d), size, 2.0, args.device) for d in ("float32", "bfloat16")}
    print(f"matmul peak: fp32 {peaks['float32'] / 1e9:.1f} GFLOP/s, bf16 {peaks['bfloat16'] / 1e9:.1f} GFLOP/s")

    empty = np.zeros((0, 2), dtype=np.int64)
    data = PretrainData(tset, 512, np.arange(len(tset)), empty, empty, None, {"singles": 1.0}, tok)
    auto = autocast_dtype("auto", torch.device(args.device))
    print(f"--precision auto picks {'bf16' if auto else 'fp32'} on this machine")
    init = build_mlm(args.preset, tok, seed=0).state_dict()
    mean_len = float(np.mean(np.minimum(tset.lengths, 510) + tok.template.overhead(1)))
    hf_batch = args.hf_batch_size or max(1, args.tokens_per_batch // 512)  # within protlm's padded budget
    precision = "bf16" if cuda else "fp32"
    tpb, secs, dev = args.tokens_per_batch, args.seconds, args.device
    rows = {
        "seed": (SEED, lambda m: run_seed_recipe(m, tset, tok, args.seed_batch_size, secs, dev)),
        "hf": (HF, lambda m: run_hf_trainer(m, tset, tok, hf_batch, secs, dev)),
        "protlm": (
            f"protlm {precision} (as pretrain runs it)",
            lambda m: run_protlm(m, data, tpb, secs, precision, None, dev),
        ),  # fmt: skip
        "protlm-kernels-on": (
            f"protlm {precision}, --kernels on",
            lambda m: run_protlm(m, data, tpb, secs, precision, True, dev),
        ),  # fmt: skip
        "protlm-plain": (
            f"protlm {precision}, --kernels off",
            lambda m: run_protlm(m, data, tpb, secs, precision, False, dev),
        ),  # fmt: skip
        "protlm-unfused": (
            f"protlm {precision}, AdamW not fused",
            lambda m: run_protlm(m, data, tpb, secs, precision, None, dev, fused=False),
        ),  # fmt: skip
        "protlm-compile": (
            f"protlm {precision}, torch.compile",
            lambda m: run_protlm(m, data, tpb, secs, precision, None, dev, compile=True),
        ),  # fmt: skip
        "protlm-packed": (
            f"protlm {precision}, --pack on",
            lambda m: run_protlm(m, data, tpb, secs, precision, None, dev, packed=True),
        ),  # fmt: skip
        "protlm-bf16": ("protlm bf16 autocast", lambda m: run_protlm(m, data, tpb, secs, "bf16", None, dev)),
    }
    keys = [k for k in args.rows.split(",") if not (cuda and k == "protlm-bf16")]  # on CUDA the protlm row is bf16
    runs: dict[str, list[dict]] = {}
    for p in range(args.passes):  # every row warmed up; the order alternates between passes
        for key in keys if p % 2 == 0 else keys[::-1]:
            name, fn = rows[key]
            model = build_mlm(args.preset, tok, seed=0)
            model.load_state_dict(init)
            model.to(args.device).train()
            r = fn(model)
            flops = flops_per_token(model.config, r["context"]) * r["tokens_per_s"]
            r["mfu_fp32_pct"], r["mfu_bf16_pct"] = 100 * flops / peaks["float32"], 100 * flops / peaks["bfloat16"]
            runs.setdefault(name, []).append(r)
            print(f"pass {p}: {name}: {r['tokens_per_s']:,.0f} tokens/s", flush=True)
            del model
            if cuda:
                torch.cuda.empty_cache()
    results = {name: _median(rs) for name, rs in runs.items()}
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "peaks": peaks, "runs": runs,
                                               "median": results}, indent=2))  # fmt: skip
    base = results.get(SEED, {}).get("tokens_per_s", float("nan"))
    hf = results.get(HF, {}).get("tokens_per_s", float("nan"))
    print(f"HF Trainer batch size {hf_batch} (mean {mean_len:.0f} tokens a protein)")
    print("\n| run | non-pad tokens/s | x seed | x HF Trainer | padding waste | steps | MFU vs fp32 peak "
          "| MFU vs bf16 peak |\n|---|---:|---:|---:|---:|---:|---:|---:|")  # fmt: skip
    for name, r in results.items():
        print(
            f"| {name} | {r['tokens_per_s']:,.0f} | {r['tokens_per_s'] / base:.2f} | {r['tokens_per_s'] / hf:.2f} "
            f"| {r['pad_waste_pct']:.1f}% | {r['steps']} | {r['mfu_fp32_pct']:.1f}% | {r['mfu_bf16_pct']:.1f}% |"
        )


if __name__ == "__main__":
    main()
