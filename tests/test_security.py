"""Hostile inputs: each crafted file or option must end in one line on stderr, exit 2, and no side effect.

One test per boundary named in SECURITY.md: SQL (DuckDB STRING builder), pickled LMDB records,
remote code in model directories, and the last-resort handler of the CLI. Inputs that used to crash
the interpreter run in a subprocess, so a regression fails the test instead of killing pytest.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, run_cli, write_lmdb
from protlm.errors import ProtlmError


def protlm(*args: str, stdin: str = "", cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`protlm ARGS` in a fresh interpreter (stdin given, nothing inherited from this process)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "protlm", *args], input=stdin, capture_output=True, text=True, cwd=cwd, env=env,
        timeout=timeout,
    )  # fmt: skip


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("protlm: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


# ----------------------------------------------------------------------------- SQL (STRING builder)


def _links(path: Path, header: str) -> Path:
    rows = gzip.open(DATA / "string_links.txt.gz", "rt").read().splitlines()[1:]
    with gzip.open(path, "wt") as fh:
        fh.write(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_string_header_cannot_inject_sql(tmp_path, capsys):
    """The published proof of concept: a header word ends DuckDB's string literal and appends a COPY."""
    target = tmp_path / "pwned.pth"
    evil = f"""x': 'VARCHAR'}}); COPY (SELECT 'import os') TO '{target}' (FORMAT csv, HEADER false); --"""
    links = _links(tmp_path / "protein.physical.links.txt.gz", f"protein1 protein2 {evil} combined_score")
    code, _, err = run_cli(["pairs", "build-string", "--links", str(links), "--sequences",
                            str(DATA / "string_sequences.fa.gz"), "--out", str(tmp_path / "out")], capsys)  # fmt: skip
    assert code == 2
    assert "header" in one_line_error(err)
    assert not target.exists()
    assert not (tmp_path / "out").exists()  # options and header are checked before anything is written


def test_string_paths_with_quotes_are_data_not_sql(tmp_path, capsys):
    """`--out "o'brien"` and `--links "it's.txt.gz"` are ordinary file names."""
    links = tmp_path / "it's.txt.gz"
    shutil.copy(DATA / "string_links.txt.gz", links)
    out = tmp_path / "o'brien"
    code, stdout, err = run_cli(["pairs", "build-string", "--links", str(links), "--sequences",
                                 str(DATA / "string_sequences.fa.gz"), "--out", str(out)], capsys)  # fmt: skip
    assert code in (0, None), err
    assert json.loads((out / "report.json").read_text())["positives_at_threshold"] > 0
    assert list(out.glob("pairs-*.parquet")) and not list(out.glob(".work*"))


@pytest.mark.parametrize(
    "option, value, words",
    [
        ("--memory-limit", "1XB", "--memory-limit"),
        ("--memory-limit", "1GB'; SELECT 1; --", "--memory-limit"),
        ("--species", "human", "--species"),
        ("--species", "9606' OR '1'='1", "--species"),
        ("--negatives-per-positive", "nan", "--negatives-per-positive"),
        ("--negatives-per-positive", "-1", "--negatives-per-positive"),
        ("--min-score", "1001", "--min-score"),
        ("--max-tokens", "0", "--max-tokens"),
    ],
)
def test_string_options_are_validated_before_any_sql(tmp_path, capsys, option, value, words):
    out = tmp_path / "out"
    code, _, err = run_cli(["pairs", "build-string", "--links", str(DATA / "string_links.txt.gz"), "--sequences",
                            str(DATA / "string_sequences.fa.gz"), "--out", str(out), option, value], capsys)  # fmt: skip
    assert code == 2
    assert words in one_line_error(err)
    assert not out.exists()


def test_string_groups_path_and_ids_are_bound(tmp_path, capsys):
    """A groups file whose name and contents hold quotes is read as data."""
    groups = tmp_path / "clu'sters.tsv"
    ids = {line.split()[0] for line in gzip.open(DATA / "string_links.txt.gz", "rt").read().splitlines()[1:]}
    groups.write_text("".join(f"{i}'; DROP TABLE links; --\t{i}\n" for i in sorted(ids)))
    code, _, err = run_cli(["pairs", "build-string", "--links", str(DATA / "string_links.txt.gz"), "--sequences",
                            str(DATA / "string_sequences.fa.gz"), "--out", str(tmp_path / "o"),
                            "--groups", str(groups)], capsys)  # fmt: skip
    assert code in (0, None), err
    assert json.loads((tmp_path / "o" / "report.json").read_text())["positives_at_threshold"] > 0


# ----------------------------------------------------------------------------- pickled LMDB records


def _object_dtype_scalar() -> bytes:
    """numpy.dtype('O8') with flags=0 via BUILD, then `scalar(dtype, 8 attacker bytes)`: numpy would read
    the bytes as a PyObject* (SIGSEGV before the fix)."""
    return (
        b"\x80\x02}(X\x09\x00\x00\x00primary_1X\x03\x00\x00\x00MKTX\x09\x00\x00\x00primary_2X\x03\x00\x00\x00MKT"
        b"X\x0b\x00\x00\x00interaction"
        b"cnumpy._core.multiarray\nscalar\ncnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R"
        b"(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        b"C\x08AAAAAAAA\x86Ru."
    )


def _huge_shape_array() -> bytes:
    """An int8 array claiming a 32 TiB shape, with 3 bytes of data."""
    body = pickle.dumps(np.arange(3, dtype=np.int8), protocol=2)
    return body.replace(b"K\x03\x85", b"\x8a\x06\x00\x00\x00\x00\x00 \x85", 1)  # shape (3,) -> (2**45,)


def _codec(name: bytes) -> bytes:
    """`_codecs.encode(text, NAME)`: a bytes-to-bytes codec (zlib, bz2) would decompress attacker data."""
    return b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX" + len(name).to_bytes(4, "little") + name + b"\x86R."


def _reduce(module: bytes, name: bytes) -> bytes:
    return b"\x80\x02c" + module + b"\n" + name + b"\n)R."


DEEP = 1_000_000  # levels: hashing or printing this recursively overflows the C stack (SIGSEGV)


def _deep_tuple_key() -> bytes:
    """{((((...),),),): None}: 1M nested 1-tuples as a dict key, a byte a level."""
    return b"\x80\x02}" + b")" + b"\x85" * DEEP + b"Ns."


def _deep_frozenset() -> bytes:
    """frozenset({(((...),),)}) (protocol 4): hashing the member recurses 1M levels."""
    return b"\x80\x04(" + b")" + b"\x85" * DEEP + b"\x91."


