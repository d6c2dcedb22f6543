"""`protlm pretrain`: masked-LM pre-training on single proteins and label-agnostic pairs.

Assembles the pipeline corpus / pair stores (prepared once, memory-mapped) -> token-budget batches
-> MLM masking -> HF model, then hands it to the shared loop. The pair label only decides whether a
pair is a binding or a non-binding example of the mixture; it never enters the loss.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from protlm.batching import Packing, plan_batches
from protlm.device import make_accelerator, to_device
from protlm.errors import ProtlmError
from protlm.io import ResiduePolicy, SkipReport
from protlm.io.atomic import write_json
from protlm.io.lock import run_lock
from protlm.io.structured import read_yaml
from protlm.models import build_mlm, model_max_tokens
from protlm.models.backbones import BACKBONES, backbone
from protlm.models.loading import open_model
from protlm.models.lora import configure, load_lora_checkpoint
from protlm.pairs.negatives import NegativePool
from protlm.store import TokenStore, ensure_store
from protlm.store.assemblies import AssemblyStore, ensure_assembly_store
from protlm.store.inputs import tokenizer_fingerprint
from protlm.store.pairs import PairStore, ensure_pair_store
from protlm.tokenization import load_tokenizer
from protlm.tokenized import ConcatTokens
from protlm.train.budget import mlm_probe, resolve_budget
from protlm.train.checkpoint import checkpoints
from protlm.train.config import RUN_CONFIG, PretrainConfig, save_config
from protlm.train.data import Examples, PretrainData
from protlm.train.loop import Fit, LoopState, derive_seed, fit, mlm_fields
from protlm.train.metrics import plot_run
from protlm.train.objective import MaskedLMObjective


@dataclass
class MLMSource:
    """Adapts `PretrainData` to the loop's StepSource protocol."""

    data: PretrainData
    tokens_per_batch: int
    mlm_probability: float
    packing: Packing | None = None

    def epoch_batches(self, epoch: int):
        if getattr(self, "_plan", (None,))[0] != epoch:  # planned once: sizing the schedule, then the loop
            self._plan = (epoch, self.data.epoch_batches(epoch, self.tokens_per_batch, self.packing))
        return self._plan[1]

    def make_batch(self, items, generator: torch.Generator):
        return self.data.make_batch(items, generator, self.mlm_probability, self.packing)


def check_packing(cfg: PretrainConfig, config) -> None:
    """`--pack on` for a family that cannot take a block mask is refused before any data is prepared."""
    if cfg.pack == "on" and not backbone(config).packable:
        packable = ", ".join(name for name, b in BACKBONES.items() if b.packable)
        raise ProtlmError(f"--pack on: {config.model_type} models cannot be packed (only {packable}: "
                          "their encoders take a block-diagonal mask and restarting positions); use --pack off")  # fmt: skip


def resolve_packing(cfg: PretrainConfig, config, max_tokens: int, log: Callable[[str], None]) -> Packing | None:
    """`--pack`: on packs rows of `max_tokens` (refused for families that cannot take a block mask);
    auto is off until packing is measured faster (bench/RESULTS.md)."""
    if cfg.pack != "on":
        return None
    packing = Packing.of(cfg.tokens_per_batch, max_tokens, backbone(config).position_offset)
    log(f"packed batches: {packing.rows} row(s) of {packing.row_len} tokens, planned to {packing.capacity:,} tokens")
    return packing


