"""Property-based fuzzing of what protlm loads beside sequences: pickled LMDB records, recipes and presets,
model / tokenizer / adapter directories, and existing output directories. Each property is the promise
SECURITY.md makes: the input is read, or refused with one `ProtlmError` (a one-line message, exit 2 in
the CLI); never another exception, never a crash, never a write outside the directory. Derandomized, so
CI sees the same cases every run (PROTLM_FUZZ_EXAMPLES scales the count)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import DATA
from fuzzing import mutated
from protlm.errors import ProtlmError

EXAMPLES = int(os.environ.get("PROTLM_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip
FEW = settings(FUZZ, max_examples=max(EXAMPLES // 5, 10))

# JSON values of every shape, nested a little, with the keys and strings an attacker would reach for
KEYS = st.sampled_from(["auto_map", "model_type", "hidden_size", "num_hidden_layers", "vocab_size", "peft_type",
                        "target_modules", "rank_pattern", "exclude_modules", "auto_mapping", "pre_tokenizer",
                        "normalizer", "type", "pattern", "Regex", "String", "x"])  # fmt: skip
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
                    st.sampled_from(["LORA", "roberta", "Split", "(a+)+$", "evil.Evil", "query", "", "../x"]),
                    st.text(max_size=12))  # fmt: skip
JSON = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(KEYS, inner, max_size=4)), max_leaves=12)  # fmt: skip


@st.composite
def edited(draw, doc: dict) -> bytes:
    """A JSON object with a few keys set (at the top or one level down), deleted, or its text mutated."""
    doc = json.loads(json.dumps(doc))
    for _ in range(draw(st.integers(1, 4))):
        target = doc
        nested = [k for k, v in doc.items() if isinstance(v, dict)]
        if nested and draw(st.booleans()):
            target = doc[draw(st.sampled_from(nested))]
        op = draw(st.sampled_from(["set", "set", "delete"]))
        key = draw(st.one_of(KEYS, st.sampled_from(sorted(target) or ["x"])))
        if op == "set":
            target[key] = draw(JSON)
        else:
            target.pop(key, None)
    text = json.dumps(doc).encode()
    return draw(mutated(text)) if draw(st.integers(0, 4)) == 0 else text


def refused_or_read(fn, *args):
    """`fn(*args)`, or None when it refuses with a ProtlmError; any other exception fails the property."""
    try:
        return fn(*args)
    except ProtlmError as e:
        assert "\n" not in str(e), str(e)
        return None


# ------------------------------------------------------------------------------------------ LMDB records


def _is_plain(value, depth: int = 0) -> bool:
    if value is None or type(value) in (bool, int, float, str, bytes):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "biuf"
    if depth > 100:
        return False
    if type(value) is dict:
        return all(type(k) in (str, bytes, int, float, bool, type(None)) and _is_plain(v, depth + 1)
                   for k, v in value.items())  # fmt: skip
    return type(value) is list and all(_is_plain(v, depth + 1) for v in value)


RECORD = {"primary": "MKTAYIAKQR", "ss3": np.arange(10, dtype=np.int64) % 3, "mask": np.ones(10, bool),
          "id": ("P1", 7), "score": np.float32(0.5), "tags": {"a"}}  # fmt: skip
PICKLES = [pickle.dumps(RECORD, protocol=p) for p in (2, 3, 4, 5)]
OPCODES = b"()]}tlds\x85\x86\x87\x8f\x90\x91aeubRq0hgpN"  # containers, set / dict / build, memo


@FUZZ
@given(st.sampled_from(PICKLES).flatmap(mutated))
def test_lmdb_records_decode_to_plain_data_or_refuse(data):
    from protlm.io.lmdb_records import UnsafeRecord, safe_loads

    try:
        assert _is_plain(safe_loads(data))
    except UnsafeRecord as e:
        assert "\n" not in str(e)


@FUZZ
@given(st.lists(st.sampled_from([bytes([c]) for c in OPCODES]), max_size=400), st.integers(0, 200_000))
def test_lmdb_opcode_soup_never_crashes(ops, depth):
    """Random container / memo / dict opcodes around a tuple nested `depth` levels: refused or plain."""
    from protlm.io.lmdb_records import UnsafeRecord, safe_loads

    data = b"\x80\x04}" + b")" + b"\x85" * depth + b"".join(ops) + b"."
    try:
        assert _is_plain(safe_loads(data))
    except UnsafeRecord:
        pass


@settings(FUZZ, max_examples=max(EXAMPLES // 10, 10))
@given(st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=4))
def test_damaged_lmdb_files_read_or_refuse(tmp_path_factory, flips):
    """Bytes of a real LMDB's data.mdb overwritten: its records, or one InputError (liblmdb may crash in
    its child process, never in this one)."""
    from protlm.io.lmdb_records import iter_lmdb

    db = tmp_path_factory.mktemp("lmdb") / "x.lmdb"
    shutil.copytree(DATA / "human_ppi_small.lmdb", db)
    data = bytearray((db / "data.mdb").read_bytes())
    for at, byte in flips:
        data[at % len(data)] = byte
    (db / "data.mdb").write_bytes(bytes(data))
    refused_or_read(lambda: [item for _, item in iter_lmdb(db) if _is_plain(item)])


# ------------------------------------------------------------------------------------------ recipes, presets

RECIPE = b"model: tiny\nlr: 0.001\nmax_steps: 3\nlora_targets: query,value\nmix: singles=1\n"
YAML_PIECES = [b"&a ", b"*a", b"[", b"]", b"{", b"}", b": ", b"- ", b"\n", b"  ", b"!!python/object/apply:os.system ",
               b"<<: *a\n", b"auto_map: {AutoModel: evil.Evil}\n", b"'", b'"', b"? ", b"!!binary ", b"\xff"]  # fmt: skip


@st.composite
def yaml_mutated(draw, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.sampled_from(YAML_PIECES)) * draw(st.sampled_from([1, 1, 2, 50]))
    return bytes(data)


@FUZZ
@given(st.one_of(yaml_mutated(RECIPE), yaml_mutated((DATA / "micro.yaml").read_bytes())), st.booleans())
def test_recipes_and_presets_load_or_refuse(tmp_path_factory, text, as_preset):
    from protlm.models.presets import load_preset
    from protlm.train.config import PretrainConfig, load_config

    path = tmp_path_factory.mktemp("y") / "x.yaml"
    path.write_bytes(text)
    if as_preset:
        cfg = refused_or_read(load_preset, str(path))
        assert cfg is None or ("model_type" in cfg and "auto_map" not in cfg)
    else:
        refused_or_read(load_config, PretrainConfig, path, {})


# ------------------------------------------------------------------------------------------ model dirs


@pytest.fixture(scope="module")
def model_with_adapter(tmp_path_factory, micro_model) -> Path:
    from protlm.models import build_mlm
    from protlm.models.lora import adapter_files, add_lora
    from protlm.tokenization import load_tokenizer

    model = tmp_path_factory.mktemp("fuzz") / "model"
    shutil.copytree(micro_model, model)
    mlm = add_lora(build_mlm(str(DATA / "micro.yaml"), load_tokenizer(micro_model)), rank=2)
    for name, content in adapter_files(mlm).items():
        (model / Path(name).name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return model


def _load_dir(path: Path) -> None:
    from protlm.models.loading import open_model

    md = open_model(path)
    md.config()
    md.tokenizer()


NAMES = ["config.json", "tokenizer_config.json", "tokenizer.json", "adapter_config.json"]


@FEW
@given(st.sampled_from(NAMES), st.data())
def test_model_dirs_load_or_refuse(tmp_path_factory, model_with_adapter, name, data):
    """A model directory with one JSON file edited: its config and tokenizer load, or one ProtlmError."""
    model = tmp_path_factory.mktemp("m") / "model"
    shutil.copytree(model_with_adapter, model)
    f = model / name
    f.write_bytes(data.draw(edited(json.loads(f.read_text()))))
    refused_or_read(_load_dir, model)


@FUZZ
@given(st.data())
def test_adapter_configs_pass_only_in_protlm_form(tmp_path_factory, model_with_adapter, data):
    from protlm.io.hf_dirs import check_adapter

    model = tmp_path_factory.mktemp("a")
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(model_with_adapter / name, model / name)
    original = json.loads((model / "adapter_config.json").read_text())
    (model / "adapter_config.json").write_bytes(data.draw(edited(original)))
    config = refused_or_read(check_adapter, model)
    if config is not None:  # what passes is plain LoRA on named modules
        assert config["peft_type"] == "LORA" and all(n.replace(".", "").replace("_", "").isalnum()
                                                      for n in config["target_modules"])  # fmt: skip
        assert not config.get("rank_pattern") and not config.get("exclude_modules") and "auto_map" not in config


# ------------------------------------------------------------------------------------------ run dirs

ENTRY = st.tuples(st.lists(st.sampled_from(["checkpoints", "model", "seed-0", "tensorboard", ".work", "shards"]),
                           max_size=2),
                  st.sampled_from(["metrics.jsonl", ".protlm.lock", "config.yaml", "report.json", ".x.tmp-1",
                                   "store.json", "model.safetensors"]),
                  st.sampled_from(["file", "dir", "link-file", "link-dir"]))  # fmt: skip


@FUZZ
@given(st.lists(ENTRY, max_size=6))
def test_run_dirs_with_links_are_refused_and_nothing_escapes(tmp_path_factory, entries):
    """An existing directory of files, subdirectories and links: `output_dir` refuses it exactly when a link
    is inside, and atomic writes into an accepted one stay inside."""
    from protlm.io.atomic import output_dir, write_json
    from protlm.io.lock import run_lock
    from protlm.train.metrics import MetricsLogger

    root = tmp_path_factory.mktemp("r")
    out, outside = root / "out", root / "outside"
    out.mkdir()
    (outside / "dir").mkdir(parents=True)
    (outside / "file").write_text("keep")
    links = 0
    for parts, name, kind in entries:
        where = out.joinpath(*parts)
        where.mkdir(parents=True, exist_ok=True)
        path = where / name
        if path.exists() or path.is_symlink():
            continue
        if kind == "file":
            path.write_text("old")
        elif kind == "dir":
            path.mkdir()
        else:
            path.symlink_to(outside / kind.removeprefix("link-"))
            links += 1
    refused = refused_or_read(output_dir, out) is None
    assert refused == (links > 0)

    def write() -> None:
        with run_lock(out, "fuzz"):
            write_json(out / "report.json", {"ok": 1})
            MetricsLogger(out, tensorboard=False).log({"step": 1})

    if not refused:  # written, or refused in one line (e.g. a directory where a file goes)
        refused_or_read(write)
    assert (outside / "file").read_text() == "keep" and not list((outside / "dir").iterdir())