def _shared_tuple_key(levels: int = 80) -> bytes:
    """A dict key x_80 where x_k = (x_(k-1), x_(k-1)) through the memo: hashing it takes 2**80 steps."""
    body = b")q\x000"  # push, memoize, pop
    for k in range(1, levels + 1):
        body += b"h" + bytes([k - 1]) + b"h" + bytes([k - 1]) + b"\x86q" + bytes([k]) + b"0"
    return b"\x80\x02}" + body + b"h" + bytes([levels]) + b"Ns."


def _shared_list_value(levels: int = 80) -> bytes:
    """{'primary': x_80} with x_k = [x_(k-1), x_(k-1)]: 2**80 values once expanded."""
    body = b"]q\x000"
    for k in range(1, levels + 1):
        body += b"(h" + bytes([k - 1]) + b"h" + bytes([k - 1]) + b"lq" + bytes([k]) + b"0"
    return b"\x80\x02}X\x07\x00\x00\x00primary" + body + b"h" + bytes([levels]) + b"s."


def _deep_list_value() -> bytes:
    """{'primary': [[[...]]]} nested 1M levels (appended, never hashed)."""
    return b"\x80\x02}X\x07\x00\x00\x00primary" + b"]" * DEEP + b"a" * (DEEP - 1) + b"s."


