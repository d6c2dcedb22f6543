"""The paper's claim at equal budget: does masked-LM pre-training on binding pairs help downstream tasks, beside
pre-training on single proteins and beside a random-pair control? (issue 31; docs/pairs_ablation.md)

Arms: the same tokenizer, model preset, seed, tokens per batch and number of steps (so the same number of
training tokens, padding included), each pre-trained by `protlm pretrain` itself:
- `singles`: SCL2205 train+eval singles;
- `pairs`: the same singles plus the binding and non-binding pairs of --pairs (the paper's mix, 1:1:1);
- `random`: the same singles plus random pairs: the training pairs of `pairs` with their partners shuffled
  (the same proteins on each side, so the same lengths, and the same number of pairs per epoch), never a
  known binding pair or a protein with itself: the control;
- `binding` (optional): singles plus the binding pairs only.
Training pairs holding a protein of a downstream test set (the same sequence) are removed first, and counted.

Downstream: localization (SCL2205 heldout), ppi (the built-in pairs' protein-disjoint test split), ss3 (the
shared DSSP chains, cluster-disjoint) and tcr (unseen epitopes) where the data is at hand; each arm fine-tuned
with --seeds seeds, the composition baseline beside; a paired bootstrap over test examples (whole proteins
for ss3) of every arm against `singles` and against `random`.

    .venv/bin/python bench/pairs_ablation.py --tokens 4M --finetune-steps 200 --seeds 0,1,2
    .venv/bin/python bench/pairs_ablation.py --table-only        # rewrite the table from results.json

Every stage is resumable: a pre-training run continues with `protlm pretrain --out ARM --resume` (its
recipe restored from the run), and finished fine-tunes are reused. Outputs: --out (runs, results.json,
mlm_loss.png) and bench/pairs_ablation.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from downstream import tcr_subset  # noqa: E402

MIX = {"singles": "singles=1", "pairs": "singles=1,binding=1,nonbinding=1", "random": "singles=1,binding=2,nonbinding=0",
       "binding": "singles=1,binding=1,nonbinding=0"}  # fmt: skip
TEST_SPLIT = {"localization": "test", "ppi": "test", "ss3": "test", "tcr": "test-unseen-epitope"}


def parse_tokens(text: str) -> int:
    """`50M`, `4M`, `800k`, `1500000` -> tokens."""
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}.get(text[-1].lower())
    return int(float(text[:-1]) * scale) if scale else int(text)


def pair_table(source: str) -> pd.DataFrame:
    """A pair table (id_a, id_b, seq_a, seq_b, label, split): `builtin` or a Parquet / TSV / CSV file."""
    from protlm.pairs import builtin_pairs

    path = builtin_pairs() if source == "builtin" else Path(source)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, sep="\t" if path.suffix in (".tsv", ".txt") else ",")


def test_sequences(tasks: list[str], data: dict) -> set[str]:
    """The proteins of every downstream test split (localization, ppi, ss3): pre-training pairs keep clear."""
    from protlm.tasks.table import get_task, load_task_data

    seqs: set[str] = set()
    for task in tasks:
        if task == "tcr":  # CDR3 loops and epitopes: not proteins that a pair table holds
            continue
        d, background = data[task]
        td = load_task_data(get_task(task), d, 0, False, background)
        for split in td.test_splits:
            seqs.update(s for ex in td.split(split) for s in ex.parts)
    return seqs


def without_test_proteins(table: pd.DataFrame, test: set[str]) -> tuple[pd.DataFrame, int]:
    """Training pairs holding a downstream test protein removed (held-out rows kept: they are never trained)."""
    leak = (table["split"] == "train") & (table["seq_a"].isin(test) | table["seq_b"].isin(test))
    return table[~leak].reset_index(drop=True), int(leak.sum())


def random_pairs(table: pd.DataFrame, seed: int = 0, rounds: int = 100) -> pd.DataFrame:
    """The control: the training pairs with the B sides shuffled among them (each side keeps its proteins, so
    its lengths), re-drawn until no pair is a known binding pair (either order) or a protein with itself; all
    labelled 1 (the label never enters the loss); the held-out rows as they are, so `pairs` and `random` are
    evaluated on the same held-out pairs."""
    train = table[table["split"] == "train"].reset_index(drop=True)
    known = {frozenset(p) for p in table.loc[table["label"] == 1, ["id_a", "id_b"]].itertuples(index=False)}
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train))
    id_a, id_b = train["id_a"].to_numpy(), train["id_b"].to_numpy()

    def clashes() -> np.ndarray:
        return np.array([a == id_b[j] or frozenset((a, id_b[j])) in known for a, j in zip(id_a, order, strict=True)],
                        dtype=bool)  # fmt: skip

    bad = clashes()
    for _ in range(rounds):
        if not bad.any():
            break
        for i, j in zip(np.flatnonzero(bad), rng.integers(0, len(order), int(bad.sum())), strict=True):
            order[i], order[j] = order[j], order[i]  # swaps: `order` stays a permutation
        bad = clashes()
    shuffled = train.assign(id_b=train["id_b"].to_numpy()[order], seq_b=train["seq_b"].to_numpy()[order], label=1)
    shuffled = shuffled[~bad].reset_index(drop=True)
    return pd.concat([shuffled, table[table["split"] != "train"]], ignore_index=True)


def arm_tables(args, out: Path, tasks: list[str], data: dict) -> dict[str, Path | None]:
    """The pair table of every arm, written once to `out/pairs/`; the leakage filter's count in report.json."""
    where = out / "pairs"
    report = where / "report.json"
    if report.is_file():
        return {arm: (None if arm == "singles" else where / f"{arm}.parquet") for arm in args.arms}
    where.mkdir(parents=True, exist_ok=True)
    table, removed = without_test_proteins(pair_table(args.pairs), test_sequences(tasks, data))
    tables = {"pairs": table, "random": random_pairs(table, args.seed),
              "binding": table[table["label"] == 1].reset_index(drop=True)}  # fmt: skip
    for arm, t in tables.items():
        t.to_parquet(where / f"{arm}.parquet", index=False)
    counts = {arm: {s: int(n) for s, n in t["split"].value_counts().items()} for arm, t in tables.items()}
    report.write_text(json.dumps({"source": args.pairs, "removed_test_protein_pairs": removed, "rows": counts},
                                 indent=2) + "\n")  # fmt: skip
    return {arm: (None if arm == "singles" else where / f"{arm}.parquet") for arm in args.arms}


