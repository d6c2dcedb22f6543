"""`protlm finetune` / `protlm evaluate` end to end on tiny fixtures with a micro pre-trained model."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import DATA, run_cli, write

TASKS = DATA / "tasks"


run = run_cli


@pytest.fixture(scope="module")
def pretrained(micro_model):
    return micro_model


def finetune(args, capsys, tmp_path, name="ft"):
    out = tmp_path / name
    code, stdout, err = run(["finetune", "--out", str(out), "--cache-dir", str(tmp_path / "cache"), *args], capsys)
    assert code in (0, None), err
    return out, err


def test_finetune_seeds_then_evaluate_reproduces(pretrained, tmp_path, capsys):
    args = ["--task", "localization", "--data", str(TASKS / "deeploc_small.fasta"), "--model", str(pretrained)]
    out, err = finetune([*args, "--max-steps", "3", "--seeds", "0,1", "--lr", "1e-3"], capsys, tmp_path)
    assert "deeploc_small.fasta: 30 records read, 30 used, 0 skipped" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and isinstance(summary["constant"], dict)  # seeds predicting one class, by split
    acc = summary["splits"]["test"]["accuracy"]
    assert 0 <= acc["mean"] <= 1 and acc["std"] >= 0
    for seed in (0, 1):
        run_dir = out / f"seed-{seed}"
        assert (run_dir / "model" / "model.safetensors").is_file() and (
            run_dir / "model" / "protlm_task.json"
        ).is_file()
        assert (run_dir / "eval" / "confusion_test.png").stat().st_size > 1000
        rows = (run_dir / "eval" / "predictions_test.tsv").read_text().splitlines()
        assert rows[0] == "id\tlabel\tpredicted\tprobability" and len(rows) == 1 + 6
    first = json.loads((out / "seed-0" / "eval" / "results.json").read_text())
    assert all(isinstance(r["constant"], str) for r in first["splits"].values())
    code, stdout, err = run(["evaluate", "--model", str(out / "seed-0" / "model"), "--split", "test",
                             "--out", str(tmp_path / "again")], capsys)  # fmt: skip
    assert code in (0, None), err
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert again["splits"]["test"]["metrics"] == first["splits"]["test"]["metrics"]
    assert again["splits"]["test"]["class_counts"] == first["splits"]["test"]["class_counts"]
    _evaluate_an_external_file(out / "seed-0", tmp_path, capsys)


def _evaluate_an_external_file(run_dir, tmp_path, capsys):
    """`evaluate --data FILE` scores the file whole and says what it scored; a named split says what it left
    unused; nothing is written over the fine-tune's eval/ or an earlier evaluation."""
    model, own = run_dir / "model", (run_dir / "eval" / "results.json").read_bytes()
    data = str(TASKS / "deeploc_small.fasta")
    code, stdout, err = run(["evaluate", "--model", str(model), "--data", data], capsys)
    assert code in (0, None), err
    assert "30 records read, 30 scored (all), 0 skipped, 0 unused" in err
    first = run_dir / "evaluate-deeploc_small.fasta-all"
    result = json.loads((first / "results.json").read_text())
    assert result["splits"]["all"]["n_examples"] == 30 and result["records"]["scored"] == 30
    assert result["data"] == data and (run_dir / "eval" / "results.json").read_bytes() == own
    from protlm.tasks.evaluate import read_outputs
    from protlm.tasks.metrics import compute

    y, prob, ids = read_outputs(first / "outputs_all.npz")  # any metric can be recomputed without the model
    assert len(ids) == 30 and compute(("accuracy",), y, prob)["accuracy"] == pytest.approx(
        result["splits"]["all"]["metrics"]["accuracy"]
    )
    code, _, err = run(["evaluate", "--model", str(model), "--data", data, "--split", "dev"], capsys)
    record = json.loads((run_dir / "evaluate-deeploc_small.fasta-dev" / "results.json").read_text())["records"]
    assert code in (0, None) and record["scored"] + record["unused"] == 30 and record["unused"] > 0
    assert f"{record['unused']} unused (splits not asked for: train" in err
    code, _, _ = run(["evaluate", "--model", str(model), "--data", data], capsys)
    assert code in (0, None) and (run_dir / "evaluate-deeploc_small.fasta-all-2" / "results.json").is_file()
    for out in (run_dir / "eval", first):
        code, _, err = run(["evaluate", "--model", str(model), "--data", data, "--out", str(out)], capsys)
        assert code == 2 and "choose a new --out" in err and err.count("\n") == 1, err
    assert (run_dir / "eval" / "results.json").read_bytes() == own
    for bad, message in (("scl2205:bogus", "SCL2205's splits are train, eval, heldout"),):
        code, _, err = run(["evaluate", "--model", str(model), "--data", bad], capsys)
        assert code == 2 and message in err, err
    from protlm.tasks.evaluate import evaluation

    heldout = evaluation(model, "scl2205:heldout", None)  # SCL2205's official split, by its own name
    assert heldout.splits == ["test"] and len(heldout.data.split("test")) > 1000 and heldout.data.source == "scl2205"


