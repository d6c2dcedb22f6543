"""Settings declared once: every config field is exactly one flag with one help, shared options have one
help across all commands, and flag > recipe > default holds, for booleans too."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import fields

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from protlm.cli import app
from protlm.cli.options import config_command
from protlm.settings import SHARED, help_text
from protlm.tasks.config import FinetuneConfig
from protlm.train.config import PretrainConfig, TrainConfig

CONFIG_COMMANDS = {"pretrain": PretrainConfig, "finetune": FinetuneConfig}


def _commands():
    """(command words, click command) for every leaf command of the CLI."""
    out = []

    def walk(cmd, path):
        if getattr(cmd, "commands", None):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
        if cmd.params and path:
            out.append((" ".join(path), cmd))

    walk(typer.main.get_command(app), [])
    return out


def _options(cmd):
    return [p for p in cmd.params if p.param_type_name == "option"]


@pytest.mark.parametrize("name,cls", CONFIG_COMMANDS.items())
def test_every_config_field_is_one_flag_with_its_help(name, cls):
    cmd = dict(_commands())[name]
    by_param = defaultdict(list)
    for p in _options(cmd):
        by_param[p.name].append(p)
    off = {f"no_{f.name}" for f in fields(cls) if f.metadata.get("off")}
    assert set(by_param) == {f.name for f in fields(cls)} | {"config"} | off
    for f in fields(cls):
        [param] = by_param[f.name]
        assert param.opts[0] == "--" + f.name.replace("_", "-")
        assert param.help.startswith(help_text(f.name, f.metadata.get("help"), f.metadata.get("note")))
        assert param.default is None  # unset: the recipe's value stands


@pytest.mark.parametrize("cls", [PretrainConfig, FinetuneConfig])
def test_a_field_either_declares_its_help_or_takes_the_shared_one(cls):
    for f in fields(cls):
        own = f.metadata.get("help")
        assert (own is None) == (f.name in SHARED), f"{cls.__name__}.{f.name}: help declared twice or not at all"


def test_shared_options_have_one_help_across_commands():
    uses = defaultdict(list)
    for words, cmd in _commands():
        for p in _options(cmd):
            uses[p.opts[0]].append((words, p.help or ""))
    loop_flags = {"--" + f.name.replace("_", "-") for f in fields(TrainConfig)} | {"--config"}
    for flag, where in uses.items():
        name = flag[2:].replace("-", "_")
        if name in SHARED:
            for words, text in where:
                assert text.startswith(SHARED[name]), f"{words} {flag}: its help restates the shared one"
        elif len(where) > 1:  # a non-shared flag in several commands must be the loop's one field
            assert flag in loop_flags, f"{flag} is declared in {[w for w, _ in where]}: declare it in SHARED"


def _captured(cls, args: list[str]):
    seen = []
    probe = typer.Typer()
    probe.command("run")(config_command(cls, seen.append))
    probe.command("other")(lambda: None)  # two commands: typer keeps the subcommand name
    result = CliRunner().invoke(probe, ["run", *args])
    assert result.exit_code == 0, result.output
    return seen[0]


def test_flag_beats_recipe_beats_default_for_booleans_too(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("tokenizer: tok\nmax_steps: 3\nresume: true\ngradient_checkpointing: true\nlr: 0.1\n")
    base = ["--config", str(recipe)]

    cfg = _captured(PretrainConfig, base)
    assert (cfg.resume, cfg.gradient_checkpointing, cfg.lr, cfg.seed) == (True, True, 0.1, 0)  # recipe > default

    cfg = _captured(PretrainConfig, [*base, "--no-resume", "--lr", "0.2"])
    assert (cfg.resume, cfg.gradient_checkpointing, cfg.lr) == (False, True, 0.2)  # flag > recipe, False too

    cfg = _captured(PretrainConfig, ["--tokenizer", "tok", "--max-steps", "3", "--resume"])
    assert (cfg.resume, cfg.gradient_checkpointing, cfg.lr) == (True, False, 5e-4)  # flag > default


def test_parsed_and_off_flags(tmp_path):
    cfg = _captured(PretrainConfig, ["--tokenizer", "t", "--max-steps", "1", "--pairs", "builtin", "--no-corpus",
                                     "--mix", "singles=0,binding=2"])  # fmt: skip
    assert cfg.corpus == "" and cfg.mix == {"singles": 0.0, "binding": 2.0}
    cfg = _captured(FinetuneConfig, ["--task", "ss3", "--model", "baseline", "--seeds", "3,4"])
    assert cfg.seeds == [3, 4] and cfg.max_epochs is not None  # the task's budget


def test_finetune_without_task_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(app, ["finetune", "--model", "baseline", "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and "--task is required" in str(result.exception or result.output)
