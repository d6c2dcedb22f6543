"""Task kinds as types (tasks/kinds.py): a regression and a multi-label task run end to end (finetune,
baseline, evaluate, predict, the API) on small synthetic sets whose targets follow from the sequence, and a
new regression task is one table entry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import protlm
from conftest import run_cli
from protlm.errors import ProtlmError
from protlm.tasks import table
from protlm.tasks.kinds import KINDS, Regression, get_kind

AA = "ACDEFGHIKLMNPQRSTVWY"
HYDROPHOBIC, CHARGED = set("AILMFVW"), set("DEKR")


def _proteins(n: int = 160, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    weights = [rng.dirichlet(np.ones(20) * 0.7) for _ in range(n)]  # varied compositions
    return ["M" + "".join(rng.choice(list(AA), size=int(rng.integers(30, 70)), p=w)) for w in weights]


def _score(seq: str) -> float:
    """A stability-like target: 10 x the hydrophobic fraction, minus 5 x the charged fraction."""
    return 10 * sum(c in HYDROPHOBIC for c in seq) / len(seq) - 5 * sum(c in CHARGED for c in seq) / len(seq)


def _labels(seq: str) -> str:
    out = [name for name, group in (("hydrophobic", HYDROPHOBIC), ("charged", CHARGED))
           if sum(c in group for c in seq) / len(seq) > 0.3]  # fmt: skip
    return ";".join(out)


def _finetune(args: list[str], out, capsys) -> dict:
    code, _, err = run_cli(["finetune", "--out", str(out), "--cache-dir", str(out.parent / "cache"), *args], capsys)
    assert code in (0, None), err
    return json.loads((out / "seed-0" / "eval" / "results.json").read_text())


def test_regression_from_a_tape_directory_and_a_table(micro_model, tmp_path, capsys):
    seqs = _proteins()
    tape = tmp_path / "tape"
    tape.mkdir()
    for split, part in (("train", seqs[:120]), ("valid", seqs[120:140]), ("test", seqs[140:])):
        records = [{"id": f"{split}{i}", "primary": s, "stability_score": [_score(s)]} for i, s in enumerate(part)]
        (tape / f"stability_{split}.json").write_text(json.dumps(records))
    base = _finetune(["--task", "stability", "--data", str(tape), "--model", "baseline"], tmp_path / "base", capsys)
    metrics = base["splits"]["test"]["metrics"]
    assert set(metrics) == {"spearman", "pearson", "rmse", "mae"} and metrics["spearman"] > 0.9  # ridge on composition
    assert base["splits"]["test"]["class_counts"]["n"] == 20

    run = tmp_path / "ft"
    result = _finetune(["--task", "stability", "--data", str(tape), "--model", str(micro_model), "--max-steps", "3"],
                       run, capsys)  # fmt: skip
    assert np.isfinite(result["splits"]["test"]["metrics"]["rmse"])
    assert (run / "seed-0" / "eval" / "scatter_test.png").stat().st_size > 1000
    rows = (run / "seed-0" / "eval" / "predictions_test.tsv").read_text().splitlines()
    assert rows[0] == "id\tvalue\tpredicted" and len(rows) == 21
    config = json.loads((run / "seed-0" / "model" / "config.json").read_text())
    train = np.array([_score(s) for s in seqs[:120]])
    assert config["protlm_kind"] == "regression" and len(config["id2label"]) == 1
    assert config["protlm_target_mean"] == pytest.approx(train.mean()) and config[
        "protlm_target_scale"
    ] == pytest.approx(train.std())

    # predictions are in the data's units: an untrained head predicts about the training mean
    model = protlm.load(run / "seed-0" / "model")
    preds = model.predict({"a": seqs[150], "b": seqs[151]})
    assert all(isinstance(p.label, float) and abs(p.label - train.mean()) < 3 * train.std() for p in preds)
    fasta = tmp_path / "in.fasta"
    fasta.write_text(f">a\n{seqs[150]}\n>b\n{seqs[151]}\n")
    code, _, err = run_cli(
        ["predict", str(fasta), "--model", str(run / "seed-0" / "model"), "--out", str(tmp_path / "p.tsv")], capsys
    )
    assert code in (0, None), err
    lines = (tmp_path / "p.tsv").read_text().splitlines()
    assert lines[0] == "id\tpredicted_score" and float(lines[1].split("\t")[1]) == pytest.approx(
        preds[0].label, rel=1e-5
    )

    # the same task from a table (sequence, score; no split column: group-disjoint 80/10/10)
    csv = tmp_path / "scores.csv"
    more = _proteins(400, seed=3)
    csv.write_text("id,sequence,score\n" + "".join(f"p{i},{s},{_score(s)}\n" for i, s in enumerate(more)))
    result = _finetune(["--task", "stability", "--data", str(csv), "--model", "baseline"], tmp_path / "tab", capsys)
    assert result["splits"]["test"]["metrics"]["spearman"] > 0.8


def test_multilabel_baseline_learns_and_a_model_trains(micro_model, tmp_path, capsys):
    seqs = _proteins(400, seed=1)
    csv = tmp_path / "sets.csv"
    csv.write_text("id,sequence,labels\n" + "".join(f"p{i},{s},{_labels(s)}\n" for i, s in enumerate(seqs)))
    base = _finetune(["--task", "multilabel", "--data", str(csv), "--model", "baseline"], tmp_path / "base", capsys)
    assert base["splits"]["test"]["metrics"]["micro_f1"] > 0.8
    assert set(base["splits"]["test"]["class_counts"]) == {"charged", "hydrophobic"}
    run = tmp_path / "ft"
    result = _finetune(["--task", "multilabel", "--data", str(csv), "--model", str(micro_model), "--max-steps", "3",
                        "--weighted-loss"], run, capsys)  # fmt: skip
    assert set(result["splits"]["test"]["metrics"]) == {"micro_f1", "label_macro_f1", "exact_match", "label_roc_auc"}
    rows = (run / "seed-0" / "eval" / "predictions_test.tsv").read_text().splitlines()
    assert rows[0] == "id\tlabels\tpredicted"
    pred = protlm.load(run / "seed-0" / "model").predict({"x": seqs[0]})[0]
    assert isinstance(pred.label, list) and pred.probabilities.shape == (2,) and (0 <= pred.probabilities).all()


def test_a_new_regression_task_is_one_entry(micro_model, tmp_path, capsys, monkeypatch):
    seqs = _proteins(seed=2)
    csv = tmp_path / "melt.csv"
    csv.write_text("sequence,score\n" + "".join(f"{s},{_score(s) * 3 + 40}\n" for s in seqs))
    entry = table.TaskSpec("melting", table.REGRESSION, "melting temperature", "table with sequence, score",
                           ("spearman", "rmse"), "spearman", table._load_score("melting", "tm"))  # fmt: skip
    monkeypatch.setitem(table.TASKS, "melting", entry)
    result = _finetune(["--task", "melting", "--data", str(csv), "--model", str(micro_model), "--max-steps", "2"],
                       tmp_path / "ft", capsys)  # fmt: skip
    assert set(result["splits"]["test"]["metrics"]) == {"spearman", "rmse"}


def test_regression_loss_is_the_standardised_mse_and_outputs_are_in_data_units():
    class Config:
        protlm_target_mean, protlm_target_scale = 40.0, 4.0

    kind = Regression()
    head = torch.tensor([[0.5], [-1.0]])  # standardised
    out = kind.scale_output(head, Config)
    assert torch.allclose(out[:, 0], torch.tensor([42.0, 36.0]))
    y = torch.tensor([44.0, 40.0])
    expected = ((head[:, 0] - (y - 40) / 4) ** 2).mean()
    assert torch.allclose(kind.loss(out, y, None, Config), expected)


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ("id,sequence,score\np1,MKTAYIAKQR,abc\n", "bad.csv line 2 (record p1): score 'abc' is not a finite number"),
        ("id,sequence,score\np1,MKTAYIAKQR,inf\n", "bad.csv line 2 (record p1): score 'inf' is not a finite number"),
        ("id,sequence\np1,MKTAYIAKQR\n", "missing column score"),
    ],
)
def test_bad_regression_tables_are_one_line(cells, message, tmp_path, capsys):
    csv = tmp_path / "bad.csv"
    csv.write_text(cells)
    code, _, err = run_cli(["finetune", "--task", "stability", "--data", str(csv), "--model", "baseline",
                            "--out", str(tmp_path / "out")], capsys)  # fmt: skip
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out" / "seed-0").exists()


def test_every_kind_is_known_by_name():
    for name, kind in KINDS.items():
        assert get_kind(name) is kind and get_kind(kind) is kind
    with pytest.raises(ProtlmError, match="unknown task kind 'ranking'"):
        get_kind("ranking")


def test_a_constant_predictor_is_flagged_by_every_kind():
    """A model that predicts one class (or nearly: 99%) gets a note beside its metrics, which then measure
    the class balance; a model that varies gets none."""
    import numpy as np

    from protlm.tasks.kinds import get_kind

    names = ("a", "b", "c")
    one = np.tile([0.1, 0.7, 0.2], (50, 1))
    assert get_kind("sequence").constant(one, names) == "predicts one class (b)"
    nearly = np.vstack([np.tile([0.1, 0.7, 0.2], (199, 1)), [[0.9, 0.05, 0.05]]])
    assert get_kind("pair").constant(nearly, names) == "predicts one class (b) for 99.5% of inputs"
    mixed = np.vstack([np.tile([0.1, 0.7, 0.2], (90, 1)), np.tile([0.8, 0.1, 0.1], (10, 1))])
    assert get_kind("residue").constant(mixed, names) == "" and get_kind("sequence").constant(one[:1], names) == ""
    assert get_kind("regression").constant(np.full(10, 0.3), ("score",)) == "predicts one value"
    assert get_kind("regression").constant(np.linspace(0, 1, 10), ("score",)) == ""
    assert get_kind("multilabel").constant(np.tile([0.9, 0.1, 0.6], (5, 1)), names) == "predicts one label set"


def test_demo_reports_steps_done_against_those_planned():
    from protlm.demo import steps_line

    assert steps_line("pre-training", 300, 300, "max_steps", 20) == "pre-training: 300 of 300 steps"
    short = steps_line("scratch", 55, 150, "max_time", 10)
    assert (
        short.startswith("scratch: stopped at step 55 of 150 by the 10-minute safety limit") and "undertrained" in short
    )


def test_paired_bootstrap_separates_a_better_model_from_noise():
    """Two models on the same test set: a clearly better one gets an interval above 0 and a small p; two
    equal ones an interval around 0. Resampling by group (proteins of residues) widens the interval."""
    import numpy as np

    from protlm.tasks.metrics import paired_bootstrap

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    good = [np.eye(2)[np.where(rng.random(400) < 0.8, y, 1 - y)] for _ in range(3)]  # 80% right
    coin = [np.eye(2)[rng.integers(0, 2, 400)] for _ in range(3)]
    better = paired_bootstrap("accuracy", y, good, coin, n=300)
    assert better["diff"] > 0.2 and better["ci95"][0] > 0 and better["p_a_not_better"] < 0.01
    same = paired_bootstrap("accuracy", y, coin, coin[::-1], n=300)
    assert same["ci95"][0] <= 0 <= same["ci95"][1] and 0.05 < same["p_a_not_better"]
    grouped = paired_bootstrap("accuracy", y, good, coin, groups=np.repeat(np.arange(20), 20), n=300)
    assert grouped["groups"] == 20 and grouped["ci95"][1] - grouped["ci95"][0] > 0


def test_evaluation_keeps_the_outputs_to_recompute_any_metric(tmp_path):
    import numpy as np

    from protlm.tasks.evaluate import read_outputs, write_outputs
    from protlm.tasks.metrics import compute

    y, prob = np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    write_outputs(tmp_path / "outputs_test.npz", y, prob, ["a", "b", "c"])
    y2, prob2, ids = read_outputs(tmp_path / "outputs_test.npz")
    assert ids.tolist() == ["a", "b", "c"] and compute(("accuracy",), y2, prob2) == compute(("accuracy",), y, prob)
