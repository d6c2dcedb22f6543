"""`protlm` command line: thin subcommands over the library.

Each command parses options, calls one library function and prints where its outputs went.
User errors (`ProtlmError`) print one line `protlm: error: ...` and exit with status 2.
Commands live by theme in `data.py`, `train.py`, `infer.py` and `attention.py` and are registered here,
explicitly.
"""

from __future__ import annotations

import typer

from protlm.cli import attention, data, infer, train
from protlm.errors import ProtlmError

app = typer.Typer(
    help="Protein language models: BPE tokenizers, masked-LM pre-training on proteins and binding pairs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data.tokenizer_app, name="tokenizer")
app.add_typer(data.pairs_app, name="pairs")
app.add_typer(train.longformer_app, name="longformer")
app.add_typer(attention.attention_app, name="attention")
app.add_typer(attention.contacts_app, name="contacts")
app.command("pretrain")(train.pretrain_cmd)
app.command("finetune")(train.finetune_cmd)
app.command("evaluate")(train.evaluate_cmd)
app.command("embed")(infer.embed_cmd)
app.command("predict")(infer.predict_cmd)
app.command("fill")(infer.fill_cmd)
app.command("plot")(train.plot_cmd)
app.command("demo")(train.demo)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning user errors into one line and exit status 2."""
    try:
        app(args=argv, prog_name="protlm", standalone_mode=True)
    except ProtlmError as e:
        typer.echo(f"protlm: error: {e}", err=True)
        raise SystemExit(2) from None