def load_model(cfg: PretrainConfig, tokenizer, run_dir: Path, log: Callable[[str], None]):
    """Newest checkpoint when resuming; else a pre-trained model (dir or Hub id) to continue from; else a
    preset. With LoRA the base model is built first and the checkpoint's adapters are loaded into it."""
    ckpts = checkpoints(run_dir) if cfg.resume else []
    source = None if cfg.from_preset else cfg.model
    if ckpts and not cfg.lora_rank:
        source = ckpts[-1]
    if source is not None:
        log(f"model weights from {source}")
        model = open_model(source).masked_lm()
    else:
        drop = {"hidden_dropout_prob": cfg.dropout, "attention_probs_dropout_prob": cfg.dropout}
        model = build_mlm(cfg.model, tokenizer, seed=cfg.seed, **drop)
    if model.config.vocab_size != len(tokenizer):
        raise ProtlmError(
            f"model vocabulary ({model.config.vocab_size}) does not match the tokenizer ({len(tokenizer)})"
        )
    configure(model, cfg, base=cfg.model)
    if ckpts and cfg.lora_rank:
        log(f"LoRA adapters from {ckpts[-1]}")
        load_lora_checkpoint(model, ckpts[-1])
    return model


def open_corpus_store(cfg: PretrainConfig, tokenizer, log: Callable[[str], None]):
    """The run's corpus as a memory-mapped `TokenStore`, checked against the run's tokenizer."""
    store = TokenStore(
        ensure_store(cfg.corpus, cfg.tokenizer, ResiduePolicy(strict=cfg.strict), cfg.cache_dir, log=log)
    )
    if store.tokenizer_sha256 != tokenizer_fingerprint(cfg.tokenizer)[1]:
        raise ProtlmError(f"{store.path}: this corpus store was prepared with another tokenizer than {cfg.tokenizer}; "
                          "prepare it again with this --tokenizer")  # fmt: skip
    return store


def open_pair_store(cfg: PretrainConfig, tokenizer, log: Callable[[str], None]):
    """The run's pairs as a memory-mapped `PairStore`, checked against the run's tokenizer."""

    policy = ResiduePolicy(strict=cfg.strict)
    store = PairStore(ensure_pair_store(cfg.pairs, cfg.tokenizer, policy, cfg.cache_dir, log=log))
    if store.tokenizer_sha256 != tokenizer_fingerprint(cfg.tokenizer)[1]:
        raise ProtlmError(f"{store.path}: this pair store was prepared with another tokenizer than {cfg.tokenizer}; "
                          "prepare it again with this --tokenizer")  # fmt: skip
    return store


def open_assembly_store(cfg: PretrainConfig, tokenizer, log: Callable[[str], None]):
    """The run's assemblies as a memory-mapped `AssemblyStore`, checked against the run's tokenizer."""

    policy = ResiduePolicy(strict=cfg.strict)
    path = ensure_assembly_store(cfg.assemblies, cfg.assembly_sequences, cfg.tokenizer, policy, cfg.cache_dir, log=log)
    store = AssemblyStore(path)
    if store.tokenizer_sha256 != tokenizer_fingerprint(cfg.tokenizer)[1]:
        raise ProtlmError(f"{store.path}: this assembly store was prepared with another tokenizer than "
                          f"{cfg.tokenizer}; prepare it again with this --tokenizer")  # fmt: skip
    return store


def _summary(name: str, rep: dict) -> str:
    """One line from a store's skip report: read, used, skipped by reason, the nucleotide warning."""
    return SkipReport.from_dict(name, rep).summary()