def test_baseline_and_scratch_on_pairs(pretrained, tmp_path, capsys):
    pairs = str(DATA / "pairs_small.tsv")  # train and dev pairs only
    out, _ = finetune(["--task", "ppi", "--data", pairs, "--model", "baseline"], capsys, tmp_path, "base")
    result = json.loads((out / "seed-0" / "eval" / "results.json").read_text())
    assert set(result["splits"]["dev"]["metrics"]) == {"accuracy", "f1", "mcc", "roc_auc", "pr_auc"}
    assert result["splits"]["dev"]["class_counts"] == {"0": 2, "1": 2}
    assert (out / "seed-0" / "model" / "baseline.safetensors").is_file()
    assert (out / "seed-0" / "eval" / "roc_dev.png").is_file() and (out / "seed-0" / "eval" / "pr_dev.png").is_file()
    out, err = finetune(["--task", "ppi", "--data", pairs, "--model", f"scratch:{pretrained}", "--max-steps", "2"],
                        capsys, tmp_path, "scratch")  # fmt: skip
    assert "model scratch (architecture of" in err
    info = json.loads((out / "seed-0" / "model" / "protlm_task.json").read_text())
    assert info["model_source"].startswith("scratch")


def test_a_split_with_one_class_prints_n_a_not_nan(tmp_path, capsys):
    """A one-example test split has no ROC-AUC: the results lines printed `roc_auc nan ± 0.0000`."""
    lines = (DATA / "pairs_small.tsv").read_text().splitlines()
    last_dev = max(k for k, line in enumerate(lines) if line.endswith("\tdev"))
    lines[last_dev] = lines[last_dev].removesuffix("dev") + "test"  # test: one pair, one class
    pairs = write(tmp_path / "pairs.tsv", "\n".join(lines) + "\n")
    out, err = finetune(["--task", "ppi", "--data", str(pairs), "--model", "baseline"], capsys, tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    assert np.isnan(summary["splits"]["test"]["roc_auc"]["mean"])
    test_lines = [line for line in err.splitlines() if line.startswith("ppi test")]
    assert len(test_lines) == 2  # evaluate's line (one seed) and finetune's over seeds
    assert all("nan" not in line for line in test_lines)
    assert all(
        "roc_auc n/a (one class in the split), pr_auc n/a (one class in the split)" in line for line in test_lines
    )
    assert re.search(r"ppi test over seeds \[0\]: accuracy \d\.\d{4} ± 0\.0000", err)


def test_metric_text_says_why_a_metric_is_undefined():
    from protlm.tasks.metrics import metric_text

    assert metric_text("roc_auc", 0.81234, 0.01) == "0.8123 ± 0.0100"
    assert metric_text("spearman", float("nan")) == "n/a (constant labels or predictions)"
    assert metric_text("accuracy", float("nan"), 0.0) == "n/a (no examples to score)"
    assert metric_text("mcc", 0.5, digits=3) == "0.500"


def test_frozen_encoder_residue_task(pretrained, tmp_path, capsys):
    data = str(TASKS / "ss_dssp_small.tsv")
    out, err = finetune(["--task", "ss3", "--data", data, "--model", str(pretrained), "--freeze", "--max-steps", "3",
                         "--lr", "1e-2"], capsys, tmp_path)  # fmt: skip
    assert "encoder frozen" in err
    before = load_file(pretrained / "model.safetensors")
    after = load_file(out / "seed-0" / "model" / "model.safetensors")
    key = "roberta.encoder.layer.0.attention.self.query.weight"
    np.testing.assert_array_equal(before[key], after[key])
    head = after["out_proj.weight"]
    assert head.shape == (3, 32)
    result = json.loads((out / "seed-0" / "eval" / "results.json").read_text())
    n_residues = result["splits"]["test"]["n_scored"]
    assert n_residues == sum(c for c in result["splits"]["test"]["class_counts"].values())  # per residue, not token


def test_tcr_titan_baseline(tmp_path, capsys):
    out, _ = finetune(["--task", "tcr", "--data", str(TASKS / "titan"), "--model", "baseline"], capsys, tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    assert "test" in summary["splits"] and "roc_auc" in summary["splits"]["test"]


def test_assembly_task_baseline_finetune_and_predict(pretrained, tmp_path, capsys):
    import protlm
    from protlm.io import iter_fasta

    data = str(TASKS / "assemblies_small.fasta")  # 3 chains per record, label last in the header
    out, err = finetune(["--task", "assembly", "--data", data, "--model", "baseline"], capsys, tmp_path, "base")
    assert "assemblies_small.fasta: 24 records read, 24 used, 0 skipped" in err
    result = json.loads((out / "seed-0" / "eval" / "results.json").read_text())
    assert sum(result["splits"]["test"]["class_counts"].values()) == len(
        (out / "seed-0" / "eval" / "predictions_test.tsv").read_text().splitlines()[1:]
    )
    args = ["--task", "assembly", "--data", data, "--model", str(pretrained), "--max-steps", "2", "--max-tokens", "96"]
    out, err = finetune(args, capsys, tmp_path, "lm")  # 96 tokens: every assembly is cropped, none refused
    model_dir = out / "seed-0" / "model"
    code, _, err = run(["predict", data, "--model", str(model_dir), "--out", str(tmp_path / "p.tsv")], capsys)
    assert code in (0, None), err
    rows = (tmp_path / "p.tsv").read_text().splitlines()
    assert rows[0] == "id\tpredicted\tp_0\tp_1" and len(rows) == 25
    rec = next(iter(iter_fasta(data)))
    lm = protlm.load(model_dir)
    (by_tuple,) = lm.predict([(rec.id, *rec.seq.split(":"))])
    (by_joined,) = lm.predict({rec.id: rec.seq})
    np.testing.assert_allclose(by_tuple.probabilities, by_joined.probabilities)
    first = rows[1].split("\t")
    assert first[0] == rec.id and abs(float(first[2]) - by_joined.probabilities[0]) < 1e-4


@pytest.mark.parametrize(
    "args,message",
    [
        (["--task", "nope", "--model", "baseline"], "unknown task 'nope'"),
        (["--task", "solubility", "--model", "baseline"], "task solubility has no built-in data"),
        (["--task", "localization", "--model", "/no/such/dir", "--data", str(TASKS / "deeploc_small.fasta")],
         "not a model directory"),
        (["--task", "localization", "--model", "baseline", "--seeds", "a,b"], "--seeds 'a,b'"),
    ],
)  # fmt: skip
def test_user_errors_are_one_line(args, message, tmp_path, capsys):
    code, _, err = run(["finetune", "--out", str(tmp_path / "x"), *args], capsys)
    assert code == 2 and message in err and "Traceback" not in err


def test_malformed_task_file_exits_2_with_file_and_line(tmp_path):
    bad = write(tmp_path / "bad.fasta", ">P1 Nucleus-S\nMKVL\n>P2 Nucleus-S\nMKZ1L\n")
    proc = subprocess.run(
        [sys.executable, "-m", "protlm", "finetune", "--task", "localization", "--data", str(bad), "--model",
         "baseline", "--out", str(tmp_path / "o")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().splitlines()[-1]
        == f"protlm: error: {bad} line 3 (record P2): invalid residue '1' at position 4"
    )


def test_kill_and_resume_finetune_is_bitwise_identical(pretrained, tmp_path):
    """Fine-tuning runs on the pre-training loop: a killed run resumes to the same weights."""
    import os

    import torch
    from safetensors.torch import load_file as load_torch

    def cli(out, *extra, env=None):
        args = ["--task", "localization", "--data", str(TASKS / "deeploc_small.fasta"), "--model", str(pretrained),
                "--out", str(out), "--max-steps", "6", "--batch-size", "4", "--lr", "1e-3", "--precision", "fp32",
                "--cache-dir", str(tmp_path / "cache"), *extra]  # fmt: skip
        return subprocess.run(
            [sys.executable, "-m", "protlm", "finetune", *args], capture_output=True, text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        )  # fmt: skip

    # save_every is a config option: a YAML recipe sets it (flags override the recipe)
    recipe = write(tmp_path / "recipe.yaml", "save_every: 2\n")
    assert cli(tmp_path / "ref", "--config", str(recipe)).returncode == 0
    killed = cli(tmp_path / "run", "--config", str(recipe), env={"PROTLM_FAULT": "step:5"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    again = cli(tmp_path / "run", "--config", str(recipe))
    assert again.returncode == 2 and "pass --resume" in again.stderr
    contradicts = subprocess.run([sys.executable, "-m", "protlm", "finetune", "--out", str(tmp_path / "run"),
                                  "--resume", "--lr", "0.01"], capture_output=True, text=True)  # fmt: skip
    assert contradicts.returncode == 2 and "--lr 0.01 contradicts the run" in contradicts.stderr, contradicts.stderr
    assert "lr: 0.001" in contradicts.stderr and len(contradicts.stderr.strip().splitlines()) == 1
    # --out and --resume are enough: task, data, model and schedule come from the run's config.yaml
    resumed = subprocess.run([sys.executable, "-m", "protlm", "finetune", "--out", str(tmp_path / "run"), "--resume"],
                             capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr
    a = load_torch(tmp_path / "ref" / "seed-0" / "model" / "model.safetensors")
    b = load_torch(tmp_path / "run" / "seed-0" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
