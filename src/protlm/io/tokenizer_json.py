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
ID_SLACK = 1_000_000  # ids past the number of tokens (gaps in a vocabulary) that are still accepted
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
    if not isinstance(model, dict) or not _is_allowed(model.get("type"), "model"):
        kind = model.get("type") if isinstance(model, dict) else model
        raise InputError(where, f"model {_short(kind)} is not one protlm runs (allowed: "
                                f"{', '.join(sorted(ALLOWED['model']))})")  # fmt: skip
    _check_ids(doc, model, where)
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
                    if not _is_allowed(kind, slot):
                        raise InputError(where, f"{at}: {slot} {_short(kind)} is not one protlm runs (allowed: "
                                                f"{', '.join(sorted(ALLOWED[slot]))})")  # fmt: skip
                    pattern = value.get("pattern")
                    regex = isinstance(pattern, dict) and "Regex" in pattern  # refused below, by name
                    if kind == "Replace" and not regex and not _shrinks(value):
                        raise InputError(where, f"{at}: a Replace whose content is longer than its pattern; "
                                                "chained, such replacements grow the text without bound")  # fmt: skip
                for key, child in value.items():
                    parts = component and key in _CHILDREN and isinstance(child, list)
                    items = enumerate(child) if parts else [(None, child)]
                    for i, item in items:
                        stack.append((item, f"{at}.{key}" + ("" if i is None else f"[{i}]"), depth + 1, parts))
            elif isinstance(value, list):
                stack.extend((item, f"{at}[{i}]", depth + 1, False) for i, item in enumerate(value))
            elif component and value is not None:
                raise InputError(where, f"{at}: expected a component object, found {_short(value)}")


def _is_allowed(kind, slot: str) -> bool:
    return type(kind) is str and kind in ALLOWED[slot]


def _short(value) -> str:
    """A short description of a file value: a short string's repr, else its type (never a container's repr)."""
    return repr(value) if type(value) is str and len(value) <= 40 else type(value).__name__


def _shrinks(replace: dict) -> bool:
    """A `Replace` with a plain string pattern whose content is no longer than the pattern (protlm's own
    map rare residues to X, one letter for one)."""
    pattern, content = replace.get("pattern"), replace.get("content")
    text = pattern.get("String") if isinstance(pattern, dict) else None
    return type(text) is str and type(content) is str and 0 < len(text) and len(content) <= len(text)


def _check_ids(doc: dict, model: dict, where) -> None:
    """Every token id (vocabulary, added tokens, post-processor) below the number of tokens plus
    `ID_SLACK` (vocabularies may have gaps): the library allocates up to the largest id, so an id of 4e9
    in a 300-token file costs 16 GB."""
    vocab = model.get("vocab")
    added = doc.get("added_tokens") or []
    if not isinstance(added, list):
        raise InputError(where, "added_tokens must be a list")
    size = (len(vocab) if isinstance(vocab, dict | list) else 0) + len(added)
    ids = list(vocab.values()) if isinstance(vocab, dict) else []
    ids += [t.get("id") for t in added if isinstance(t, dict)]
    if model.get("unk_id") is not None:
        ids.append(model.get("unk_id"))
    todo = [doc.get("post_processor")]
    while todo:  # ids lists of TemplateProcessing's special tokens, RobertaProcessing's (token, id) pairs
        item = todo.pop()
        if isinstance(item, dict):
            todo.extend(v for k, v in item.items() if k != "ids")
            ids += item.get("ids") if isinstance(item.get("ids"), list) else []
        elif isinstance(item, list):
            if len(item) == 2 and type(item[0]) is str:
                ids.append(item[1])
            else:
                todo.extend(item)
    limit = size + ID_SLACK
    bad = next((i for i in ids if type(i) is not int or not 0 <= i < limit), None)
    if bad is not None or any(type(i) is not int for i in ids):
        raise InputError(where, f"a token id {_short(bad) if type(bad) is not int else bad} far outside the "
                                f"{size:,} tokens the file holds (at most {limit:,})")  # fmt: skip


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