def _deep_in_message(where: bytes) -> bytes:
    """A deep tuple where an error message used to print it: a dtype code, a codec name, a dtype state."""
    deep = b")" + b"\x85" * DEEP
    if where == b"dtype":
        return b"\x80\x02cnumpy\ndtype\n" + deep + b"\x85R."
    if where == b"codec":
        return b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00x" + deep + b"\x86R."
    # BUILD a dtype with state (3, DEEP, None, None, None, -1, -1, 0): the byte order used to be hashed
    return (b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00i8\x89\x88\x87R(K\x03" + deep
            + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb.")  # fmt: skip


@pytest.mark.parametrize(
    "record, reason",
    [
        (_object_dtype_scalar(), "dtype"),
        (_huge_shape_array(), "shape"),
        (_codec(b"zlib_codec"), "codec"),
        (_codec(b"no-such-codec"), "codec"),
        (_reduce(b"os", b"system"), "refusing"),
        (_reduce(b"numpy", b"load"), "refusing"),
        (b"\x80\x02]q\x00h\x00a.", "recursive"),  # a list that contains itself
        (pickle.dumps({1, 2}), "dict"),
        (b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00i8\x89\x88\x87R}b.", "dtype"),  # BUILD a dict into a dtype
        (b"not a pickle", "unreadable"),
        (_deep_tuple_key(), "dict key of type tuple"),
        (_deep_frozenset(), "set member of type tuple"),
        (_shared_tuple_key(), "dict key of type tuple"),
        (_shared_list_value(), "over 1,000,000 values"),
        (_deep_list_value(), "nested over 100 levels"),
        (b"\x80\x02ccollections\nOrderedDict\n]" + b")" + b"\x85" * DEEP + b"N\x86a\x85R.", "dict key"),
        (_deep_in_message(b"dtype"), "refusing dtype tuple"),
        (_deep_in_message(b"codec"), "refusing codec tuple"),
        (_deep_in_message(b"state"), "refusing dtype"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_lmdb_records_cannot_corrupt_memory_or_run_code(tmp_path, record, reason):
    """Each record ends in one line and exit 2 within seconds: no code, no SIGSEGV from a recursive hash
    or repr of a deep structure, no exponential walk of shared references."""
    db = write_lmdb(tmp_path / "evil.lmdb", [record])
    res = protlm("pairs", "from-lmdb", str(db), "--out", str(tmp_path / "p.tsv"), timeout=60)
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    line = one_line_error(res.stderr)
    assert "record 0" in line and reason in line
    assert not (tmp_path / "p.tsv").exists()


def _object_array() -> bytes:
    return pickle.dumps(np.array(["a", None], dtype=object), protocol=2)


def test_a_damaged_lmdb_is_one_line_not_a_crash(tmp_path):
    """One flipped byte in data.mdb made liblmdb read past its memory map: SIGBUS killed protlm. The
    LMDB is now read in a child process; its death is one line naming the file."""
    db = tmp_path / "bus.lmdb"
    shutil.copytree(DATA / "human_ppi_small.lmdb", db)
    data = bytearray((db / "data.mdb").read_bytes())
    data[8211] = 0x57
    (db / "data.mdb").write_bytes(bytes(data))
    res = protlm("pairs", "from-lmdb", str(db), "--out", str(tmp_path / "p.tsv"), timeout=60)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "damaged LMDB data set" in one_line_error(res.stderr) and not (tmp_path / "p.tsv").exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_safe_loads_returns_plain_data(protocol):
    from protlm.io.lmdb_records import UnsafeRecord, safe_loads

    item = {
        "primary": "MKT", "ss3": np.arange(6, dtype=">i4").reshape(2, 3), "mask": np.ones(3, bool),
        "f": np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)), "n": np.float32(2.5),
        "k": np.int64(7), "t": (1, "a"), "s": {3}, "b": b"\x00\xff",
    }  # fmt: skip
    got = safe_loads(pickle.dumps(item, protocol=protocol))
    assert got["primary"] == "MKT" and got["b"] == b"\x00\xff"
    assert got["ss3"].tolist() == [[0, 1, 2], [3, 4, 5]] and got["ss3"].dtype == np.dtype(">i4")
    assert got["mask"].dtype == bool and got["mask"].all()
    assert np.array_equal(got["f"], item["f"])
    assert got["n"] == 2.5 and type(got["n"]) is float and got["k"] == 7 and type(got["k"]) is int
    assert got["t"] == [1, "a"] and got["s"] == [3]
    with pytest.raises(UnsafeRecord, match="refusing to load"):
        safe_loads(pickle.dumps(np.random.default_rng(0), protocol=protocol))
    with pytest.raises(UnsafeRecord, match="dtype"):
        safe_loads(pickle.dumps(np.array(["a", None], dtype=object), protocol=protocol))
    with pytest.raises(UnsafeRecord, match="dtype"):
        safe_loads(pickle.dumps(np.zeros(2, dtype=[("x", "i4"), ("y", "f4")]), protocol=protocol))


# ----------------------------------------------------------------------------- remote code in model dirs


def _model_dir_with_remote_code(tmp_path: Path, micro_model: Path, where: str) -> tuple[Path, Path]:
    """A model directory whose config names custom code that would write `marker` when imported."""
    model = tmp_path / "evil_model"
    shutil.copytree(micro_model, model)
    marker = tmp_path / "code_ran"
    (model / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    if where == "config":
        cfg = json.loads((model / "config.json").read_text())
        cfg.update(model_type="evil", auto_map={"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel",
                                                "AutoModelForMaskedLM": "evil.EvilModel"})  # fmt: skip
        (model / "config.json").write_text(json.dumps(cfg))
    else:
        tc = json.loads((model / "tokenizer_config.json").read_text())
        tc.update(tokenizer_class="EvilTokenizer", auto_map={"AutoTokenizer": ["evil.EvilTokenizer", None]})
        (model / "tokenizer_config.json").write_text(json.dumps(tc))
    return model, marker


@pytest.mark.parametrize("where", ["config", "tokenizer"])
@pytest.mark.parametrize("command", ["fill", "embed", "attention"])
def test_model_dirs_never_run_their_code(tmp_path, micro_model, where, command):
    model, marker = _model_dir_with_remote_code(tmp_path, micro_model, where)
    fasta = tmp_path / "x.fasta"
    fasta.write_text(">a\nMKTAYIAKQR\n")
    args = {
        "fill": ["fill", "--model", str(model), "MKT<mask>LLV"],
        "embed": ["embed", "--model", str(model), str(fasta), "--out", str(tmp_path / "e.parquet")],
        "attention": [
            "attention",
            "export",
            "--model",
            str(model),
            "--fasta",
            str(fasta),
            "--out",
            str(tmp_path / "att.npz"),
        ],
    }[command]
    res = protlm(*args, stdin="y\ny\n")  # the answer HF's prompt would take
    assert res.returncode == 2, res.stderr[-2000:]
    assert "auto_map" in one_line_error(res.stderr)
    assert not marker.exists()
    assert not (tmp_path / "e.parquet").exists() and not (tmp_path / "att.npz").exists()


# Every transformers / peft entry point that can import code named by a config (`auto_map`).
HF_LOADERS = {"from_pretrained", "from_config", "load_adapter", "get_peft_model"}


def test_every_hf_load_states_trust_remote_code_false():
    """Every `from_pretrained` / `from_config` (any Auto class, PeftModel, tokenizer) in the package passes
    `trust_remote_code=False` literally; `for_model` is only ever AutoConfig's (registered types only)."""
    import ast

    src = Path(__file__).resolve().parents[1] / "src" / "protlm"
    offenders, seen = [], 0
    for f in src.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            where = f"{f.relative_to(src)}:{node.lineno}"
            if node.func.attr in HF_LOADERS:
                seen += 1
                ok = any(k.arg == "trust_remote_code" and getattr(k.value, "value", None) is False
                         for k in node.keywords)  # fmt: skip
                if not ok:
                    offenders.append(where)
            if node.func.attr == "for_model" and getattr(node.func.value, "id", None) != "AutoConfig":
                offenders.append(where)
    assert seen >= 3 and not offenders, offenders


def _micro_preset(tmp_path: Path, extra: str) -> Path:
    preset = tmp_path / "evil.yaml"
    preset.write_text((DATA / "micro.yaml").read_text() + extra)
    return preset


def _pretrain(tmp_path: Path, *args: str, stdin: str = "y\ny\n") -> subprocess.CompletedProcess:
    return protlm("pretrain", "--out", str(tmp_path / "run"), "--tokenizer", str(DATA / "tokenizer_bpe300"),
                  "--corpus", str(DATA / "swissprot_50.fasta"), "--max-steps", "1", *args, stdin=stdin,
                  timeout=120)  # fmt: skip


@pytest.mark.parametrize("where", ["preset", "nested preset", "recipe"])
def test_presets_and_recipes_never_name_code(tmp_path, where):
    """A preset YAML (or a recipe) with `auto_map` is refused before any model is built: a typed "y" at
    HF's "run the custom code?" prompt has nothing to answer."""
    marker = tmp_path / "code_ran"
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    auto_map = "auto_map: {AutoConfig: evil.EvilConfig, AutoModelForMaskedLM: evil.EvilModel}\n"
    if where == "recipe":
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(f"model: {DATA / 'micro.yaml'}\n{auto_map}")
        res = _pretrain(tmp_path, "--config", str(recipe))
    else:
        extra = auto_map if where == "preset" else "rope_scaling: {sub: {" + auto_map.strip() + "}}\n"
        res = _pretrain(tmp_path, "--model", str(_micro_preset(tmp_path, extra)))
    assert res.returncode == 2, res.stderr[-2000:]
    assert "auto_map" in one_line_error(res.stderr)
    assert not marker.exists() and not (tmp_path / "run" / "model").exists()


_BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize(
    "where, text, words",
    [
        ("recipe", "model: tiny\nlora_targets: &t query\nfoo: *t\n", "aliases"),
        ("recipe", _BILLION_LAUGHS, "aliases"),
        ("recipe", "model: " + "[" * 50_000 + "]" * 50_000 + "\n", "nested too deeply"),
        ("recipe", "model: tiny\n" + "#" * (2 << 20) + "\n", "larger than 1 MiB"),
        ("preset", _BILLION_LAUGHS.replace("a:", "model_type: roberta\na:", 1), "aliases"),
        ("preset", "model_type: roberta\nx: " + "{a: " * 50_000 + "1" + "}" * 50_000 + "\n", "nested too deeply"),
    ],
    ids=["alias", "billion-laughs", "deep-recipe", "huge-recipe", "billion-laughs-preset", "deep-preset"],
)
def test_yaml_bombs_are_one_line_errors(tmp_path, where, text, words):
    """Recipes and presets load without aliases, within 1 MiB; deep nesting is exit 2, not an internal error."""
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    res = _pretrain(tmp_path, "--config" if where == "recipe" else "--model", str(path))
    assert res.returncode == 2, res.stderr[-2000:]
    line = one_line_error(res.stderr)
    assert str(path) in line and words in line
    assert not (tmp_path / "run" / "config.yaml").exists()


@pytest.mark.parametrize("name", ["config.json", "tokenizer_config.json", "tokenizer.json", "protlm_task.json"])
def test_deeply_nested_json_in_a_model_dir_is_exit_2(tmp_path, micro_model, name):
    model = tmp_path / "deep"
    shutil.copytree(micro_model, model)
    (model / name).write_text("[" * 200_000 + "]" * 200_000)
    res = protlm("fill", "--model", str(model), "MKT<mask>LLV", timeout=60)
    assert res.returncode == 2, res.stderr[-2000:]
    line = one_line_error(res.stderr)
    assert name in line and ("nested too deeply" in line or "expected a JSON object" in line)


# ----------------------------------------------------------------------------- PEFT adapters in model dirs


def _with_adapter(tmp_path: Path, micro_model: Path, **changes) -> Path:
    """A copy of the micro model with a LoRA adapter as protlm writes it, at the root (where transformers
    applies it on load), its config changed by `changes` (a value None deletes the key)."""
    from protlm.models import build_mlm
    from protlm.models.lora import adapter_files, add_lora
    from protlm.tokenization import load_tokenizer

    model = tmp_path / "with_adapter"
    shutil.copytree(micro_model, model)
    mlm = add_lora(build_mlm(str(DATA / "micro.yaml"), load_tokenizer(micro_model)), rank=2, base=str(model))
    for name, content in adapter_files(mlm).items():
        (model / Path(name).name).write_bytes(content if isinstance(content, bytes) else content.encode())
    config = json.loads((model / "adapter_config.json").read_text())
    config.update(changes)
    (model / "adapter_config.json").write_text(json.dumps({k: v for k, v in config.items() if v is not None}))
    return model


def test_adapters_protlm_writes_are_accepted(tmp_path, micro_model):
    from protlm.io.hf_dirs import check_adapter

    model = _with_adapter(tmp_path, micro_model)
    assert check_adapter(model)["target_modules"] == ["query", "value"]
    res = protlm("embed", "--model", str(model), str(DATA / "swissprot_50.fasta"), "--out", str(tmp_path / "e.parquet"))
    assert res.returncode == 0, res.stderr[-2000:]


def _marker_bin(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps(_WritesMarker(str(marker))))


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"peft_type": "PREFIX_TUNING", "num_virtual_tokens": 4}, "peft_type"),
        ({"peft_type": "IA3"}, "peft_type"),
        ({"target_modules": "(a+)+$"}, "target_modules"),  # a regex string: peft would re.fullmatch every name
        ({"target_modules": ["query", "(a|a)*b"]}, "target_modules"),
        ({"target_modules": []}, "target_modules"),
        ({"rank_pattern": {"(a+)+$": 4}}, "rank_pattern"),
        ({"exclude_modules": "(x+x+)+y"}, "exclude_modules"),
        ({"layers_pattern": "(a*)*b"}, "layers_pattern"),
        ({"auto_mapping": {"base_model_class": "Evil", "parent_library": "evil"}}, "auto_mapping"),
        ({"megatron_core": "evil"}, "megatron_core"),
        ({"use_dora": True}, "use_dora"),
        ({"auto_map": {"AutoModel": "evil.Evil"}}, "auto_map"),
        ({"r": "8; import os"}, "'r'"),
        ({"base_model_name_or_path": "org/some-hub-model"}, "base_model_name_or_path"),
        ({"peft_type": None}, "LoRA"),
        ({"unknown_option": "x"}, "unknown_option"),
    ],
)
def test_adapters_protlm_did_not_write_are_refused(tmp_path, micro_model, changes, words):
    """A root adapter_config.json that is not LoRA, names regexes, modules or code, or points elsewhere."""
    model = _with_adapter(tmp_path, micro_model, **changes)
    marker = tmp_path / "unpickled"
    _marker_bin(model / "adapter_model.bin", marker)
    (model / "adapter_model.safetensors").rename(model / "kept.safetensors")  # peft would fall back to the .bin
    if "peft_type" not in changes or changes["peft_type"] is None:
        (model / "kept.safetensors").rename(model / "adapter_model.safetensors")
        (model / "adapter_model.bin").unlink()
    res = protlm("embed", "--model", str(model), str(DATA / "swissprot_50.fasta"), "--out",
                 str(tmp_path / "e.parquet"), timeout=60)  # fmt: skip
    assert res.returncode == 2, res.stderr[-2000:]
    line = one_line_error(res.stderr)
    assert "adapter_config.json" in line and words in line
    assert not marker.exists() and not (tmp_path / "e.parquet").exists()


