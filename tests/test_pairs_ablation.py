"""The pairs ablation's control (bench/pairs_ablation.py): random pairs keep each side's proteins, never pair
known binders or a protein with itself, and keep the held-out pairs; the leakage filter removes training pairs
that hold a test protein."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

BENCH = Path(__file__).resolve().parents[1] / "bench" / "pairs_ablation.py"


def ablation():
    spec = importlib.util.spec_from_file_location("pairs_ablation", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    seqs = {f"P{i}": "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 20 + i)) for i in range(n)}
    rows = [(f"P{i}", f"P{(i + 1) % n}", 1, "train") for i in range(0, n, 2)]  # binding: neighbours
    rows += [(f"P{i}", f"P{(i + 7) % n}", 0, "train") for i in range(0, n, 3)]
    rows += [("P1", "P2", 1, "test"), ("P3", "P9", 0, "dev")]
    return pd.DataFrame([{"id_a": a, "id_b": b, "seq_a": seqs[a], "seq_b": seqs[b], "label": y, "split": s}
                         for a, b, y, s in rows])  # fmt: skip


def test_random_pairs_keep_each_side_and_never_pair_binders():
    pairs = table()
    shuffled = ablation().random_pairs(pairs, seed=3)
    train, held = pairs[pairs["split"] == "train"], shuffled[shuffled["split"] != "train"]
    random = shuffled[shuffled["split"] == "train"]
    known = {frozenset(p) for p in pairs.loc[pairs["label"] == 1, ["id_a", "id_b"]].itertuples(index=False)}
    assert len(random) == len(train) and (random["label"] == 1).all()
    assert sorted(random["id_a"]) == sorted(train["id_a"]) and sorted(random["id_b"]) == sorted(train["id_b"])
    assert sorted(map(len, random["seq_b"])) == sorted(map(len, train["seq_b"]))  # each side's lengths kept
    assert not any(frozenset(p) in known or p[0] == p[1] for p in random[["id_a", "id_b"]].itertuples(index=False))
    assert held.reset_index(drop=True).equals(pairs[pairs["split"] != "train"].reset_index(drop=True))
    again = ablation().random_pairs(pairs, seed=3)
    assert again.equals(shuffled)  # seeded


def test_training_pairs_with_a_test_protein_are_removed_held_out_rows_kept():
    pairs = table()
    test = {pairs["seq_a"][0]}
    kept, removed = ablation().without_test_proteins(pairs, test)
    holds = (pairs["seq_a"] == pairs["seq_a"][0]) | (pairs["seq_b"] == pairs["seq_a"][0])
    assert removed == int((holds & (pairs["split"] == "train")).sum()) > 0
    assert len(kept) == len(pairs) - removed and not kept[kept["split"] == "train"]["seq_a"].isin(test).any()
    assert ablation().parse_tokens("4M") == 4_000_000 and ablation().parse_tokens("800k") == 800_000


def test_loss_curves_are_per_held_out_kind_and_plotted(tmp_path):
    rows = {"singles": ['{"step": 0, "eval_loss": 9.0, "eval_loss_singles": 9.0}', '{"step": 2, "tokens": 500}',
                        '{"step": 3, "eval_loss": 8.5, "eval_loss_singles": 8.5}', '{"step": 4, "tokens": 900}',
                        '{"step": 4, "eval_loss": 8.0, "eval_loss_singles": 8.0}'],
            "pairs": ['{"step": 0, "eval_loss": 9.1, "eval_loss_singles": 9.0, "eval_loss_binding": 9.2, '
                      '"eval_loss_nonbinding": 9.3}', '{"step": 2, "tokens": 480}',
                      '{"step": 2, "eval_loss": 7.9, "eval_loss_singles": 8.1, "eval_loss_binding": 7.5, '
                      '"eval_loss_nonbinding": 7.7}']}  # fmt: skip
    for arm, lines in rows.items():
        (tmp_path / "pretrain" / arm).mkdir(parents=True)
        (tmp_path / "pretrain" / arm / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    module = ablation()
    curves = module.loss_curves(tmp_path, ["singles", "pairs", "random"])  # random: not trained yet
    # an evaluation between two logged steps gets the tokens interpolated between them
    assert curves == {"singles": {"singles": [(0, 9.0), (700, 8.5), (900, 8.0)]},
                      "pairs": {"singles": [(0, 9.0), (480, 8.1)], "binding": [(0, 9.2), (480, 7.5)],
                                "nonbinding": [(0, 9.3), (480, 7.7)]}}  # fmt: skip
    module.plot_curves(curves, tmp_path / "mlm_loss.png")
    assert (tmp_path / "mlm_loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
