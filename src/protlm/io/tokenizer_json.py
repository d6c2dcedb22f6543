"""A `tokenizer.json` checked before the `tokenizers` library runs it, and Rust panics kept to one line.

`tokenizers` (Rust) panics on some crafted files instead of raising: a `Split` or `Replace` whose
`Regex` backtracks catastrophically (`(.+)+$Z` hits Oniguruma's retry limit), a `Precompiled`
normalizer whose character map is garbage. A panic is `pyo3_runtime.PanicException`, a
`BaseException` that `except Exception` does not catch, and Rust's panic hook writes its own lines
(a backtrace with `RUST_BACKTRACE=1`) to file descriptor 2 before Python sees anything.

So protlm runs only the components that its own tokenizers and the supported backbones' tokenizers
are made of (`ALLOWED` below: protlm's BPE / Unigram / char / byte-level BPE, RoBERTa's byte-level
BPE, BERT / ProtBERT's WordPiece; ESM-2's is a vocabulary file). Any `Regex` pattern, anywhere, is
refused. The file is read with a size cap and walked without recursion, with caps on nesting depth
and on the number of component nodes. `rust_guard` turns a panic that still happens (while loading or
in a trial encode) into a one-line `ProtlmError`, with the panic hook's output swallowed.
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from protlm.errors import InputError, ProtlmError
from protlm.io.structured import read_json

MAX_BYTES = 1 << 30  # 1 GiB: a 250k-token vocabulary with its merges is ~20 MB
MAX_DEPTH = 32  # component nesting (Sequence inside Sequence ...); protlm's own use 2
MAX_NODES = 100_000  # JSON values inside the normalizer, pre-tokenizer, decoder and post-processor

# Component types per slot: protlm's tokenizers (every kind of `tokenization.KINDS`), RoBERTa's and
# BERT / ProtBERT's (as transformers writes or converts them). `Sequence` nests the same slot.
ALLOWED = {
    "normalizer": {
        "Sequence",
        "BertNormalizer",
        "Lowercase",
        "Strip",
        "StripAccents",
        "NFC",
        "NFD",
        "NFKC",
        "NFKD",
        "Replace",
    },  # fmt: skip
    "pre_tokenizer": {"Sequence", "ByteLevel", "BertPreTokenizer", "Whitespace", "WhitespaceSplit"},
    "decoder": {"Sequence", "ByteLevel", "WordPiece"},
    "post_processor": {"Sequence", "TemplateProcessing", "RobertaProcessing", "BertProcessing", "ByteLevel"},
    "model": {"BPE", "Unigram", "WordPiece", "WordLevel"},
}
_CHILDREN = {"normalizers", "pretokenizers", "decoders", "processors"}  # where a Sequence keeps its parts
last_guarded: str | None = None  # the tokenizer file `rust_guard` last ran, for the CLI's last resort


def tokenizer_file(directory: str | Path) -> Path:
    """`DIR/tokenizer.json` when there is one, else DIR (vocabulary files only): what errors name."""
    path = Path(directory) / "tokenizer.json"
    return path if path.is_file() else Path(directory)


def check_tokenizer_file(path: str | Path) -> dict:
    """The parsed `tokenizer.json` at `path`, or InputError naming it when `check_tokenizer` refuses it
    (or it is too large, not JSON, or nested past what `json` can parse)."""
    path = Path(path)
    value = read_json(path, limit=MAX_BYTES)
    check_tokenizer(value, path)
    return value


def check_tokenizer(doc, where: str | Path) -> None:
    """InputError naming `where` unless `doc` (a parsed tokenizer.json) uses only `ALLOWED` components
    and no `Regex` pattern."""
    if not isinstance(doc, dict):
        raise InputError(where, f"expected a JSON object, found a {type(doc).__name__}")
    model = doc.get("model")
    if not isinstance(model, dict) or model.get("type") not in ALLOWED["model"]:
        kind = model.get("type") if isinstance(model, dict) else model
        raise InputError(
            where, f"model {kind!r} is not one protlm runs (allowed: {', '.join(sorted(ALLOWED['model']))})"
        )
    nodes = 0
    for slot in ("normalizer", "pre_tokenizer", "decoder", "post_processor"):
        stack = [(doc.get(slot), slot, 1, True)]  # (value, JSON path, depth, is a component)
        while stack:
            value, at, depth, component = stack.pop()
            nodes += 1
            if depth > MAX_DEPTH or nodes > MAX_NODES:
                raise InputError(where, f"{at}: nested deeper than {MAX_DEPTH} or larger than {MAX_NODES:,} values")
            if isinstance(value, dict):
                if "Regex" in value:
                    raise InputError(where, f"{at}: a Regex pattern; protlm runs no tokenizer regular expressions "
                                            "(they can backtrack without end)")  # fmt: skip
                if component:
                    kind = value.get("type")
                    if kind not in ALLOWED[slot]:
                        raise InputError(where, f"{at}: {slot} {kind!r} is not one protlm runs (allowed: "
                                                f"{', '.join(sorted(ALLOWED[slot]))})")  # fmt: skip
                for key, child in value.items():
                    parts = component and key in _CHILDREN and isinstance(child, list)
                    items = enumerate(child) if parts else [(None, child)]
                    for i, item in items:
                        stack.append((item, f"{at}.{key}" + ("" if i is None else f"[{i}]"), depth + 1, parts))
            elif isinstance(value, list):
                stack.extend((item, f"{at}[{i}]", depth + 1, False) for i, item in enumerate(value))
            elif component and value is not None:
                raise InputError(where, f"{at}: expected a component object, found {value!r:.40}")


def is_rust_panic(err: BaseException) -> bool:
    """True for `pyo3_runtime.PanicException` (a Rust panic inside `tokenizers`)."""
    return type(err).__name__ == "PanicException"


def panic_message(err: BaseException) -> str:
    return " ".join(str(err).split())[:200] or "no message"


@contextmanager
def rust_guard(where: str | Path):
    """Run `tokenizers` code with file descriptor 2 captured: a Rust panic becomes one ProtlmError naming
    `where` (the panic hook's own lines are dropped); otherwise what was written is passed on."""
    global last_guarded
    last_guarded = str(where)
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        panicked = None
        try:
            yield
        except BaseException as e:
            if not is_rust_panic(e):
                raise
            panicked = e
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if panicked is None:
                captured.seek(0)
                text = captured.read()
                if text:
                    os.write(2, text)
        if panicked is not None:
            raise ProtlmError(f"{where}: the tokenizer failed (Rust panic: {panic_message(panicked)})") from None