@pytest.mark.parametrize("case", ["bin only", "bin beside safetensors", "base with remote code", "deep json"])
def test_adapter_weights_and_base_are_checked(tmp_path, micro_model, case):
    model = _with_adapter(tmp_path, micro_model)
    marker = tmp_path / "unpickled"
    if case.startswith("bin"):
        _marker_bin(model / "adapter_model.bin", marker)
        if case == "bin only":
            (model / "adapter_model.safetensors").unlink()
        words = "adapter_model.bin"
    elif case == "base with remote code":
        base, marker = _model_dir_with_remote_code(tmp_path, micro_model, "config")
        config = json.loads((model / "adapter_config.json").read_text())
        (model / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": str(base)}))
        words = "auto_map"
    else:
        (model / "adapter_config.json").write_text('{"a": ' * 100_000 + "1" + "}" * 100_000)
        words = "nested too deeply"
    res = protlm("fill", "--model", str(model), "MKT<mask>LLV", timeout=60)
    assert res.returncode == 2, res.stderr[-2000:]
    assert words in one_line_error(res.stderr)
    assert not marker.exists()


# ----------------------------------------------------------------------------- planted links in outputs

VICTIM_TEXT = "the user's own file\n"


def _plant(out: Path, name: str, victim_dir: Path) -> Path:
    """`out/name` as a symbolic link to a file (or, for a name ending in '/', a directory) outside `out`."""
    victim_dir.mkdir(exist_ok=True)
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    if name.endswith("/"):
        target = victim_dir / "dir"
        target.mkdir(exist_ok=True)
        (out / name.rstrip("/")).symlink_to(target, target_is_directory=True)
    else:
        target = victim_dir / Path(name).name.lstrip(".")
        target.write_text(VICTIM_TEXT)
        (out / name).symlink_to(target)
    return target


def _victim_untouched(victim_dir: Path) -> None:
    for f in victim_dir.rglob("*"):
        assert f.is_dir() or f.read_text() == VICTIM_TEXT, f
    assert not [f for f in victim_dir.rglob("*") if f.parent.name == "dir"], "written through a directory link"


def _command(name: str, out: Path, micro_model: Path) -> list[str]:
    fasta, tok = str(DATA / "swissprot_50.fasta"), str(DATA / "tokenizer_bpe300")
    return {
        "pretrain": ["pretrain", "--out", str(out), "--tokenizer", tok, "--model", str(DATA / "micro.yaml"),
                     "--corpus", fasta, "--max-steps", "1"],
        "finetune": ["finetune", "--out", str(out), "--task", "localization", "--model", str(micro_model),
                     "--data", str(DATA / "tasks" / "deeploc_small.fasta"), "--max-steps", "1"],
        "corpus prepare": ["corpus", "prepare", fasta, "--tokenizer", tok, "--out", str(out)],
        "pairs build": ["pairs", "build", "--pairs", str(DATA / "ppi_pairs_small.tsv"), "--sequences",
                        str(DATA / "ppi_sequences.fasta"), "--out", str(out)],
        "pairs build-string": ["pairs", "build-string", "--links", str(DATA / "string_links.txt.gz"),
                               "--sequences", str(DATA / "string_sequences.fa.gz"), "--out", str(out)],
        "tokenizer train": ["tokenizer", "train", "--corpus", fasta, "--vocab-size", "200", "--out", str(out)],
        "longformer convert": ["longformer", "convert", "--from", str(micro_model), "--out", str(out),
                               "--max-length", "256"],
    }[name]  # fmt: skip


@pytest.mark.parametrize(
    "command, name",
    [
        ("pretrain", ".protlm.lock"),
        ("pretrain", "metrics.jsonl"),
        ("pretrain", "config.yaml"),
        ("pretrain", "checkpoints/"),
        ("pretrain", "checkpoints/.step-00000001.tmp-x"),
        ("pretrain", "tensorboard/"),
        ("pretrain", "model/config.json"),
        ("finetune", ".protlm.lock"),
        ("finetune", "seed-0/metrics.jsonl"),
        ("corpus prepare", ".lengths.npy.tmp"),
        ("corpus prepare", "shards/"),
        ("pairs build", "pairs.parquet"),
        ("pairs build-string", ".report.json.tmp"),
        ("pairs build-string", ".work/"),
        ("tokenizer train", "tokenizer.json"),
        ("longformer convert", "model.safetensors"),
    ],
)
def test_planted_links_in_an_output_dir_are_refused(tmp_path, capsys, micro_model, command, name):
    """An existing --out or store (copied from a colleague) with a symbolic link inside: one line, exit 2,
    and nothing is written through the link, whichever file protlm would have written there."""
    out, victims = tmp_path / "out", tmp_path / "victims"
    _plant(out, name, victims)
    code, _, err = run_cli(_command(command, out, micro_model), capsys)
    assert code == 2, err[-2000:]
    assert "symbolic link" in one_line_error(err)
    _victim_untouched(victims)


@pytest.mark.parametrize("kind", ["hard link", "fifo"])
@pytest.mark.parametrize("name", [".protlm.lock", "metrics.jsonl"])
def test_files_written_in_place_must_be_protlms_own(tmp_path, capsys, micro_model, kind, name):
    """The lock and metrics.jsonl are written in place: a hard link to a file elsewhere (O_NOFOLLOW does not
    see it) or a FIFO (whose open would block for ever) is one line, and the other file is untouched."""
    out, victims = tmp_path / "out", tmp_path / "victims"
    out.mkdir()
    victims.mkdir()
    victim = victims / "victim.txt"
    victim.write_text(VICTIM_TEXT)
    if kind == "hard link":
        os.link(victim, out / name)
    else:
        os.mkfifo(out / name)
    if name == "metrics.jsonl":  # the lock is taken first: let it be fine
        (out / ".protlm.lock").write_text("")
    code, _, err = run_cli(_command("pretrain", out, micro_model), capsys)
    assert code == 2, err[-2000:]
    line = one_line_error(err)
    assert name in line and ("hard link" in line or "FIFO" in line)
    _victim_untouched(victims)


@pytest.mark.parametrize("case", ["pretrain --out", "evaluate --out", "store of a shard"])
def test_an_output_dir_that_is_itself_a_link_is_refused(tmp_path, capsys, micro_model, case):
    """The directory itself, not only what is inside: a copied run's `eval/` or a store given through a link."""
    victims, out = tmp_path / "victims", tmp_path / "out"
    victims.mkdir()
    if case == "pretrain --out":
        out.symlink_to(victims, target_is_directory=True)
        args = _command("pretrain", out, micro_model)
    elif case == "evaluate --out":
        ft = tmp_path / "ft"
        code, _, err = run_cli(["finetune", *_command("finetune", ft, micro_model)[1:]], capsys)
        assert code in (0, None), err
        out.symlink_to(victims, target_is_directory=True)  # a copied run's evaluation dir, say
        args = ["evaluate", "--model", str(ft / "seed-0" / "model"), "--split", "test", "--out", str(out)]
    else:
        out.mkdir()
        (out / "shards").symlink_to(victims, target_is_directory=True)
        args = [*_command("corpus prepare", out, micro_model), "--shard", "0/2", "--shard-size", "10"]
    code, _, err = run_cli(args, capsys)
    assert code == 2, err[-2000:]
    assert "symbolic link" in one_line_error(err)
    assert not list(victims.iterdir())


def test_atomic_writes_never_follow_a_planted_name(tmp_path, monkeypatch):
    """Temporary names are unpredictable and created exclusively; the final name's link is replaced."""
    from protlm.io import atomic
    from protlm.train.metrics import MetricsLogger

    victims = tmp_path / "victims"
    out = tmp_path / "out"
    for pid in (os.getpid(), 1, 2):  # the predictable names of earlier versions
        _plant(out, f".report.json.tmp-{pid}", victims)
    target = _plant(out, "report.json", victims)
    atomic.write_json(out / "report.json", {"ok": 1})
    assert not (out / "report.json").is_symlink() and json.loads((out / "report.json").read_text()) == {"ok": 1}
    assert target.read_text() == VICTIM_TEXT
    temps = {atomic.new_temp_file(out / "x.parquet").name for _ in range(20)}
    assert len(temps) == 20
    _plant(out, "metrics.jsonl", victims)
    with pytest.raises(ProtlmError, match="symbolic link"):
        MetricsLogger(out, tensorboard=False).log({"step": 1})
    _victim_untouched(victims)


# ----------------------------------------------------------------------------- found by the second review


def _tokenizer_with(tmp_path: Path, edit) -> Path:
    tok = tmp_path / "tok"
    shutil.copytree(DATA / "tokenizer_bpe300", tok)
    doc = json.loads((tok / "tokenizer.json").read_text())
    edit(doc)
    (tok / "tokenizer.json").write_text(json.dumps(doc))
    return tok


def _ppi_record(**fields) -> bytes:
    return pickle.dumps({"primary_1": "MKTAYIAK", "primary_2": "MSVLTPLL", "interaction": 1, **fields}, protocol=2)


@pytest.mark.parametrize(
    "case, words",
    [
        ("tokenizer: vocabulary id 4e9", "far outside"),  # 16 GB RSS, or a Rust abort under a memory limit
        ("tokenizer: chained Replace", "content is longer"),  # 9.4 GB and still growing at 60 s
        ("preset: a 5,000-digit integer", "invalid YAML"),
        ("preset: a date that is none", "invalid YAML"),
        ("preset: rotary RoBERTa, 5e8 positions", "would need about"),  # RoBERTa allocates them anyway
        ("preset: another model type", "model_type must be one of"),  # sized by rules protlm does not know
        ("config.json: a 5,000-digit integer", "invalid JSON"),
        ("lmdb: interaction is a 2x2 array", "interaction must be 0 or 1, found ndarray"),
        ("lmdb: a 5,000-digit id", "id_1 must be text"),
        ("lmdb: a module name with a newline", "refusing to load"),
    ],
)
def test_second_review_cases_are_one_line_and_exit_2(tmp_path, micro_model, case, words):
    """Each once ended in exit 1, several lines, a multi-GB process or a crash."""
    fasta = str(DATA / "swissprot_50.fasta")
    if case.startswith("tokenizer"):
        replace = {"type": "Replace", "pattern": {"String": "A"}, "content": "A" * 10}
        edit = {"tokenizer: vocabulary id 4e9": lambda d: d["model"]["vocab"].update(ZZZ=4_000_000_000),
                "tokenizer: chained Replace": lambda d: d.update(normalizer={"type": "Sequence",
                                                                             "normalizers": [replace] * 8})}[case]  # fmt: skip
        args = ["tokenizer", "stats", "--tokenizer", str(_tokenizer_with(tmp_path, edit)), "--corpus", fasta]
    elif case.startswith("preset"):
        extra = {"preset: a 5,000-digit integer": "seed: " + "1" * 5000 + "\n",
                 "preset: a date that is none": "when: 2020-99-99\n",
                 "preset: rotary RoBERTa, 5e8 positions": "max_position_embeddings: 500000000\n"
                                                          "position_embedding_type: rotary\n",
                 "preset: another model type": "model_type: albert\nembedding_size: 20000000\n"}[case]  # fmt: skip
        args = ["pretrain", "--out", str(tmp_path / "run"), "--tokenizer", str(DATA / "tokenizer_bpe300"),
                "--corpus", fasta, "--max-steps", "1", "--model", str(_micro_preset(tmp_path, extra))]  # fmt: skip
    elif case.startswith("config.json"):
        model = tmp_path / "m"
        shutil.copytree(micro_model, model)
        text = (model / "config.json").read_text().replace('"hidden_size": 32', '"hidden_size": ' + "3" * 5000)
        (model / "config.json").write_text(text)
        args = ["fill", "--model", str(model), "MKT<mask>LLV"]
    else:
        record = {
            "lmdb: interaction is a 2x2 array": _ppi_record(interaction=np.ones((2, 2), dtype=np.int64)),
            "lmdb: a 5,000-digit id": _ppi_record(id_1=10**4999),
            "lmdb: a module name with a newline": b"\x80\x04\x8c\x06nu\nmpy\x8c\x01x\x93)R.",
        }[case]
        args = ["pairs", "from-lmdb", str(write_lmdb(tmp_path / "p.lmdb", [record])), "--out", str(tmp_path / "p.tsv")]
    res = protlm(*args, timeout=60)
    assert res.returncode == 2, res.stderr[-2000:]
    assert words in one_line_error(res.stderr)


@pytest.mark.parametrize(
    "recipe, words",
    [
        ("1: 2\n", "option names are text"),
        ("seed: abc\n", "seed must be int"),
        ("keep_checkpoints: 1.5\n", "keep_checkpoints must be int"),
        ("lora_targets: [1]\n", "lora_targets must be str"),
        ("cache_dir: [1]\n", "cache_dir must be str or null"),
        ("resume: 1\n", "resume must be bool"),
        ("mix: {singles: [1]}\n", "mix must be dict"),
    ],
)
def test_recipe_values_of_the_wrong_type_are_exit_2(tmp_path, capsys, recipe, words):
    path = tmp_path / "recipe.yaml"
    path.write_text(f"model: {DATA / 'micro.yaml'}\ntokenizer: {DATA / 'tokenizer_bpe300'}\nmax_steps: 1\n{recipe}")
    code, _, err = run_cli(["pretrain", "--config", str(path), "--out", str(tmp_path / "run")], capsys)
    assert code == 2, err
    assert words in one_line_error(err)


def test_a_new_run_never_replaces_someone_elses_directory(tmp_path, capsys, micro_model):
    """A recipe (or a typo) naming an existing project as `out:` used to replace its model/ and config.yaml."""
    project = tmp_path / "project"
    (project / "model").mkdir(parents=True)
    (project / "model" / "important.txt").write_text(VICTIM_TEXT)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"out: {project}\n")
    args = _command("pretrain", tmp_path / "unused", micro_model)
    args = [a for a in args if a not in ("--out", str(tmp_path / "unused"))]
    code, _, err = run_cli([*args, "--config", str(recipe)], capsys)
    assert code == 2 and "already holds model, which a new run would replace" in one_line_error(err)
    assert (project / "model" / "important.txt").read_text() == VICTIM_TEXT
    assert sorted(p.name for p in project.rglob("*")) == [".protlm.lock", "important.txt", "model"]  # the lock only