def build_data(cfg: PretrainConfig, tokenizer, max_tokens: int, log: Callable[[str], None]):
    """(training mixture, held-out examples, report dict) from the corpus and pair stores and assemblies."""
    store = None
    singles = eval_singles = np.zeros(0, dtype=np.int64)
    reports: dict[str, dict] = {}
    if cfg.corpus:
        store = open_corpus_store(cfg, tokenizer, log)
        usable, held_out = store.usable(), store.heldout(cfg.eval_fraction)
        singles = np.flatnonzero(usable & ~held_out).astype(np.int32 if len(store) < 2**31 else np.int64)
        eval_singles = np.flatnonzero(usable & held_out)
        rep = store.meta["skip_report"]
        summary = _summary(cfg.corpus, rep)
        log(summary)
        reports["corpus"] = {"summary": summary, "examples": rep["examples"], "store": str(store.path)}
    # Pairs: a pair store (a pair table is prepared into the cache once), its proteins after the corpus's.
    parts = [store] if store is not None else []
    offset = len(store) if store is not None else 0
    binding = nonbinding = eval_binding = eval_nonbinding = np.zeros((0, 2), dtype=np.int64)
    pool = None
    if cfg.pairs:
        pstore = open_pair_store(cfg, tokenizer, log)
        parts.append(pstore.proteins)
        train, pos = np.asarray(pstore.split) == 0, np.asarray(pstore.label) == 1
        pairs = np.asarray(pstore.pairs).astype(np.int64) + offset
        binding, nonbinding = pairs[train & pos], pairs[train & ~pos]
        eval_binding, eval_nonbinding = pairs[~train & pos], pairs[~train & ~pos]
        members = np.unique(binding)  # negatives are drawn among the training binders' proteins
        pool = NegativePool(members, members - offset, np.asarray(pstore.organism)[members - offset], pstore.known)
        rep = pstore.meta["skip_report"]
        summary = _summary(str(cfg.pairs), rep)
        log(summary)
        reports["pairs"] = {"summary": summary, "examples": rep["examples"], "store": str(pstore.path)}
        offset += len(pstore.proteins)
    # Assemblies: an assembly store (a FASTA or table is prepared into the cache once), proteins last.
    assemblies = Examples.from_tuples([])
    if cfg.assemblies:
        astore = open_assembly_store(cfg, tokenizer, log)
        parts.append(astore.proteins)
        assemblies = Examples(np.asarray(astore.members).astype(np.int64) + offset, np.asarray(astore.offsets))
        rep = astore.meta["skip_report"]
        summary = _summary(str(cfg.assemblies), rep)
        log(summary)
        reports["assemblies"] = {"summary": summary, "examples": rep["examples"], "store": str(astore.path)}
    pools = {"singles": eval_singles, "binding": eval_binding, "nonbinding": eval_nonbinding}
    if not len(singles) + len(binding) + len(nonbinding) + len(assemblies) + sum(map(len, pools.values())):
        raise ProtlmError("no usable sequences in --corpus / --pairs / --assemblies")
    tset = parts[0] if len(parts) == 1 else ConcatTokens(*parts)
    data = PretrainData(
        tset=tset,
        max_tokens=max_tokens,
        singles=singles,
        binding=binding,
        nonbinding=nonbinding,
        pool=pool,
        tokenizer=tokenizer,
        weights={k: float(cfg.mix.get(k, 0.0)) for k in ("singles", "binding", "nonbinding", "assemblies")},
        seed=cfg.seed,
        assemblies=assemblies,
    )
    held = held_out_examples(cfg, pools)
    for reason, n in data.skipped.items():
        log(f"skipped {n:,} {reason}")
    for reason, n in data.cropped.items():
        log(f"cropped {n:,} {reason} part by part to fit (a random crop every epoch)")
    reports["mixture"] = {
        "pool_sizes": data.kind_sizes(),
        "epoch_counts": data.epoch_counts(),
        "skipped": dict(data.skipped),
        "cropped": dict(data.cropped),
        "held_out_examples": {kind: len(items) for kind, items in held.items()},
    }
    return data, held, reports


HELD_OUT_KINDS = ("singles", "binding", "nonbinding")  # each scored on its own: eval_loss_<kind>


