"""JSON and YAML files read with one-line errors and bounded cost: the one home of `json.loads` and
`yaml` loading in protlm.

- **No expansion bombs.** YAML aliases (`*name`) are refused: a 640-byte recipe of nested aliases
  expands to billions of nodes when dumped or walked. protlm's own recipes and presets never use them.
- **Bounded size.** Recipes and presets are at most `MAX_YAML_BYTES`; JSON files protlm reads as
  configuration at most `MAX_JSON_BYTES` (store indexes, which grow with the corpus, give no bound).
- **Deep nesting is an input error.** A document nested past the parser's recursion limit is one line
  naming the file (exit 2), not an internal error.
- **Custom code is named and refused** (`refuse_auto_map`): HF's `auto_map`, in any mapping at any
  depth, names Python that transformers would import.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from protlm.errors import InputError, ProtlmError

MAX_YAML_BYTES = 1 << 20  # a recipe or preset: a few hundred bytes in practice
MAX_JSON_BYTES = 256 << 20  # a config / tokenizer / task file (a 10k-merge BPE tokenizer.json is ~0.5 MB)


def _read_bytes(path: Path, limit: int | None) -> bytes:
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1) if limit else fh.read()
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except OSError as e:
        raise InputError(path, f"cannot read ({e.strerror or e})") from None
    if limit and len(data) > limit:
        raise InputError(path, f"larger than {limit >> 20} MiB: not a file protlm reads as configuration")
    return data


def parse_json(text: str | bytes, path: str | Path, line: int | None = None) -> Any:
    """`json.loads(text)`; InputError naming `path` (and the line) when it is not JSON or too deeply nested."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(path, f"invalid JSON ({e.msg})", line=line or e.lineno) from None
    except UnicodeDecodeError:
        raise InputError(path, "invalid JSON (not UTF-8 text)", line=line) from None
    except RecursionError:
        raise InputError(path, "invalid JSON (nested too deeply)", line=line) from None
    except ValueError as e:  # e.g. an integer past Python's 4,300-digit limit
        raise InputError(path, f"invalid JSON ({str(e)[:120]})", line=line) from None


def read_json(path: str | Path, limit: int | None = MAX_JSON_BYTES) -> Any:
    """The JSON value in `path` (at most `limit` bytes; None: no bound)."""
    path = Path(path)
    return parse_json(_read_bytes(path, limit), path)


def read_json_object(path: str | Path, limit: int | None = MAX_JSON_BYTES) -> dict:
    """A JSON file holding an object; InputError naming the file and line otherwise."""
    value = read_json(path, limit)
    if not isinstance(value, dict):
        raise InputError(path, f"expected a JSON object, found a {type(value).__name__}")
    return value


class _NoAliasLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses aliases, so a document cannot expand beyond its own size."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed", mark)
        return super().compose_node(parent, index)


def read_yaml(path: str | Path, text: str | None = None) -> Any:
    """The YAML value of a recipe or preset (`text`, or the file's at most `MAX_YAML_BYTES`): safe tags
    only, no aliases; InputError naming the file and line otherwise."""
    path = Path(path)
    if text is None:
        data = _read_bytes(path, MAX_YAML_BYTES)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(path, "invalid YAML (not UTF-8 text)") from None
    loader = _NoAliasLoader(text)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        raise InputError(path, f"invalid YAML ({e.problem or e.context})", line=line) from None
    except yaml.YAMLError as e:
        raise InputError(path, f"invalid YAML ({str(e).splitlines()[0][:160]})") from None
    except RecursionError:
        raise InputError(path, "invalid YAML (nested too deeply)") from None
    except ValueError as e:  # a value the constructor cannot build: a 5,000-digit integer, 2020-99-99
        raise InputError(path, f"invalid YAML ({str(e)[:120]})") from None
    finally:
        loader.dispose()


def refuse_auto_map(value: Any, source: str | Path) -> None:
    """ProtlmError when any mapping inside `value` (walked without recursion) has an `auto_map` key:
    HF would import the Python it names. Used for presets, recipes and every HF JSON file."""
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            if "auto_map" in item:
                raise ProtlmError(
                    f"{source}: 'auto_map' names custom Python code; protlm never runs code from a model, "
                    "preset or adapter (trust_remote_code=False). Use an architecture transformers ships, "
                    "or remove 'auto_map'"
                )
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
