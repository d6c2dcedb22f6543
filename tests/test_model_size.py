"""`models/size.py`: the parameter estimate against real models, and configs asking for a terabyte
refused in one line, within seconds, before anything is allocated."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from importlib import resources

import pytest
import torch
import yaml

from conftest import DATA
from protlm.errors import ProtlmError
from protlm.models.size import MAX_MODEL_BYTES, check_model_size, estimate_parameters
from test_input_bounds import PEAK

HUGE = {
    "hidden_size": 65536,
    "num_hidden_layers": 1000,
    "num_attention_heads": 64,
    "intermediate_size": 262144,
    "vocab_size": 10_000_000,
}  # fmt: skip  ~ 1e14 bytes


def _real(kind: str, **fields) -> tuple[int, int]:
    from transformers import AutoConfig, AutoModelForMaskedLM

    config = AutoConfig.for_model(kind, **fields)
    with torch.device("meta"):  # shapes only: no memory
        model = AutoModelForMaskedLM.from_config(config)
    return sum(p.numel() for p in model.parameters()), estimate_parameters(config)


@pytest.mark.parametrize("preset", ["tiny", "roberta-base", "esm-size"])
def test_estimate_matches_the_presets(preset):
    cfg = yaml.safe_load((resources.files("protlm") / "configs" / f"{preset}.yaml").read_text())
    real, est = _real(cfg.pop("model_type"), **cfg, vocab_size=10_261)
    assert abs(est - real) <= 0.1 * real, (real, est)


@pytest.mark.parametrize(
    "kind, fields",
    [
        ("esm", {"vocab_size": 33, "hidden_size": 320, "num_hidden_layers": 6, "num_attention_heads": 20,
                 "intermediate_size": 1280, "position_embedding_type": "rotary"}),  # ESM-2 8M
        ("bert", {"vocab_size": 30, "hidden_size": 1024, "num_hidden_layers": 30, "num_attention_heads": 16,
                  "intermediate_size": 4096, "max_position_embeddings": 40000}),  # ProtBERT
        ("longformer", {"vocab_size": 10261, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                        "intermediate_size": 3072, "max_position_embeddings": 4098}),
    ],
)  # fmt: skip
def test_estimate_matches_the_backbones(kind, fields):
    real, est = _real(kind, **fields)
    assert abs(est - real) <= 0.1 * real, (real, est)


def test_huge_configs_are_refused_naming_the_file():
    with pytest.raises(ProtlmError, match=r"x/config.json: the model would need about [\d,.]+ GiB .* over "):
        check_model_size({"model_type": "roberta", **HUGE}, "x/config.json")
    one_tb_of_layers = {"model_type": "bert", "hidden_size": 1, "num_hidden_layers": 10**8}  # tiny layers, many
    with pytest.raises(ProtlmError, match="would need"):
        check_model_size(one_tb_of_layers, "p.yaml")
    assert MAX_MODEL_BYTES >= 60e9  # ESM-2 15B in float32 stays allowed where memory allows
    assert check_model_size({"model_type": "roberta", "hidden_size": 32, "num_hidden_layers": 1,
                             "vocab_size": 300, "max_position_embeddings": 130}, "micro") < 1 << 20  # fmt: skip


def _protlm_with_rusage(*args: str) -> tuple[int, str, float, int]:
    """(exit status, stderr, seconds, peak RSS in KiB) of `protlm ARGS` in a fresh interpreter. The peak is
    read by a small parent (`PEAK`): a child forked straight from pytest would count pytest's own pages."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", "protlm", *args], capture_output=True,
                         text=True, env=env)  # fmt: skip
    return run.returncode, run.stderr, time.monotonic() - start, int(run.stdout.split()[-1])


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("protlm: error: "), err
    return lines[0]


def test_a_model_dir_asking_for_a_terabyte_is_one_line(tmp_path, micro_model):
    model = tmp_path / "huge"
    shutil.copytree(micro_model, model)
    cfg = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**cfg, **HUGE}))
    code, err, seconds, rss_kib = _protlm_with_rusage("fill", "--model", str(model), "MKT<mask>LLV")
    assert code == 2, err[-2000:]
    line = _one_line(err)
    assert str(model / "config.json") in line and "GiB" in line, line
    assert seconds < 60 and rss_kib < 2 << 20, (seconds, rss_kib)  # under 2 GiB: nothing was allocated


def test_a_preset_asking_for_a_terabyte_is_one_line(tmp_path):
    preset = tmp_path / "huge.yaml"
    preset.write_text(yaml.safe_dump({"model_type": "roberta", **HUGE, "max_position_embeddings": 514}))
    code, err, seconds, rss_kib = _protlm_with_rusage(
        "pretrain", "--model", str(preset), "--tokenizer", str(DATA / "tokenizer_bpe300"), "--corpus",
        str(DATA / "swissprot_50.fasta"), "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "c"),
        "--max-steps", "1", "--max-tokens", "64", "--tokens-per-batch", "1024",
    )  # fmt: skip
    assert code == 2, err[-2000:]
    line = _one_line(err)
    assert str(preset) in line and "GiB" in line, line
    assert seconds < 60 and rss_kib < 2 << 20, (seconds, rss_kib)


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"num_attention_heads": 0}, "num_attention_heads must be a positive integer"),
        ({"hidden_size": -32}, "hidden_size must be a positive integer"),
        ({"hidden_size": 33}, "not a multiple"),
        ({"vocab_size": "many"}, "vocab_size must be a positive integer, found 'many'"),
        ({"model_type": "longformer", "attention_window": [268435456]}, "attention_window"),
        ({"model_type": "longformer", "attention_window": [3]}, "attention_window"),
        ({"model_type": "longformer", "attention_window": []}, "attention_window"),
    ],
)
def test_dimensions_are_checked_before_anything_is_built(changes, words):
    from protlm.errors import ProtlmError
    from protlm.models.size import check_model_size

    config = {"model_type": "roberta", "vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 1,
              "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 130, **changes}  # fmt: skip
    with pytest.raises(ProtlmError, match=words):
        check_model_size(config, "config.json")
