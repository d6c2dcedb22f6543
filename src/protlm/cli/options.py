"""Flags from declarations: shared options (`protlm.settings.SHARED`) and config dataclasses.

- `option(name, ...)` is the typer type of a shared option (`--model`, `--out`, `--strict` ...): one
  flag name and one help for every command; `note` adds what this command accepts.
- `config_command(cls, run)` is a command whose flags are generated from the fields of the config
  dataclass `cls`: one flag per field, typed from the field, its help and default from the field.
  Every flag defaults to unset, so precedence is flag > `--config` recipe > the field's default, for
  booleans too (`--resume/--no-resume`).

tyro and jsonargparse build argparse command lines from dataclasses in the same way; protlm's commands
are typer (click) commands, so a short generator over typer keeps one parser, one help layout and one
usage-error path (exit 2) for every command.
"""

from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Annotated, Any

import typer

from protlm.settings import SHARED, help_text

_KW = inspect.Parameter.KEYWORD_ONLY


def option(name: str, kind: Any = str, *, note: str | None = None, aliases: tuple[str, ...] = (), **extra):
    """`Annotated[kind, typer.Option(...)]` of the shared option `name`: flag --name-with-dashes (a bool
    is an on-switch), then any `aliases` (older names that still work)."""
    if name not in SHARED:
        raise KeyError(f"{name!r} is not a shared option")
    decls = (f"--{name.replace('_', '-')}", *aliases)
    return Annotated[kind, typer.Option(*decls, help=help_text(name, note=note), **extra)]


# the shared options in the types most commands take them
CorpusOpt = option("corpus")
IdColOpt = option("id_col")
SeqColOpt = option("seq_col")
StrictOpt = option("strict", bool)
MaxLenOpt = option("max_length", int | None)
DeviceOpt = option("device")
TokenizerOpt = option("tokenizer", Path)
SequencesOpt = option("sequences", str | None, note="assembly: FASTA / table of the proteins a 'members' column names (';'-joined ids).")  # fmt: skip
SplitOpt = option("split", str, note="strict (protein-disjoint train / dev / test) or random.")
NegOpt = option("negatives_per_positive", float)
PairSeedOpt = option("seed", int, note="Of the split and the negative sampling.")
GroupsOpt = option("groups", Path | None)
WorkersOpt = option("workers", int)
MemoryOpt = option("memory_limit", str)


def residue_policy(strict: bool, max_length: int | None):
    from protlm.io import ResiduePolicy

    return ResiduePolicy(strict=strict, max_length=max_length)


# ---------------------------------------------------------------- flags from a config dataclass


def _flag_type(kind: Any, parse) -> Any:
    """The flag's value type for a field type: optional, so that an unset flag is None."""
    if parse is not None:
        return str | None
    args = [a for a in typing.get_args(kind) if a is not type(None)] or [kind]
    return args[0] | None


def _default_note(f) -> str:
    default = f.default_factory() if f.default_factory is not MISSING else f.default
    if default is None or default == "" or isinstance(default, bool):
        return ""
    if isinstance(default, dict):
        default = ",".join(f"{k}={v:g}" for k, v in default.items())
    elif isinstance(default, list):
        default = ",".join(map(str, default))
    return f" (default: {default})"


def config_flags(cls) -> list[inspect.Parameter]:
    """One keyword parameter per field of `cls`, plus each field's `off` switch: the typed flags."""
    hints = typing.get_type_hints(cls)
    params = []
    for f in fields(cls):
        meta = f.metadata
        kind = _flag_type(hints[f.name], meta.get("parse"))
        flag = f"--{f.name.replace('_', '-')}"
        decls = (f"{flag}/--no-{flag[2:]}",) if kind == bool | None else (flag,)
        text = help_text(f.name, meta.get("help"), meta.get("note")) + _default_note(f)
        params.append(inspect.Parameter(f.name, _KW, default=None, annotation=Annotated[kind, typer.Option(*decls, help=text)]))  # fmt: skip
        if meta.get("off"):
            off = Annotated[bool, typer.Option(meta["off"], help=f"Without {flag} (off).")]
            params.append(inspect.Parameter(_off_name(f.name), _KW, default=False, annotation=off))
    return params


def _off_name(name: str) -> str:
    return f"no_{name}"


def overrides(cls, values: dict) -> dict:
    """Config overrides from generated flags: the flags that were given, parsed; an `off` switch as ""."""
    out = {}
    for f in fields(cls):
        value, parse = values.get(f.name), f.metadata.get("parse")
        if values.get(_off_name(f.name)):
            value = ""
        elif value is not None and parse is not None:
            value = parse(value)
        if value is not None:
            out[f.name] = value
    return out


def config_command(cls, run):
    """A typer command whose flags are `--config` and one per field of `cls`; it loads the recipe, lays
    the given flags over it, validates, and calls `run(cfg)`. Help: `run`'s docstring."""
    from protlm.train.config import load_config

    @functools.wraps(run)
    def command(**values):
        recipe = values.pop("config", None)
        return run(load_config(cls, recipe, overrides(cls, values)))

    recipe = inspect.Parameter("config", _KW, default=None, annotation=option("config", Path | None))
    command.__signature__ = inspect.Signature([recipe, *config_flags(cls)])
    del command.__wrapped__  # typer reads __signature__, not run's
    command.__annotations__ = {}
    return command
