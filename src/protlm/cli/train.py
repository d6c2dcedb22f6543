"""`protlm pretrain`, `finetune`, `evaluate`, `longformer convert`, `plot`, `demo`: the training commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from protlm.cli.options import DeviceOpt, SequencesOpt, config_command, option
from protlm.io.structured import read_json
from protlm.tasks.config import FinetuneConfig
from protlm.train.config import PretrainConfig

longformer_app = typer.Typer(help="Long inputs: Longformer models from trained RoBERTa.", no_args_is_help=True)


def _log(msg: str) -> None:
    typer.echo(msg, err=True)


def _pretrain(cfg: PretrainConfig) -> None:
    """Masked-LM pre-training on single proteins and label-agnostic binding / non-binding pairs: a fresh
    model from a preset, or continued pre-training of a pre-trained one (ESM-2, ProtBERT, RoBERTa; dir or Hub id)."""
    from protlm.train.pretrain import pretrain

    pretrain(cfg, log=_log)


def _finetune(cfg: FinetuneConfig) -> None:
    """Fine-tune a pre-trained model (or the scratch / composition references) on a downstream task."""
    from protlm.tasks.finetune import finetune

    finetune(cfg, log=_log)
    typer.echo(f"results: {Path(cfg.out) / 'summary.json'}")


pretrain_cmd = config_command(PretrainConfig, _pretrain)
finetune_cmd = config_command(FinetuneConfig, _finetune)


def evaluate_cmd(
    model: option("model", Path, note="A fine-tuned model/ (OUT/seed-K/model of protlm finetune)."),
    split: option(
        "split", list[str] | None, note="Split(s) to score, repeatable (default: dev and every test split)."
    ) = None,  # fmt: skip
    data: option("data", str | None, note="Default: the data the model was trained on.") = None,
    background: option("background", str | None) = None,
    sequences: SequencesOpt = None,
    out: option(
        "out",
        Path | None,
        note="a new directory (default: MODEL/../evaluate-DATA-SPLITS; the fine-tune's "
        "own eval/ is never written over).",
    ) = None,
    device: DeviceOpt = "auto",
) -> None:
    """Score a fine-tuned model: results.json with every metric and the task kind's plots and predictions. --data FILE
    is scored whole (split `all`) unless --split names splits; --data scl2205:heldout takes SCL2205's official split."""
    from protlm.device import resolve_device
    from protlm.tasks.evaluate import evaluate_model, evaluation, new_output, refuse_overwrite

    resolve_device(device)  # first: a device this machine lacks is named before anything is read
    request = evaluation(model, data, split, background, sequences)
    request.data.require(request.splits)
    target = out or new_output(model, request.name)
    refuse_overwrite(target, model)
    typer.echo(request.summary(), err=True)
    evaluate_model(model, request.splits, target, request.data, log=lambda msg: typer.echo(msg, err=True),
                   device=device, extra={"data": request.data.source, "records": request.records()})  # fmt: skip
    typer.echo(f"results: {target / 'results.json'}")


@longformer_app.command("convert")
def longformer_convert(
    source: Annotated[Path, typer.Option("--from", help="A trained RoBERTa masked-LM dir (protlm pretrain model/).")],
    out: option("out", Path, note="a directory: LongformerForMaskedLM + tokenizer."),
    max_tokens: option("max_tokens", int, note="Of the converted model.", aliases=("--max-length",)) = 2048,
    window: Annotated[int, typer.Option(help="Sliding attention window in tokens (even).")] = 512,
    global_separators: Annotated[
        bool, typer.Option("--global-separators", help="Global attention on every </s> too (pairs, assemblies).")
    ] = False,
    attention: Annotated[
        str,
        typer.Option(
            help="longformer (sliding window), dense (RoBERTa, positions extended, full SDPA attention) or auto "
            "(dense where the window would cover every input anyway, as it is faster)."
        ),
    ] = "longformer",
) -> None:
    """Long-input model from a trained RoBERTa: positions tiled, local and global attention copied."""
    from protlm.models.longformer import INFO_FILE, convert_roberta_to_longformer

    path = convert_roberta_to_longformer(source, out, max_tokens, window, global_separators, attention)
    kind = read_json(path / INFO_FILE)["attention"]
    typer.echo(
        f"{kind} model ({max_tokens} tokens{', window ' + str(window) if kind == 'longformer' else ''}) written to {path}"
    )


def plot_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory with metrics.jsonl.")],
    out: option("out", Path | None, note="a PNG (default RUN_DIR/loss.png).") = None,
) -> None:
    """Plot training and held-out loss / perplexity of a run."""
    from protlm.train.metrics import plot_run

    typer.echo(f"loss curve written to {plot_run(run_dir, out)}")


def demo(
    out: option("out", Path, note="a directory for everything the demo writes.") = Path("runs/demo"),
    quick: Annotated[
        bool,
        typer.Option(
            help="Smoke run: 20 pre-training and 10 fine-tuning steps (about 2 min); "
            "checks an install, the numbers mean nothing."
        ),
    ] = False,
) -> None:
    """End-to-end demo on built-in data (no download): tokenizer, pre-training, localization fine-tuning."""
    from protlm.demo import run_demo

    run_demo(out, echo=typer.echo, quick=quick)
