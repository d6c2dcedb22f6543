"""The CLI end to end: help texts, tokenizer train/stats, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from conftest import write
from protlm.cli import main


def run(args, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


@pytest.mark.parametrize(
    "cmd",
    [
        [],
        ["tokenizer"],
        ["tokenizer", "train"],
        ["tokenizer", "stats"],
        ["pretrain"],
        ["plot"],
        ["demo"],
        ["finetune"],
        ["evaluate"],
        ["embed"],
        ["predict"],
        ["fill"],
        ["longformer", "convert"],
        ["corpus", "prepare"],
        ["corpus", "index"],
        ["corpus", "info"],
        ["pairs", "build-string"],
        ["attention", "export"],
    ],
)
def test_every_command_has_help(cmd, capsys):
    code, out, _ = run([*cmd, "--help"], capsys)
    assert code == 0 and "Usage" in out


def test_train_then_stats(tmp_path, swissprot50, capsys):
    tok_dir = tmp_path / "tok"
    code, out, err = run(
        ["tokenizer", "train", "--corpus", str(swissprot50), "--vocab-size", "200", "--out", str(tok_dir)], capsys
    )
    assert code in (0, None) and "written to" in out
    assert "50 records read, 50 used, 0 skipped" in err
    code, out, _ = run(
        ["tokenizer", "stats", "--tokenizer", str(tok_dir), "--corpus", str(swissprot50),
         "--plot", str(tmp_path / "h.png"), "--json", str(tmp_path / "r.json")],
        capsys,
    )  # fmt: skip
    assert code in (0, None)
    assert "residues per token" in out and "over 2,048 tokens" in out and "residues/s" in out
    assert json.loads((tmp_path / "r.json").read_text())["n_sequences"] == 50
    assert (tmp_path / "h.png").stat().st_size > 1000


def test_tokenizer_on_too_few_proteins_warns_and_says_what_to_do(tmp_path, swissprot50, capsys):
    """50 proteins and the default 10,000+ merges: every protein became one token, silently."""
    code, _, err = run(["tokenizer", "train", "--corpus", str(swissprot50), "--out", str(tmp_path / "t")], capsys)
    assert code in (0, None), err
    (warning,) = [line for line in err.splitlines() if line.startswith("warning:")]
    assert "50 proteins (14,805 residues) are too few for 10,230 merges" in warning
    assert "(1.0 tokens per protein, 50 proteins one token each)" in warning
    suggested = re.search(r"train on ~([\d,]+) proteins or more, or ask for --merges ([\d,]+) or fewer", warning)
    assert suggested and int(suggested[1].replace(",", "")) > 1000
    # what it suggests is quiet, and no protein is one token any more
    merges = suggested[2].replace(",", "")
    code, _, err = run(["tokenizer", "train", "--corpus", str(swissprot50), "--merges", merges,
                        "--out", str(tmp_path / "t2")], capsys)  # fmt: skip
    assert code in (0, None) and "warning" not in err, err
    code, out, _ = run(
        ["tokenizer", "stats", "--tokenizer", str(tmp_path / "t2"), "--corpus", str(swissprot50)], capsys
    )
    assert float(re.search(r"residues per token +([\d.]+)", out)[1]) < 5
    code, _, err = run(["tokenizer", "train", "--corpus", str(swissprot50), "--kind", "unigram", "--vocab-size", "2000",
                        "--out", str(tmp_path / "t3")], capsys)  # fmt: skip
    assert code in (0, None) and "too few for 1,969 learned tokens" in err and "--vocab-size 524 or fewer" in err


def test_bad_input_is_one_line_exit_2_no_traceback(tmp_path):
    bad = write(tmp_path / "bad.fa", ">P1\nMKT\n>Q9H400\nMK#L\n")
    proc = subprocess.run(
        [sys.executable, "-m", "protlm", "tokenizer", "train", "--corpus", str(bad), "--out", str(tmp_path / "t")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"protlm: error: {bad} line 3 (record Q9H400): invalid residue '#' at position 3"
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--vocab-size", "100", "--merges", "10"], "give --vocab-size or --merges, not both"),
        (["--kind", "wordpiece"], "unknown tokenizer kind 'wordpiece'"),
        (["--corpus", "scl2205:test"], "unknown SCL2205 split 'test'"),
    ],
)
def test_bad_options_are_clear_errors(tmp_path, capsys, args, message):
    code, _, err = run(["tokenizer", "train", "--out", str(tmp_path / "t"), *args], capsys)
    assert code == 2 and message in err and err.count("\n") == 1


def test_strict_flag(tmp_path, capsys):
    f = write(tmp_path / "u.fa", ">P1\nMKUT\n")
    code, _, err = run(
        ["tokenizer", "train", "--corpus", str(f), "--kind", "char", "--strict", "--out", str(tmp_path / "t")], capsys
    )
    assert code == 2 and "rare residue 'U' at position 3 rejected by --strict" in err


def test_doctor_prints_the_install_check_on_one_screen(tmp_path, monkeypatch, capsys):
    from conftest import run_cli

    monkeypatch.setenv("PROTLM_CACHE", str(tmp_path / "cache"))
    code, out, err = run_cli(["doctor"], capsys)
    assert code in (None, 0), err
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in out.splitlines())
    assert len(rows) <= 30
    assert rows["torch"].startswith("2.") and rows["transformers"] != "not installed"
    assert "GFLOP/s" in rows["matmul (measured)"]
    assert rows["--precision auto"] in ("bf16", "fp32")
    assert rows["protlm cache"] == str(tmp_path / "cache")
    assert rows["transformers uses torch"] == "yes" and rows["tensorboard"]  # an extra: a version or "not installed"
    import transformers.utils

    monkeypatch.setattr(transformers.utils, "is_torch_available", lambda: False)  # a torch below transformers' floor
    from protlm.doctor import _transformers_sees_torch

    assert _transformers_sees_torch().startswith("NO: transformers ")
