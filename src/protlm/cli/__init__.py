"""`protlm` command line: thin subcommands over the library.

Each command parses options, calls one library function and prints where its outputs went.
User errors (`ProtlmError`) print one line `protlm: error: ...` and exit with status 2.
Commands live by theme in `data.py`, `train.py`, `infer.py`, `attention.py` and `variants.py` and are registered here,
explicitly.
"""

from __future__ import annotations

import shlex
import sys
import traceback

import typer

from protlm.cli import attention, corpus, data, infer, train, variants
from protlm.errors import ProtlmError, Stopped
from protlm.io import tokenizer_json
from protlm.io.tokenizer_json import is_rust_panic, panic_message

app = typer.Typer(
    help="Protein language models: BPE tokenizers, masked-LM pre-training on proteins and binding pairs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data.tokenizer_app, name="tokenizer")
app.add_typer(data.pairs_app, name="pairs")
app.add_typer(corpus.corpus_app, name="corpus")
app.add_typer(train.longformer_app, name="longformer")
app.add_typer(attention.attention_app, name="attention")
app.add_typer(attention.contacts_app, name="contacts")
app.add_typer(variants.variants_app, name="variants")
app.command("pretrain")(train.pretrain_cmd)
app.command("finetune")(train.finetune_cmd)
app.command("evaluate")(train.evaluate_cmd)
app.command("embed")(infer.embed_cmd)
app.command("predict")(infer.predict_cmd)
app.command("fill")(infer.fill_cmd)
app.command("plot")(train.plot_cmd)
app.command("demo")(train.demo)


@app.command("doctor")
def doctor() -> None:
    """The install check: versions, the device, bf16 support measured, and the cache locations."""
    from protlm.doctor import report

    rows = report()
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        typer.echo(f"{label:<{width}}  {value}")


@app.callback()
def _global_options(
    debug: bool = typer.Option(False, "--debug", help="Show the Python traceback of an unexpected (internal) error."),
) -> None:
    """Protein language models: BPE tokenizers, masked-LM pre-training on proteins and binding pairs."""


def _command_words(args: list[str]) -> list[str]:
    """The subcommand path in `args` (`['pairs', 'build-string']`), for naming it in errors."""
    group, words = typer.main.get_command(app), []
    for a in args:
        if a.startswith("-"):
            continue
        if a not in getattr(group, "commands", {}):
            break
        words.append(a)
        group = group.commands[a]
    return words


MAX_MESSAGE = 2000  # characters of one error line


def one_line(message: str) -> str:
    """`message` as one line of bounded length: control characters (a newline in a file's value, say)
    written as escapes, the middle of an overlong message cut."""
    text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in message)
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE // 2] + " ... " + text[-MAX_MESSAGE // 2 :]
    return text


def _internal_error(args: list[str], err: BaseException, debug: bool) -> None:
    """Last resort: one line naming the command, its arguments and the error; the traceback with --debug."""
    if debug:
        traceback.print_exception(err)
    where = " ".join(_command_words(args)) or "protlm"
    given = shlex.join(a for a in args if a != "--debug")
    given = given if len(given) <= 240 else given[:237] + "..."
    reason = " ".join(str(err).split())[:300] or "no message"
    hint = "" if debug else "; re-run with --debug for the traceback"
    typer.echo(f"protlm: error: internal error in '{where}' ({given}): {type(err).__name__}: {reason}{hint}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point. Exit status: 0 done, 2 bad input or usage (one line), 1 internal error (one line, the
    traceback only with --debug), 130 interrupted, 75 training stopped by SIGTERM / SIGINT with a checkpoint saved."""
    args = sys.argv[1:] if argv is None else list(argv)
    words = _command_words(args)
    debug = "--debug" in args[: args.index(words[0])] if words else "--debug" in args
    try:
        code = app(args=args, prog_name="protlm", standalone_mode=False)
    except ProtlmError as e:
        typer.echo(f"protlm: error: {one_line(str(e))}", err=True)
        raise SystemExit(2) from None
    except typer.Abort as e:  # typer turns EOFError (a truncated gzip, say) into Abort
        if isinstance(e.__cause__, EOFError):
            _internal_error(args, e.__cause__, debug)
            raise SystemExit(1) from None
        typer.echo("protlm: interrupted", err=True)
        raise SystemExit(130) from None
    except typer.TyperException as e:  # usage errors: the parser's own message, status 2
        e.show()
        raise SystemExit(e.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("protlm: interrupted", err=True)
        raise SystemExit(130) from None
    except Stopped as e:  # SIGTERM / SIGINT in training: the step finished and a checkpoint saved
        typer.echo(f"protlm: {one_line(str(e))}", err=True)
        raise SystemExit(Stopped.EXIT_STATUS) from None
    except (FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError) as e:
        # a path the user gave that cannot be written or read as asked (an --out under a regular file, a
        # directory where a file goes): their input, named in one line
        typer.echo(f"protlm: error: {one_line(str(e.filename or ''))}: {e.strerror or e}", err=True)
        raise SystemExit(2) from None
    except Exception as e:  # noqa: BLE001 - the last resort: never a traceback without --debug
        if type(e).__name__ == "OutOfMemoryError" and type(e).__module__.startswith("torch"):
            first = str(e).strip().splitlines()[0] if str(e).strip() else "no detail"
            typer.echo(f"protlm: error: the device ran out of memory ({one_line(first)[:300]}): lower --tokens-per-batch "
                       "(or --max-tokens)", err=True)  # fmt: skip
            raise SystemExit(2) from None
        _internal_error(args, e, debug)
        raise SystemExit(1) from None
    except BaseException as e:  # a Rust panic in `tokenizers` (pyo3's PanicException) is no Exception
        if not is_rust_panic(e):
            raise
        if debug:
            traceback.print_exception(e)
        where = tokenizer_json.last_guarded or "tokenizer"
        typer.echo(f"protlm: error: {where}: the tokenizer failed (Rust panic: {panic_message(e)})", err=True)
        raise SystemExit(2) from None
    raise SystemExit(code if isinstance(code, int) else 0)