@pytest.mark.parametrize(
    "case", ["--out under a file", "embed --out is a directory", "config.json: unknown activation"]
)
def test_paths_and_configs_that_cannot_work_are_exit_2(tmp_path, capsys, micro_model, case):
    fasta = str(DATA / "swissprot_50.fasta")
    (tmp_path / "file").write_text("x")
    if case == "--out under a file":
        args = ["pairs", "from-lmdb", str(DATA / "human_ppi_small.lmdb"), "--out", str(tmp_path / "file" / "p.tsv")]
    elif case == "embed --out is a directory":
        (tmp_path / "e.npz").mkdir()
        args = ["embed", "--model", str(micro_model), fasta, "--out", str(tmp_path / "e.npz")]
    else:
        model = tmp_path / "m"
        shutil.copytree(micro_model, model)
        cfg = json.loads((model / "config.json").read_text())
        (model / "config.json").write_text(json.dumps({**cfg, "hidden_act": "no_such_activation"}))
        args = ["fill", "--model", str(model), "MKT<mask>LLV"]
    code, _, err = run_cli(args, capsys)
    assert code == 2, err
    one_line_error(err)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A 4-step micro pre-training run with a checkpoint at step 4 (to be copied and tampered with)."""
    from protlm.cli import main
    from test_pretrain import base_args

    root = tmp_path_factory.mktemp("run")
    with pytest.raises(SystemExit) as e:
        main(["pretrain", *base_args(root / "run", root / "cache", **{"--max-steps": 4})])
    assert e.value.code in (0, None)
    return root / "run"


def _tamper_state(run: Path, edit) -> None:
    (ckpt,) = (run / "checkpoints").glob("step-*")
    state = json.loads((ckpt / "trainer_state.json").read_text())
    (ckpt / "trainer_state.json").write_text(json.dumps(edit(state)))


@pytest.mark.parametrize(
    "case",
    ["state is a list", "no param_groups", "param_groups of strings", "lr a list", "rng a string",
     "step a string", "metrics line a list", "metrics step a string"],
)  # fmt: skip
def test_a_tampered_run_dir_is_exit_2_on_resume(tmp_path, capsys, finished_run, case):
    """A run dir copied from someone else, resumed: its checkpoint state and metrics are input too."""
    from test_pretrain import base_args

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    edits = {
        "state is a list": lambda st: [st],
        "no param_groups": lambda st: {k: v for k, v in st.items() if k != "param_groups"},
        "param_groups of strings": lambda st: {**st, "param_groups": ["x"] * len(st["param_groups"])},
        "lr a list": lambda st: {**st, "param_groups": [{**g, "lr": [1, 2, 3]} for g in st["param_groups"]]},
        "rng a string": lambda st: {**st, "rng": "x"},
        "step a string": lambda st: {**st, "step": "abc"},
    }
    if case in edits:
        _tamper_state(run, edits[case])
    else:
        bad = "[1, 2]" if case == "metrics line a list" else '{"step": "abc", "loss": 1.0}'
        (run / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text() + bad + "\n")
    args = base_args(run, tmp_path / "cache", **{"--max-steps": 6, "--resume": ""})[:-1]  # a flag: no value
    code, _, err = run_cli(["pretrain", *args], capsys)
    assert code == 2, err[-2000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith("protlm: error: ") and ("checkpoint" in line or "metrics" in line), err


def test_plot_draws_only_what_it_can_read(tmp_path, capsys):
    """Records without a step, without eval_ppl, or with text for a number are left out of the plot."""
    (tmp_path / "metrics.jsonl").write_text('{"loss": 1}\n{"step": 1, "eval_loss": 2.0}\n'
                                            '{"step": 2, "loss": "x"}\n{"step": 3, "loss": 1.5}\n')  # fmt: skip
    code, _, err = run_cli(["plot", str(tmp_path)], capsys)
    assert code in (0, None), err
    assert (tmp_path / "loss.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"labels": 7}, "labels is not"),
        ({"labels": [[1]]}, "labels must be a list of names"),
        ({"task": ["localization"]}, "task is not"),
        ({"data": {"split_seed": "x"}}, "data.split_seed is not"),
        ({"baseline": {"kind": "sequence", "n_classes": "2", "symmetric": False}}, "baseline.n_classes is not"),
    ],
)
def test_a_tampered_task_file_is_exit_2(tmp_path, capsys, micro_model, changes, words):
    """protlm_task.json of a fine-tuned model (or baseline) from someone else: its fields are input too."""
    model = tmp_path / "ft"
    shutil.copytree(micro_model, model)
    info = {"task": "localization", "kind": "sequence", "labels": ["Nucleus", "Cytoplasm"], "seed": 0,
            "data": {"data": None, "background": None, "sequences": None, "split_seed": 0, "strict": False}}  # fmt: skip
    (model / "protlm_task.json").write_text(json.dumps({**info, **changes}))
    code, _, err = run_cli(["predict", "--model", str(model), str(DATA / "swissprot_50.fasta"), "--out",
                            str(tmp_path / "p.tsv")], capsys)  # fmt: skip
    assert code == 2, err[-2000:]
    assert words in one_line_error(err)


# ----------------------------------------------------------------------------- last-resort handler


def test_unexpected_errors_are_one_line_with_a_debug_hint(tmp_path, monkeypatch, capsys):
    import protlm.tokenizer_report as report

    def boom(*args, **kwargs):
        raise RuntimeError("simulated internal failure")

    monkeypatch.setattr(report, "compression_report", boom)
    fasta = tmp_path / "x.fasta"
    fasta.write_text(">a\nMKTAYIAKQR\n")
    code, _, err = run_cli(
        ["tokenizer", "stats", "--tokenizer", str(DATA / "tokenizer_bpe300"), "--corpus", str(fasta)], capsys
    )
    assert code == 1
    last = err.strip().splitlines()[-1]  # after the corpus' skip report
    assert last.startswith("protlm: error: internal error in 'tokenizer stats'") and "--debug" in last, err
    assert "simulated internal failure" in last and str(fasta) in last and "Traceback" not in err
    code, _, err = run_cli(["--debug", "tokenizer", "stats", "--tokenizer", str(DATA / "tokenizer_bpe300"), "--corpus", str(fasta)],
                           capsys)  # fmt: skip
    assert code == 1 and "Traceback" in err and "simulated internal failure" in err


# ----------------------------------------------------------------------------- weights, HTML, unsafe calls


class _WritesMarker:
    """Unpickling this creates a file: proof that a pickled weights file was opened."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_weights_are_never_opened(tmp_path, micro_model):
    model = tmp_path / "bin_only"
    shutil.copytree(micro_model, model)
    (model / "model.safetensors").unlink()
    marker = tmp_path / "unpickled"
    (model / "pytorch_model.bin").write_bytes(pickle.dumps(_WritesMarker(str(marker))))
    res = protlm("fill", "--model", str(model), "MKT<mask>LLV")
    assert res.returncode == 2
    assert "safetensors" in one_line_error(res.stderr)
    assert not marker.exists()


