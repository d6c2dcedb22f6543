"""Pre-training end to end on a micro model: checkpoints, exact resume, DDP, budgets, errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM, AutoTokenizer

from protlm.cli import main
from protlm.train.config import PretrainConfig
from protlm.train.metrics import read_metrics
from protlm.train.pretrain import pretrain

DATA = Path(__file__).parent / "data"


def base_args(out: Path, cache: Path, **extra) -> list[str]:
    args = {
        "--out": out, "--tokenizer": DATA / "tokenizer_bpe300", "--model": DATA / "micro.yaml",
        "--corpus": DATA / "swissprot_50.fasta", "--pairs": DATA / "pairs_small.tsv",
        "--tokens-per-batch": 1024, "--max-tokens": 64, "--warmup-steps": 3, "--lr": 1e-3,
        "--log-every": 1, "--eval-every": 4, "--save-every": 4, "--cache-dir": cache, "--precision": "fp32",
    }  # fmt: skip
    args.update(extra)
    return [str(x) for kv in args.items() for x in kv]


def cfg_from(args: list[str]) -> PretrainConfig:
    keys = [a[2:].replace("-", "_") for a in args[::2]]
    values = dict(zip(keys, args[1::2], strict=True))
    for k in (
        "tokens_per_batch",
        "max_tokens",
        "warmup_steps",
        "log_every",
        "eval_every",
        "save_every",
        "max_steps",
        "grad_accum",
    ):
        if k in values:
            values[k] = int(values[k])
    for k in ("lr", "dropout"):
        if k in values:
            values[k] = float(values[k])
    cfg = PretrainConfig(**values)
    cfg.validate()
    return cfg


def run_cli(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "protlm", "pretrain", *args],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )  # fmt: skip


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model" / "model.safetensors")


def test_pretrain_singles_and_pairs_checkpoint_round_trip(tmp_path):
    args = base_args(tmp_path / "run", tmp_path / "cache", **{"--max-steps": 6})
    state = pretrain(cfg_from(args), log=lambda m: None)
    assert state.step == 6 and state.stopped_by == "max_steps"
    run = tmp_path / "run"
    # plain transformers loads the result, safetensors only, no pickles anywhere
    model = AutoModelForMaskedLM.from_pretrained(run / "model")
    tok = AutoTokenizer.from_pretrained(run / "model")
    assert model.config.vocab_size == len(tok) == 300
    assert not list(run.rglob("*.bin")) and not list(run.rglob("*.pt")) and not list(run.rglob("*.pkl"))
    # metrics, config and data report are in the run directory; the loss curve was plotted
    records = read_metrics(run)
    evals = [r for r in records if "eval_loss" in r]
    assert [r["step"] for r in evals] == [0, 4, 6] and all(np.isfinite(r["eval_ppl"]) for r in evals)
    assert all(r["tokens_per_s"] > 0 for r in records if "loss" in r)
    assert (run / "config.yaml").is_file() and (run / "loss.png").is_file()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    report = json.loads((run / "data_report.json").read_text())
    sizes = report["mixture"]["pool_sizes"]
    assert sizes["binding"] > 0 and sizes["nonbinding"] > 0 and sizes["singles"] > 0
    assert "records read" in report["corpus"]["summary"]
    # pairs longer than --max-tokens are counted, not silently dropped
    assert any("longer than 64 tokens" in k for k in report["mixture"]["cropped"])  # cropped, not dropped
    assert [p.name for p in sorted((run / "checkpoints").iterdir())] == ["step-00000004", "step-00000006"]


def test_held_out_loss_per_kind_compares_runs_with_and_without_pairs(tmp_path):
    # Each held-out kind is sampled and masked on its own, so a singles-only run and a run with pairs
    # score the very same held-out singles: eval_loss_singles compares arms of the pairs ablation.
    cache = tmp_path / "cache"
    both = base_args(tmp_path / "both", cache, **{"--max-steps": 4})
    singles = [a for kv in zip(both[::2], both[1::2], strict=True) if kv[0] != "--pairs" for a in kv]
    singles[singles.index("--out") + 1] = str(tmp_path / "singles")
    for args in (both, singles):
        cfg = cfg_from(args)
        cfg.eval_max_examples, cfg.eval_fraction = 3, 0.2  # 50 proteins: about 10 held out, 3 scored
        pretrain(cfg, log=lambda m: None)
    report = json.loads((tmp_path / "both" / "data_report.json").read_text())["mixture"]["held_out_examples"]
    assert report == {"singles": 3, "binding": 2, "nonbinding": 2}  # capped per kind: 2 dev pairs of each label
    report = json.loads((tmp_path / "singles" / "data_report.json").read_text())["mixture"]["held_out_examples"]
    assert report == {"singles": 3}
    first = {run: [r for r in read_metrics(tmp_path / run) if "eval_loss" in r][0] for run in ("both", "singles")}
    # at step 0 the two models are the same initialisation: the same held-out singles give the same loss
    assert first["both"]["eval_loss_singles"] == pytest.approx(first["singles"]["eval_loss_singles"], rel=1e-6)
    assert set(first["both"]) >= {"eval_loss_singles", "eval_loss_binding", "eval_loss_nonbinding"}
    assert first["singles"]["eval_loss"] == first["singles"]["eval_loss_singles"]
    lo, hi = sorted(first["both"][f"eval_loss_{k}"] for k in ("singles", "binding", "nonbinding"))[::2]
    assert lo <= first["both"]["eval_loss"] <= hi  # the pooled loss is the token-weighted mean of the kinds


@pytest.mark.parametrize("fault", ["step:6", "save:8"])
def test_kill_and_resume_is_bitwise_identical(tmp_path, fault):
    cache = tmp_path / "cache"
    ref = tmp_path / "ref"  # same process setup (threads) as the killed run: bitwise comparable
    assert run_cli(base_args(ref, cache, **{"--max-steps": 10})).returncode == 0
    run = tmp_path / "run"
    killed = run_cli(base_args(run, cache, **{"--max-steps": 10}), env={"PROTLM_FAULT": fault})
    assert killed.returncode == -9, killed.stderr[-2000:]
    good = sorted(p.name for p in (run / "checkpoints").iterdir() if not p.name.startswith("."))
    assert good[-1] == "step-00000004"  # the checkpoint being written at the kill never became visible
    saved = (run / "config.yaml").read_text()
    # the README's resume: --out and --resume only; the recipe (corpus, pairs, mix, schedule) is the run's own
    resumed = run_cli(["--out", str(run), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (run / "config.yaml").read_text() == saved
    assert "resumed from" in resumed.stderr
    a, b = weights(ref), weights(run)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ref_loss = [r["loss"] for r in read_metrics(ref) if "loss" in r]
    run_loss = [r["loss"] for r in read_metrics(run) if "loss" in r]
    assert ref_loss == run_loss  # metrics.jsonl has no duplicated or missing steps after resume


def test_sigterm_finishes_the_step_saves_and_resumes_bitwise(tmp_path):
    """What SLURM and Kubernetes send: the step under way finishes, a checkpoint of it is saved (not the one
    of --save-every before it), the exit status says so (75), and --resume ends where an uninterrupted run does."""
    cache, ref, run = tmp_path / "cache", tmp_path / "ref", tmp_path / "run"
    assert run_cli(base_args(ref, cache, **{"--max-steps": 10})).returncode == 0
    stopped = run_cli(base_args(run, cache, **{"--max-steps": 10}), env={"PROTLM_FAULT": "sigterm:6"})
    assert stopped.returncode == 75, stopped.stderr[-2000:]
    last = stopped.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("protlm: stopped by SIGTERM at step 6")
        and "--resume" in last
        and "Traceback" not in stopped.stderr
    )
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if not p.name.startswith("."))[-1] == "step-00000006"
    resumed = run_cli(["--out", str(run), "--resume"])
    assert resumed.returncode == 0 and "resumed from" in resumed.stderr and "step-00000006" in resumed.stderr
    a, b = weights(ref), weights(run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in read_metrics(ref) if "loss" in r] == [
        r["loss"] for r in read_metrics(run) if "loss" in r
    ]


@pytest.mark.parametrize(("flag", "value", "saved"), [("--corpus", "scl2205", "swissprot_50.fasta"),
                                                      ("--mix", "singles=1", "binding=1"),
                                                      ("--lr", "0.01", "0.001"), ("--no-corpus", None, "swissprot")])  # fmt: skip
def test_resume_refuses_a_flag_that_contradicts_the_run(tmp_path, capsys, flag, value, saved):
    """A resume continues the run's own recipe: a flag that would change its data or optimisation is one line
    naming both values, and nothing in --out changes; budget and reporting flags may change."""
    run, cache = tmp_path / "run", tmp_path / "cache"
    assert run_cli(base_args(run, cache, **{"--max-steps": 4})).returncode == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit) as e:
        main(["pretrain", "--out", str(run), "--resume", "--max-steps", "6", flag, *([value] if value else [])])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "contradicts the run" in err and saved in err, err
    assert flag.replace("--no-", "--") in err and "--max-time" in err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    state = pretrain(_resumed_cfg(run, max_steps=6, log_every=2, cache_dir=str(cache)), log=lambda m: None)
    assert state.step == 6
    report = json.loads((run / "data_report.json").read_text())
    assert report["mixture"]["pool_sizes"]["binding"] > 0 and "swissprot_50" in (run / "config.yaml").read_text()


def _resumed_cfg(run: Path, **given) -> PretrainConfig:
    from protlm.train.config import load_config

    return load_config(PretrainConfig, None, {"out": str(run), "resume": True, **given})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_matches_single_process(tmp_path):
    cache = tmp_path / "cache"
    common = {"--max-steps": 5, "--dropout": 0.0, "--eval-every": 5, "--save-every": 5}
    single = tmp_path / "single"
    pretrain(cfg_from(base_args(single, cache, **common, **{"--grad-accum": 2})), log=lambda m: None)
    ddp = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(_free_port()), "-m", "protlm", "pretrain", *base_args(ddp, cache, **common),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in proc.stderr
    loss_1 = [r["loss"] for r in read_metrics(single) if "loss" in r]
    loss_2 = [r["loss"] for r in read_metrics(ddp) if "loss" in r]
    assert len(loss_1) == len(loss_2) == 5
    np.testing.assert_allclose(loss_2, loss_1, rtol=1e-4)
    a, b = weights(single), weights(ddp)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)


def test_max_time_is_honoured(tmp_path):
    args = base_args(tmp_path / "run", tmp_path / "cache", **{"--max-time": "3s", "--max-steps": 100000})
    state = pretrain(cfg_from(args), log=lambda m: None)
    assert state.stopped_by == "max_time" and 3 <= state.elapsed < 10 and 0 < state.step < 100000


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"--lr": "-1"}, "lr must be > 0"),
        ({"--precision": "fp8"}, "precision must be auto, bf16 or fp32"),
        ({"--max-time": "soon"}, "--max-time 'soon'"),
        ({"--mix": "singles=1,decoys=2"}, "mix weights"),
        ({"--model": "roberta-huge"}, "unknown model preset 'roberta-huge'"),
        ({"--max-tokens": "4096"}, "exceeds the model's 128 positions"),
        ({"--tokenizer": "/nonexistent"}, "not a tokenizer directory"),
    ],
)
def test_bad_config_values_give_clear_errors(tmp_path, capsys, extra, message):
    args = base_args(tmp_path / "run", tmp_path / "cache", **{"--max-steps": 1, **extra})
    with pytest.raises(SystemExit) as e:
        main(["pretrain", *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err, err


def test_budget_is_required_and_existing_run_needs_resume(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", *base_args(tmp_path / "r", tmp_path / "c")])
    assert "give a budget" in capsys.readouterr().err
    pretrain(cfg_from(base_args(tmp_path / "r", tmp_path / "c", **{"--max-steps": 1})), log=lambda m: None)
    with pytest.raises(SystemExit):
        main(["pretrain", *base_args(tmp_path / "r", tmp_path / "c", **{"--max-steps": 2})])
    assert "pass --resume" in capsys.readouterr().err


def test_pickled_model_weights_are_refused(tmp_path, capsys):
    from transformers import RobertaConfig, RobertaForMaskedLM

    model_dir = tmp_path / "bin_model"
    model = RobertaForMaskedLM(
        RobertaConfig(
            vocab_size=300,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=130,
        )
    )
    model.config.save_pretrained(model_dir)
    torch.save(model.state_dict(), model_dir / "pytorch_model.bin")
    with pytest.raises(SystemExit) as e:
        main(["pretrain", *base_args(tmp_path / "r", tmp_path / "c", **{"--model": model_dir, "--max-steps": 1})])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "no model.safetensors; protlm loads safetensors weights only" in err


def test_prefetch_changes_timing_only(tmp_path):
    """Batches built in a background thread give the same run, bitwise, as batches built in place."""
    cache = tmp_path / "cache"
    for name in ("on", "off"):
        res = run_cli(base_args(tmp_path / name, cache, **{"--max-steps": 6, "--prefetch": name, "--grad-accum": 2}))
        assert res.returncode == 0, res.stderr[-2000:]
    a, b = weights(tmp_path / "on"), weights(tmp_path / "off")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r.get("loss") for r in read_metrics(tmp_path / "on")] == [
        r.get("loss") for r in read_metrics(tmp_path / "off")
    ]


def test_progress_is_log_lines_when_stderr_is_not_a_terminal(tmp_path):
    """Under CI or `2> log`, progress is a plain line every PROTLM_PROGRESS_EVERY seconds, never a redrawn
    bar, and transformers' own load / save bars stay off."""
    cmd = [sys.executable, "-m", "protlm", "pretrain", "--out", str(tmp_path / "run"), "--tokenizer",
           str(DATA / "tokenizer_bpe300"), "--model", str(DATA / "micro.yaml"), "--corpus",
           str(DATA / "swissprot_50.fasta"), "--tokens-per-batch", "1024", "--max-tokens", "64", "--max-steps", "4",
           "--warmup-steps", "0", "--save-every", "2", "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    env = {**os.environ, "PROTLM_PROGRESS_EVERY": "0"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "it/s]" not in done.stderr
    assert "Writing model shards" not in done.stderr and "Loading weights" not in done.stderr
    assert "4/4 step (" in done.stderr  # e.g. "4/4 step (1.9 step/s, loss=5.61, tok_s=...)"


def test_stop_signals_note_the_first_signal_and_give_back_the_handlers():
    import signal

    from protlm.train.stopping import StopSignals

    outer = signal.signal(signal.SIGINT, signal.default_int_handler)  # whatever the test runner had set
    try:
        _note_and_give_back(StopSignals)
    finally:
        signal.signal(signal.SIGINT, outer)


def _note_and_give_back(StopSignals):
    import signal

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with StopSignals() as sig:
        assert signal.getsignal(signal.SIGTERM) == sig._note
        os.kill(os.getpid(), signal.SIGTERM)
        assert sig.name == "SIGTERM"
        assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before  # a second acts at once
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_an_ignored_signal_stays_ignored_while_training():
    """A job started with nohup or `&` ignores SIGINT: training must not start catching it."""
    import signal

    from protlm.train.stopping import StopSignals

    outer = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopSignals() as sig:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            assert sig.name == ""
    finally:
        signal.signal(signal.SIGINT, outer)
