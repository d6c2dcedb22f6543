"""The JSON files of an HF model or tokenizer directory, read with one-line errors, and the rule that
such a directory never brings its own code.

A `config.json` or `tokenizer_config.json` with an `auto_map` names Python files in the directory (or
on the Hub) that transformers would import if asked to trust them. protlm never does: such a
directory is refused before any HF loader opens it, and every loader also passes
`trust_remote_code=False`, so an interactive "run the custom code? [y/N]" prompt cannot appear.
"""

from __future__ import annotations

import json
from pathlib import Path

from protlm.errors import InputError, ProtlmError

# Files whose `auto_map` transformers follows (configs, tokenizers, processors).
CODE_BEARING = ("config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json")


def read_json_object(path: str | Path) -> dict:
    """A JSON file holding an object; InputError naming the file and line otherwise."""
    path = Path(path)
    try:
        value = json.loads(path.read_bytes())
    except json.JSONDecodeError as e:
        raise InputError(path, f"invalid JSON ({e.msg})", line=e.lineno) from None
    except UnicodeDecodeError:
        raise InputError(path, "invalid JSON (not UTF-8 text)") from None
    except OSError as e:
        raise InputError(path, f"cannot read ({e.strerror or e})") from None
    if not isinstance(value, dict):
        raise InputError(path, f"expected a JSON object, found a {type(value).__name__}")
    return value


def refuse_remote_code(directory: str | Path) -> None:
    """ProtlmError when any code-bearing JSON file of `directory` has an `auto_map` (custom code)."""
    directory = Path(directory)
    for name in CODE_BEARING:
        f = directory / name
        if f.is_file() and "auto_map" in read_json_object(f):
            raise ProtlmError(
                f"{f}: 'auto_map' names custom Python code; protlm never runs code from a model directory "
                "(trust_remote_code=False). Use a model whose architecture transformers ships, or remove 'auto_map'"
            )