def test_html_report_escapes_names_and_keeps_images_beside_it(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from protlm.attention.report import Report

    evil = "<script>alert(1)</script>"
    rep = Report(tmp_path / "r" / "report.html", f"model {evil}")
    rep.text(f"chain {evil}", "<p>fixed text</p>")
    rep.table([f"head {evil}"], [[f"A{evil}", 0.5]])
    fig, _ = plt.subplots()
    rep.figure(fig, f"../../{evil}", f"caption {evil}")
    page = rep.write().read_text()
    assert "alert(1)" in page and "<script>alert(1)" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 7  # title, h1, h2, th, td, img alt, caption
    assert [p.parent for p in tmp_path.rglob("*.png")] == [tmp_path / "r"]


UNSAFE_CALLS = {
    ("torch", "load"), ("pickle", "load"), ("pickle", "loads"), ("yaml", "load"), ("yaml", "unsafe_load"),
    ("builtins", "eval"), ("builtins", "exec"), ("os", "system"), ("marshal", "loads"), ("dill", "loads"),
}  # fmt: skip


def test_package_makes_no_unsafe_calls():
    """No torch.load / pickle.load / eval / exec / yaml.load / os.system; np.load always allow_pickle=False;
    subprocess never with shell=True. (The one unpickler is the restricted `io.lmdb_records`.) JSON and YAML
    are parsed only in `io.structured`; files are opened for writing only in `io.atomic`."""
    import ast

    src = Path(__file__).resolve().parents[1] / "src" / "protlm"
    found = []
    for f in src.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, ast.Call):
                continue
            fn = node.func
            name = (
                (getattr(fn.value, "id", None), fn.attr)
                if isinstance(fn, ast.Attribute)
                else ("builtins", getattr(fn, "id", None))
            )
            kwargs = {k.arg: getattr(k.value, "value", k.value) for k in node.keywords}
            where = f"{f.relative_to(src)}:{node.lineno}"
            if name in UNSAFE_CALLS:
                found.append(f"{where} {name}")
            if name == ("np", "load") and kwargs.get("allow_pickle") is not False:
                found.append(f"{where} np.load without allow_pickle=False")
            if name[0] == "subprocess" and kwargs.get("shell") is True:
                found.append(f"{where} subprocess with shell=True")
            if name in (("json", "load"), ("json", "loads"), ("yaml", "safe_load")) and f.name != "structured.py":
                found.append(f"{where} {name}: read JSON / YAML through protlm.io.structured (bounded, no aliases)")
            mode = node.args[1] if name == ("builtins", "open") and len(node.args) > 1 else None
            if isinstance(mode, ast.Constant) and set(str(mode.value)) & set("wax+") and f.name != "atomic.py":
                found.append(f"{where} open(..., {mode.value!r}): write through protlm.io.atomic (no links followed)")
    assert not found, found