def pretrain_arm(arm: str, pairs: Path | None, args, out: Path, steps: int) -> Path:
    """`protlm pretrain` for one arm (continued with --resume when interrupted); its model directory."""
    run = out / "pretrain" / arm
    model = run / "model"
    if model.is_dir() and _last_step(run) >= steps:
        return model
    if (run / "checkpoints").is_dir():
        cmd = ["--out", str(run), "--resume"]  # the run's own recipe, restored from run/config.yaml
    else:
        cmd = ["--out", str(run), "--tokenizer", str(args.tokenizer), "--model", args.model, "--corpus", "scl2205",
               "--mix", MIX[arm], "--max-steps", str(steps), "--tokens-per-batch", str(args.tokens_per_batch),
               "--lr", str(args.lr), "--warmup-steps", str(max(1, steps // 10)), "--seed", str(args.seed),
               "--precision", args.precision, "--eval-every", str(max(1, steps // 10)),
               "--save-every", str(max(1, steps // 10)), "--log-every", "10"]  # fmt: skip
        cmd += ["--pairs", str(pairs)] if pairs is not None else []
    print(f"[pretrain {arm}] protlm pretrain {' '.join(cmd)}", flush=True)
    subprocess.run([sys.executable, "-m", "protlm", "pretrain", *cmd], check=True)
    return model


def _last_step(run: Path) -> int:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return 0
    steps = [json.loads(line).get("step", 0) for line in path.read_text().splitlines() if line.strip()]
    return max(steps, default=0)


def finetune_arm(task: str, arm: str, model: str, data: dict, args, out: Path) -> dict:
    """Fine-tune one arm's model (or the baseline) on one task with the seeds; finished runs are reused."""
    from protlm.tasks.finetune import FinetuneConfig, finetune

    run = out / "finetune" / task / arm
    if (run / "summary.json").is_file():
        return json.loads((run / "summary.json").read_text())
    d, background = data[task]
    seeds = [0] if model == "baseline" else args.seeds
    cfg = FinetuneConfig(out=str(run), task=task, model=model, data=d, background=background,
                         max_steps=args.finetune_steps, lr=args.finetune_lr, warmup_ratio=0.1, log_every=20,
                         seeds=seeds, pooling="mean", precision=args.precision)  # fmt: skip
    cfg.validate()
    return finetune(cfg, log=lambda msg: print(f"[{task} {arm}] {msg}", flush=True))


def compare(task: str, a: str, b: str, out: Path, args) -> dict | None:
    """Paired bootstrap of arm `a` against arm `b` on the task's test split (every seed of each)."""
    from protlm.tasks.evaluate import read_outputs
    from protlm.tasks.metrics import paired_bootstrap
    from protlm.tasks.table import get_task

    split, spec = TEST_SPLIT[task], get_task(task)
    runs = {arm: [out / "finetune" / task / arm / f"seed-{s}" / "eval" / f"outputs_{split}.npz" for s in args.seeds]
            for arm in (a, b)}  # fmt: skip
    if not all(p.is_file() for ps in runs.values() for p in ps):
        return None
    loaded = {arm: [read_outputs(p) for p in ps] for arm, ps in runs.items()}
    y, _, ids = loaded[a][0]
    if any(not np.array_equal(o[0], y) for outputs in loaded.values() for o in outputs):
        raise SystemExit(f"{task}: the arms were scored on different test rows")
    groups = np.char.partition(ids.astype(str), ":")[:, 0] if spec.kind.per_residue else None
    return paired_bootstrap(spec.primary, y, [p for _, p, _ in loaded[a]], [p for _, p, _ in loaded[b]], groups,
                            n=args.resamples)  # fmt: skip


LOSS_KINDS = ("singles", "binding", "nonbinding")  # protlm pretrain's eval_loss_<kind>


def loss_curves(out: Path, arms: list[str]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Held-out MLM loss of every arm, per held-out kind, against the non-padding tokens trained on so far.
    Every arm scores the same held-out singles; the pair arms also score the same held-out pairs."""
    curves = {}
    for arm in arms:
        path = out / "pretrain" / arm / "metrics.jsonl"
        if not path.is_file():
            continue
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        # tokens are logged every --log-every steps, evaluations come every --eval-every: interpolate between
        logged = sorted({0: 0, **{r["step"]: r["tokens"] for r in rows if "tokens" in r}}.items())
        steps, tokens = np.array(logged).T
        curves[arm] = {kind: [(int(round(float(np.interp(r["step"], steps, tokens)))), r[f"eval_loss_{kind}"])
                              for r in rows if f"eval_loss_{kind}" in r] for kind in LOSS_KINDS}  # fmt: skip
        curves[arm] = {kind: points for kind, points in curves[arm].items() if points}
    return curves


def plot_curves(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    for i, (arm, kinds) in enumerate(curves.items()):
        for kind, points in kinds.items():
            ax = axes[0] if kind == "singles" else axes[1]
            ax.plot([t / 1e6 for t, _ in points], [v for _, v in points], marker="o", ms=3, color=f"C{i}",
                    ls="--" if kind == "nonbinding" else "-", label=arm if kind == "singles" else f"{arm}, {kind}")  # fmt: skip
    axes[0].set_title("held-out single proteins (the same for every arm)")
    axes[1].set_title("held-out pairs (the same for the pair arms)")
    for ax in axes:
        ax.set_xlabel("tokens trained on (millions, no padding)")
        ax.set_ylabel("held-out MLM loss (nats)")
        if ax.has_data():
            ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "ablation")
    ap.add_argument("--shared", type=Path, default=ROOT.parent.parent / "shared" / "data")
    ap.add_argument("--tokenizer", type=Path, help="default: the default BPE trained on SCL2205 into OUT/tokenizer")
    ap.add_argument("--pairs", default="builtin", help="builtin, or a pair table (id_a,id_b,seq_a,seq_b,label,split)")
    ap.add_argument("--arms", default="singles,pairs,random")
    ap.add_argument("--tasks", default="localization,ppi,ss3,tcr")
    ap.add_argument("--model", default="tiny", help="a preset")
    ap.add_argument("--tokens", default="4M", help="pre-training tokens per arm (padding included), e.g. 50M")
    ap.add_argument("--tokens-per-batch", type=int, default=8192)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--precision", default="fp32", help="the same for every arm (auto would measure each)")
    ap.add_argument("--finetune-steps", type=int, default=200)
    ap.add_argument("--finetune-lr", type=float, default=1e-3)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--tcr-positives", type=int, default=20_000)
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    args.arms, args.seeds = args.arms.split(","), [int(s) for s in args.seeds.split(",")]
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    steps = max(1, parse_tokens(args.tokens) // args.tokens_per_batch)
    if not args.table_only:
        run(args, out, steps)
    write_table(json.loads((out / "results.json").read_text()))


def downstream_data(args, out: Path) -> tuple[list[str], dict]:
    """The tasks whose data is at hand, and their (data, background) arguments."""
    data = {"localization": (None, None), "ppi": (None, None),
            "ss3": (str(args.shared / "secondary_structure.tsv.gz"), None)}  # fmt: skip
    if (args.shared / "tcr_epitope_pairs.tsv.gz").is_file():
        data["tcr"] = (str(tcr_subset(args.shared, out, args.tcr_positives)),
                       str(args.shared / "tcr_background_cdr3b.txt.gz"))  # fmt: skip
    tasks = [t for t in args.tasks.split(",") if t in data and (data[t][0] is None or Path(data[t][0]).is_file())]
    return tasks, data


def run(args, out: Path, steps: int) -> None:
    tasks, data = downstream_data(args, out)
    if args.tokenizer is None:
        args.tokenizer = _default_tokenizer(out / "tokenizer")
    tables = arm_tables(args, out, tasks, data)
    models = {arm: str(pretrain_arm(arm, tables[arm], args, out, steps)) for arm in args.arms}
    results = {"budget": {"tokens_per_arm": steps * args.tokens_per_batch, "steps": steps,
                          "tokens_per_batch": args.tokens_per_batch, "model": args.model, "seed": args.seed,
                          "finetune_steps": args.finetune_steps, "seeds": args.seeds},
               "pairs": json.loads((out / "pairs" / "report.json").read_text()), "tasks": {}}  # fmt: skip
    for task in tasks:
        summaries = {name: finetune_arm(task, name, model, data, args, out)
                     for name, model in {"baseline": "baseline", **models}.items()}  # fmt: skip
        split = TEST_SPLIT[task]
        results["tasks"][task] = {
            "split": split,
            "arms": {name: s["splits"][split] for name, s in summaries.items()},
            "constant": {name: s.get("constant", {}).get(split, {}) for name, s in summaries.items()},
            "vs_singles": {arm: compare(task, arm, "singles", out, args) for arm in args.arms if arm != "singles"},
            "vs_random": {arm: compare(task, arm, "random", out, args) for arm in args.arms
                          if arm not in ("random", "singles") and "random" in args.arms},
        }  # fmt: skip
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    curves = loss_curves(out, args.arms)
    results["mlm_loss"] = {arm: {kind: points[-1] for kind, points in kinds.items()} for arm, kinds in curves.items()}
    plot_curves(curves, out / "mlm_loss.png")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


def _default_tokenizer(where: Path) -> Path:
    from protlm.corpora import open_corpus
    from protlm.tokenization import DEFAULT_KIND, DEFAULT_VOCAB_SIZE, train_from_corpus

    if not (where / "tokenizer.json").is_file():
        train_from_corpus(open_corpus("scl2205"), where, DEFAULT_KIND, DEFAULT_VOCAB_SIZE)
    return where


def write_table(results: dict) -> None:
    """bench/pairs_ablation.md: per task, each arm's mean ± std over seeds and the paired comparisons."""
    from protlm.tasks.table import get_task

    if not results["tasks"]:
        return
    arms = [a for a in next(iter(results["tasks"].values()))["arms"] if a != "baseline"]
    b = results["budget"]
    lines = ["# Pairs ablation: singles vs binding pairs vs random pairs, equal budget", "",
             f"Produced by `bench/pairs_ablation.py`: {b['model']} preset, {b['steps']} pre-training steps x "
             f"{b['tokens_per_batch']:,} tokens ({b['tokens_per_arm'] / 1e6:.1f}M tokens per arm, padding included), "
             f"seed {b['seed']}; fine-tuning {b['finetune_steps']} steps, seeds {b['seeds']}. Pairs: "
             f"{results['pairs']['source']}, {results['pairs']['removed_test_protein_pairs']} training pairs holding "
             "a downstream test protein removed.", "",
             "| task (test split) | metric | baseline | " + " | ".join(arms) + " |"]  # fmt: skip
    lines.append("|---|---|" + "---:|" * (len(arms) + 1))
    for task, r in results["tasks"].items():
        metric = get_task(task).primary
        cells = [f"{r['arms']['baseline'][metric]['mean']:.3f}"]
        for arm in arms:
            m = r["arms"][arm][metric]
            note = " (one class)" if r["constant"].get(arm) else ""
            cells.append(f"{m['mean']:.3f} ± {m['std']:.3f}{note}")
        lines.append(f"| {task} ({r['split']}) | {metric} | " + " | ".join(cells) + " |")
    lines += ["", "Paired bootstrap over test examples (whole proteins for ss3), mean over seeds: A - B, 95% "
              "interval, one-sided p (share of resamples where A is not better).", ""]  # fmt: skip
    for task, r in results["tasks"].items():
        for against in ("vs_singles", "vs_random"):
            for arm, c in r[against].items():
                if c:
                    spread = max(r["arms"][arm][c["metric"]]["std"], r["arms"][against[3:]][c["metric"]]["std"])
                    verdict = "beyond" if abs(c["diff"]) > spread else "within"
                    lines.append(f"- {task}: {arm} - {against[3:]} = {c['diff']:+.4f} [{c['ci95'][0]:+.4f}, "
                                 f"{c['ci95'][1]:+.4f}], p = {c['p_a_not_better']:.3f} ({verdict} the seed "
                                 f"spread {spread:.4f})")  # fmt: skip
    if "mlm_loss" in results:
        lines += ["", "Held-out MLM loss at the end (nats, per held-out kind; every arm scores the same held-out "
                  "single proteins, the pair arms the same held-out binding and non-binding pairs):", ""]  # fmt: skip
        for arm, kinds in results["mlm_loss"].items():
            losses = ", ".join(f"{kind} {v:.3f}" for kind, (_, v) in kinds.items())
            tokens = max(t for t, _ in kinds.values())
            lines.append(f"- {arm}: {losses} (after {tokens / 1e6:.2f}M tokens)")
    (ROOT / "pairs_ablation.md").write_text("\n".join(lines) + "\n")
    print(f"table -> {ROOT / 'pairs_ablation.md'}")


if __name__ == "__main__":
    main()
