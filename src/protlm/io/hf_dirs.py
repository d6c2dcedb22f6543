"""The JSON files of an HF model or tokenizer directory, read with one-line errors, and the rule that
such a directory never brings its own code.

A `config.json` or `tokenizer_config.json` with an `auto_map` names Python files in the directory (or
on the Hub) that transformers would import if asked to trust them. protlm never does: such a
directory is refused before any HF loader opens it, and every loader also passes
`trust_remote_code=False`, so an interactive "run the custom code? [y/N]" prompt cannot appear.
"""

from __future__ import annotations

from pathlib import Path

from protlm.io.structured import read_json_object, refuse_auto_map

__all__ = ["CODE_BEARING", "read_json_object", "refuse_remote_code"]

# Files whose `auto_map` transformers follows (configs, tokenizers, processors).
CODE_BEARING = ("config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json")


def refuse_remote_code(directory: str | Path) -> None:
    """ProtlmError when any code-bearing JSON file of `directory` has an `auto_map` (custom code)."""
    directory = Path(directory)
    for name in CODE_BEARING:
        f = directory / name
        if f.is_file():
            refuse_auto_map(read_json_object(f), f)