# ----------------------------------------------------------------------------- tokenizer.json components

_OWN_TOKENIZER = json.loads((DATA / "tokenizer_bpe300" / "tokenizer.json").read_text())
_CATASTROPHIC = {"type": "Split", "pattern": {"Regex": "(.+)+$Z"}, "behavior": "Isolated", "invert": False}


def _crafted_tokenizer(tmp_path: Path, craft: str) -> Path:
    """protlm's test tokenizer with one hostile component; each made `tokenizers` panic before the check
    (Oniguruma's retry limit on a 25-residue probe; a garbage `Precompiled` character map)."""
    tok = tmp_path / "evil_tokenizer"
    shutil.copytree(DATA / "tokenizer_bpe300", tok)
    doc = json.loads(json.dumps(_OWN_TOKENIZER))
    if craft == "split-regex":
        doc["pre_tokenizer"] = _CATASTROPHIC
    elif craft == "nested-replace-regex":
        inner = {
            "type": "Sequence",
            "normalizers": [{"type": "Replace", "pattern": {"Regex": "(.+)+$Z"}, "content": ""}],
        }
        doc["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "Strip", "strip_left": True,
                                                                  "strip_right": True}, inner]}  # fmt: skip
    elif craft == "precompiled":
        doc["normalizer"] = {"type": "Precompiled", "precompiled_charsmap": "AAAAAAAAAAAAAAAAAAAA"}
    elif craft == "deep":
        (tok / "tokenizer.json").write_text("[" * 100_000 + "]" * 100_000)
        return tok
    (tok / "tokenizer.json").write_text(json.dumps(doc))
    return tok


