"""`protlm finetune` settings: the loop's (`train/config.TrainConfig`) and the task's, one flag each."""

from __future__ import annotations

from dataclasses import dataclass

from protlm.errors import ProtlmError
from protlm.settings import setting
from protlm.train.config import TrainConfig

NO_MONITORING = 10**9
TASK_TOKENS_PER_BATCH = 8192


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ProtlmError(f"--seeds {text!r}: use e.g. 0,1,2") from None


@dataclass
class FinetuneConfig(TrainConfig):
    """`protlm finetune` options on top of the loop's (budget default: the task's epochs)."""

    out: str = setting("runs/finetune", note="Output dir: seed-K/ runs (model/, eval/) and summary.json.")
    task: str = setting("", "localization, solubility, remote-homology, family, ppi, tcr, assembly, ss3, ss8 (docs/finetune.md).")  # fmt: skip
    model: str = setting("", note="Or scratch:DIR (its architecture and tokenizer, random init), scratch (with --tokenizer, --preset) or baseline (amino-acid + dipeptide composition, logistic regression).")  # fmt: skip
    data: str | None = setting(None, note="Default: the built-in data, if any.")
    background: str | None = setting(None)
    sequences: str | None = setting(None, note="assembly: the proteins a 'members' column names (';'-joined ids).")  # fmt: skip
    tokenizer: str | None = setting(None, note="For --model scratch.")
    preset: str = setting("tiny", "Model preset for --model scratch.")
    freeze: bool = setting(False, "Frozen encoder + light head (mean pooling).")
    pooling: str | None = setting(None, "cls or mean (default cls; mean with --freeze).")
    weighted_loss: bool = setting(False, "Inverse-frequency class weights in the loss.")
    batch_size: int | None = setting(None, "Sequences per batch (default: the task's).")
    max_tokens: int | None = setting(None, note="A window (default: the model's).")
    train_limit: int | None = setting(None, "Use at most this many training examples (seeded subsample).")
    split_seed: int = setting(0, "Seed of splits made by protlm (not of training).")
    seeds: list[int] = setting(factory=lambda: [0], help="Training seeds, e.g. 0,1,2: results as mean ± std.", parse=lambda text: parse_seeds(text))  # fmt: skip
    resume: bool = setting(False, "Continue each seed from its newest checkpoint.")
    lr: float | None = setting(None, "Peak learning rate (AdamW; default: the task's).")
    max_epochs: float | None = setting(None, "Stop after this many epochs (default: the task's).")
    warmup_steps: int = setting(0, "Linear warmup steps (0: --warmup-ratio), then linear decay.")
    warmup_ratio: float = setting(0.06, "Warmup as a share of the training steps, when --warmup-steps is 0.")
    eval_every: int = setting(NO_MONITORING, "Dev evaluation every N steps (default: after training only).")
    save_every: int = setting(NO_MONITORING, "Checkpoint every N steps (default: at the end).")
    strict: bool = setting(False)
    cache_dir: str | None = setting(None)

    def validate(self) -> None:
        if not self.task:
            raise ProtlmError("--task is required, e.g. localization (docs/finetune.md lists the tasks)")
        from protlm.tasks.table import get_task

        spec = get_task(self.task)
        if self.lr is None:
            self.lr = spec.lr
        if self.max_steps is None and self.max_epochs is None and self.max_time is None:
            self.max_epochs = spec.epochs
        super().validate()
        if self.tokens_per_batch == "auto":  # tasks are not probed on a GPU yet: the CPU's measured budget
            self.tokens_per_batch = TASK_TOKENS_PER_BATCH
        if self.tokens_per_step is not None:
            self.grad_accum = max(1, -(-self.tokens_per_step // self.tokens_per_batch))
        if not self.model:
            raise ProtlmError("--model is required: a pre-trained model directory, scratch[:DIR] or baseline")
        if self.pooling not in (None, "cls", "mean"):
            raise ProtlmError(f"--pooling must be cls or mean, got {self.pooling!r}")
        if not self.seeds:
            raise ProtlmError("--seeds needs at least one seed, e.g. 0,1,2")