def held_out_examples(cfg: PretrainConfig, pools: dict[str, np.ndarray]) -> dict[str, list]:
    """Held-out examples per kind: singles and dev/test binding and non-binding pairs, at most
    `eval_max_examples` of each, subsampled as indices before any tuple is built (a store may hold out
    10^6 proteins or pairs). Each kind has its own sample, so runs with and without pairs share the
    same held-out singles. Examples longer than the model are cropped by the fixed key 0 (the same
    crop at every evaluation)."""
    held = {}
    for g, kind in enumerate(HELD_OUT_KINDS):
        if not len(pools[kind]):
            continue
        pool = pools[kind].reshape(len(pools[kind]), -1)  # singles: one protein per row
        picked = np.arange(len(pool))
        if len(pool) > cfg.eval_max_examples:
            rng = np.random.default_rng(derive_seed(cfg.seed, 5, *((g,) if g else ())))
            picked = np.sort(rng.choice(len(pool), cfg.eval_max_examples, replace=False))
        held[kind] = [(tuple(int(i) for i in pool[k]), 0) for k in picked.tolist()]
    return held


def make_evaluator(data: PretrainData, held: dict[str, list], cfg: PretrainConfig, accelerator):
    """Held-out MLM cross-entropy (nats per masked token) and perplexity over all held-out examples,
    with fixed masks, plus `eval_loss_<kind>` for each held-out kind."""
    if not held:
        return None
    length = data.template.length
    jobs = []  # (kind, examples, mask seed) for every batch of every kind
    for g, kind in enumerate(HELD_OUT_KINDS):
        items, key = held.get(kind, []), (g,) if g else ()  # singles keep the keys of singles-only runs
        lengths = np.array([min(length([int(data.tset.lengths[i]) for i in ex]), data.max_tokens) for ex, _ in items])
        plan = plan_batches(lengths, cfg.tokens_per_batch, np.random.default_rng(derive_seed(cfg.seed, 6, *key)))
        jobs += [(kind, [items[i] for i in b], derive_seed(cfg.seed, 7, *key, k)) for k, b in enumerate(plan)]
    kinds = [kind for kind in HELD_OUT_KINDS if kind in held]
    world, rank = accelerator.num_processes, accelerator.process_index

    def evaluate(objective) -> dict:
        # Every rank runs the same number of forwards (DDP/FSDP forwards are collective); padding
        # slots past the end repeat batch 0 with weight 0. Row r of `total`: kind r's loss sum, tokens.
        total = torch.zeros(len(kinds), 2, dtype=torch.float64, device=accelerator.device)
        rounds = -(-len(jobs) // world)
        for k in range(rank, rounds * world, world):
            kind, items, seed = jobs[k if k < len(jobs) else 0]
            batch = data.make_batch(items, torch.Generator().manual_seed(seed), cfg.mlm_probability)
            loss, n = objective(**to_device(mlm_fields(batch), accelerator.device))
            if k < len(jobs):
                r = kinds.index(kind)
                total[r, 0] += loss.double() * n
                total[r, 1] += n
        if world > 1:
            total = accelerator.reduce(total, reduction="sum")
        ce = float(total[:, 0].sum() / total[:, 1].sum().clamp(min=1))
        per_kind = {f"eval_loss_{kind}": float(total[r, 0] / total[r, 1].clamp(min=1)) for r, kind in enumerate(kinds)}
        return {"eval_loss": ce, "eval_ppl": math.exp(min(ce, 50.0)), **per_kind}

    return evaluate


def pretrain(cfg: PretrainConfig, log: Callable[[str], None] = print) -> LoopState:
    """Run (or resume) a pre-training run into `cfg.out`."""
    accelerator = make_accelerator(cfg.device)
    run_dir = Path(cfg.out)
    with run_lock(run_dir, "pretrain", enabled=accelerator.is_main_process):  # one run per --out
        return _pretrain(cfg, accelerator, run_dir, log if accelerator.is_main_process else (lambda _msg: None))


RUN_FILES = ("model", "config.yaml", "metrics.jsonl", "loss.png", "tensorboard")  # what a run writes in --out


def _saved_budget(cfg: PretrainConfig, run_dir: Path) -> int | None:
    """The token budget a resumed run chose in its first segment (its batches replay exactly)."""
    path = run_dir / "config.yaml"
    if not (cfg.resume and path.is_file()):
        return None
    saved = read_yaml(path)
    value = saved.get("tokens_per_batch") if isinstance(saved, dict) else None
    return value if type(value) is int and value > 0 else None


def _pretrain(cfg: PretrainConfig, accelerator, run_dir: Path, say: Callable[[str], None]) -> LoopState:
    if not cfg.resume and checkpoints(run_dir):
        raise ProtlmError(f"{run_dir} already holds checkpoints: pass --resume to continue it, or choose a new --out")
    # a new run replaces model/ and config.yaml and appends to metrics.jsonl: never those of another run or project
    held = sorted(n for n in RUN_FILES if (run_dir / n).exists() or (run_dir / n).is_symlink())
    if not cfg.resume and held:
        raise ProtlmError(f"{run_dir} already holds {', '.join(held)}, which a new run would replace: pass --resume "
                          "to continue a run, or choose a new --out")  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    if not cfg.tokenizer:  # continued pre-training: the model's own tokenizer
        source = open_model(cfg.model)
        cfg.tokenizer, tokenizer = str(source.path), source.tokenizer()
    else:
        tokenizer = load_tokenizer(cfg.tokenizer)
    model = load_model(cfg, tokenizer, run_dir, say)
    check_packing(cfg, model.config)
    limit = model_max_tokens(model.config)
    if cfg.max_tokens is not None and cfg.max_tokens > limit:
        raise ProtlmError(f"--max-tokens {cfg.max_tokens} exceeds the model's {limit} positions")
    max_tokens = cfg.max_tokens or limit
    if accelerator.is_main_process:  # prepare the stores once, before any rank opens them
        policy = ResiduePolicy(strict=cfg.strict)
        if cfg.corpus:
            ensure_store(cfg.corpus, cfg.tokenizer, policy, cfg.cache_dir, log=say)
        if cfg.pairs:
            ensure_pair_store(cfg.pairs, cfg.tokenizer, policy, cfg.cache_dir, log=say)
        if cfg.assemblies:
            ensure_assembly_store(cfg.assemblies, cfg.assembly_sequences, cfg.tokenizer, policy, cfg.cache_dir, log=say)
    accelerator.wait_for_everyone()
    data, held, reports = build_data(cfg, tokenizer, max_tokens, say)
    objective = MaskedLMObjective(model)
    probe = mlm_probe(objective, accelerator.device, cfg.precision, max_tokens, data.masking.random_ids)
    resolve_budget(cfg, accelerator, probe, _saved_budget(cfg, run_dir), say)
    packing = resolve_packing(cfg, model.config, max_tokens, say)
    source = MLMSource(data, cfg.tokens_per_batch, cfg.mlm_probability, packing)
    per_step = accelerator.num_processes * cfg.grad_accum
    steps_per_epoch = max(1, len(source.epoch_batches(0)) // per_step)
    epochs = cfg.max_epochs if cfg.max_epochs is not None else 1.0  # schedule horizon under --max-time only
    total = cfg.max_steps if cfg.max_steps is not None else math.ceil(epochs * steps_per_epoch)
    if accelerator.is_main_process:
        save_config(cfg, run_dir / RUN_CONFIG)
        write_json(run_dir / "data_report.json", reports)
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    say(
        f"{n_params / 1e6:.1f}M parameters ({n_train / 1e6:.2f}M trainable), max {max_tokens} tokens, {steps_per_epoch:,} steps/epoch, "
        f"schedule over {total:,} steps, {accelerator.num_processes} process(es)"
    )
    evaluator = make_evaluator(data, held, cfg, accelerator)
    extra = {"protlm_pretrain.json": json.dumps({"config": asdict(cfg), "data": reports}, indent=2) + "\n"}
    job = Fit(objective, model, tokenizer, source, cfg, run_dir, accelerator, evaluator, extra_files=lambda: extra)
    state = fit(job, total, steps_per_epoch, say)
    if accelerator.is_main_process:
        say(f"loss curve -> {plot_run(run_dir)}")
    return state