@pytest.mark.parametrize("craft, reason", [("split-regex", "'Split'"), ("nested-replace-regex", "Regex"),
                                           ("precompiled", "'Precompiled'"), ("deep", "nested")])  # fmt: skip
def test_tokenizer_json_cannot_panic_tokenizer_stats(tmp_path, craft, reason):
    tok = _crafted_tokenizer(tmp_path, craft)
    fasta = tmp_path / "x.fasta"
    fasta.write_text(">a\nMKTAYIAKQRAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n")
    res = protlm("tokenizer", "stats", "--tokenizer", str(tok), "--corpus", str(fasta))
    assert res.returncode == 2, res.stderr[-2000:]
    line = one_line_error(res.stderr)
    assert str(tok / "tokenizer.json") in line and reason in line, line


def test_tokenizer_json_cannot_panic_corpus_prepare_workers(tmp_path):
    tok = _crafted_tokenizer(tmp_path, "split-regex")
    out = tmp_path / "store"
    res = protlm("corpus", "prepare", str(DATA / "swissprot_50.fasta"), "--tokenizer", str(tok), "--out", str(out),
                 "--workers", "2")  # fmt: skip
    assert res.returncode == 2, res.stderr[-2000:]
    line = one_line_error(res.stderr)
    assert str(tok / "tokenizer.json") in line and "'Split'" in line, line
    assert not out.exists()


# ----------------------------------------------------------------------------- archive member names


def test_attention_export_member_names_stay_inside_the_archive(tmp_path, micro_model, capsys):
    """Ids become member names as `embed` writes them (`io.embeddings.member_name`): `/`, `\\`, `%`,
    controls and a leading `.` percent-encoded; an id given twice is an error."""
    import zipfile
    from urllib.parse import unquote

    fasta = tmp_path / "x.fasta"
    fasta.write_text(">../../evil\nMKTAYIAKQR\n>/abs/path\nMKTAYIAK\n>a/b\nMKTAY\n>ok\nMKTAYIA\n")
    out = tmp_path / "att.npz"
    code, _, err = run_cli(["attention", "export", "--model", str(micro_model), "--fasta", str(fasta), "--out",
                            str(out)], capsys)  # fmt: skip
    assert code in (0, None), err
    names = zipfile.ZipFile(out).namelist()
    assert {n.rsplit(".", 2)[0] for n in names if n != "_meta.npy"} == {
        "%2E.%2F..%2Fevil",
        "%2Fabs%2Fpath",
        "a%2Fb",
        "ok",
    }
    assert all("/" not in n and not n.startswith(".") for n in names)
    assert {unquote(n.rsplit(".", 2)[0]) for n in names if n != "_meta.npy"} == {"../../evil", "/abs/path", "a/b", "ok"}
    z = np.load(out)
    assert z["%2E.%2F..%2Fevil.attention"].shape[-1] == 10 and z["a%2Fb.sequences"].tolist() == ["MKTAY"]
    assert not list(tmp_path.glob("**/evil*")) and not Path("/abs/path").exists()

    out.unlink()
    fasta.write_text(">sp/P1\nMKTAYIAKQR\n>sp%2FP1\nMKTAYIAK\n")  # two ids, one name unless % is encoded too
    code, _, err = run_cli(["attention", "export", "--model", str(micro_model), "--fasta", str(fasta), "--out",
                            str(out)], capsys)  # fmt: skip
    assert code in (0, None), err
    assert {n.rsplit(".", 2)[0] for n in zipfile.ZipFile(out).namelist()} == {"sp%2FP1", "sp%252FP1", "_meta"}

    # the FASTA reader already skips a repeated id; the writer refuses one from any caller
    from types import SimpleNamespace

    from protlm.attention.maps import export
    from protlm.errors import ProtlmError

    att = SimpleNamespace(attention=np.zeros((1, 1, 2, 2)), special=np.zeros((1, 1, 2)), chain_index=np.zeros(2),
                          chains=("1",), sequences=("MK",))  # fmt: skip
    stub = type("Stub", (), {"path": "m", "n_layers": 1, "n_heads": 1, "__call__": lambda self, *a: att})()
    with pytest.raises(ProtlmError, match="'a/b' is written twice"):
        export(stub, [("a/b", ("MK",), ("1",)), ("a/b", ("MK",), ("1",))], tmp_path / "dup.npz")
    assert not list(tmp_path.glob("*dup*"))
