"""The device as users meet it: a GPU asked for where there is none, and running out of its memory, are
one-line errors (exit 2) that say what to change; a training run's last checkpoint stays intact."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from protlm.cli import main

DATA = Path(__file__).parent / "data"


def _run(args, capsys) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    return e.value.code, capsys.readouterr().err.strip().splitlines()


PDB = DATA / "structures" / "2hhb_ab.pdb.gz"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU")
@pytest.mark.parametrize(
    "command",
    [
        ["embed", DATA / "swissprot_50.fasta", "--out", "x.parquet"],
        ["fill", "MK<mask>"],
        ["predict", DATA / "swissprot_50.fasta", "--out", "x.tsv"],
        ["evaluate"],
        ["attention", "export", "--pdb", PDB, "--out", "x.npz"],
        ["attention", "sites", "--pdb", PDB],
        ["contacts", "--pdb", PDB],
        ["contacts", "fit", "--pdb", PDB],
    ],
)
def test_cuda_without_a_gpu_names_what_was_found(command, capsys, tmp_path):
    code, err = _run([*command, "--model", tmp_path, "--device", "cuda"], capsys)
    assert code == 2 and len(err) == 1
    assert "0 CUDA device(s)" in err[0] and f"torch {torch.__version__}" in err[0]


def test_every_command_that_runs_a_model_takes_a_device():
    import typer

    from protlm.cli import app

    def walk(command, path=()):  # typer's groups (it may carry its own click): anything with subcommands
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                yield from walk(sub, (*path, name))
        yield path, {p.name for p in command.params}

    commands = [(path, params) for path, params in walk(typer.main.get_command(app)) if "model" in params]
    assert len(commands) >= 10  # pretrain, finetune, evaluate, embed, predict, fill, attention x2, contacts x2
    assert [path for path, params in commands if "device" not in params] == []


def test_out_of_memory_outside_training_is_one_line(monkeypatch, capsys, tmp_path):
    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB.\nmore detail")

    monkeypatch.setattr("protlm.api.load", oom)
    code, err = _run(
        ["embed", DATA / "swissprot_50.fasta", "--model", tmp_path, "--out", tmp_path / "e.parquet"], capsys
    )
    assert code == 2 and len(err) == 1
    assert "ran out of memory (CUDA out of memory. Tried to allocate 2.00 GiB.)" in err[0]
    assert "lower --tokens-per-batch" in err[0]


def test_out_of_memory_in_training_names_the_step_and_keeps_the_checkpoint(monkeypatch, capsys, tmp_path):
    from protlm.train import loop

    real = loop.train_step

    def step(setup, n, batches):
        if n == 5:
            raise torch.OutOfMemoryError("CUDA out of memory.")
        return real(setup, n, batches)

    monkeypatch.setattr(loop, "train_step", step)
    out = tmp_path / "run"
    code, err = _run(["pretrain", "--out", out, "--tokenizer", DATA / "tokenizer_bpe300", "--model", DATA / "micro.yaml",
                      "--corpus", DATA / "swissprot_50.fasta", "--tokens-per-batch", 512, "--max-tokens", 64,
                      "--max-steps", 10, "--save-every", 4, "--eval-every", 100, "--cache-dir", tmp_path / "cache",
                      "--precision", "fp32"], capsys)  # fmt: skip
    assert code == 2
    line = err[-1]
    assert line.startswith("protlm: error: out of memory on cpu at step 5")
    assert "--tokens-per-batch 512" in line and "step-00000004 is intact" in line
    assert (out / "checkpoints" / "step-00000004").is_dir()
