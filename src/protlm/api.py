"""The Python API: `protlm.load(DIR)` and a model object with `embed`, `predict`, `fill` and `score_variants`.

>>> import protlm
>>> model = protlm.load("runs/demo/pretrain/model")                    # doctest: +SKIP
>>> vecs = model.embed({"P1": "MKTAYIAKQR", "P2": "MSQQ"}, pool="mean")  # doctest: +SKIP
>>> vecs["P1"]["mean"].shape                                            # doctest: +SKIP
(128,)
>>> protlm.load("runs/loc/seed-0/model").predict({"P1": "MKTAYIAKQR"})   # doctest: +SKIP

The CLI commands `protlm embed`, `protlm predict` and `protlm fill` are thin wrappers over these
methods: same batching, same long-protein windows, same outputs; `score_variants` runs the scorer of
`protlm variants score` (protlm.variants).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from protlm.device import resolve_device
from protlm.embed import Embedder, Embedding, EmbedOptions
from protlm.errors import ProtlmError
from protlm.io import ResiduePolicy, SeqRecord
from protlm.io.inference import CHAIN_SEP
from protlm.models.loading import TASK_FILE, open_model, window_tokens
from protlm.pairs.table import Pair
from protlm.tasks import get_task
from protlm.tasks.baseline import Baseline
from protlm.tasks.batches import build_taskset
from protlm.tasks.data import Example
from protlm.tasks.kinds import states
from protlm.tasks.predict import predict_logits

FILL_MASK = "<mask>"  # what `fill` takes for a masked residue, whatever the tokenizer's own mask token


@dataclass
class Prediction:
    """One prediction, as the task's kind gives it: a class and the class probabilities; one class per
    residue (residue tasks); the predicted label set and per-label probabilities (multi-label); a number
    (regression)."""

    id: str
    label: str | list[str] | float
    probabilities: np.ndarray  # (C,) or (length, C); the predicted number for a regression
    labels: tuple[str, ...]  # the label space, in the order of the probability columns

    @property
    def states(self) -> str:
        """Residue tasks: the per-residue labels as one string (e.g. 'CCHHHHEE' for ss3)."""
        return states(self.label if isinstance(self.label, list) else [self.label])


def _records(seqs, policy: ResiduePolicy = ResiduePolicy()) -> Iterator[SeqRecord]:
    """Accept {id: seq}, [seq, ...], [(id, seq), ...] or SeqRecords; sequences are validated."""
    if isinstance(seqs, str):
        raise ProtlmError("give a list or a dict of sequences, not one string")
    items = seqs.items() if isinstance(seqs, Mapping) else seqs
    for k, item in enumerate(items):
        if isinstance(item, SeqRecord):
            yield item
            continue
        rid, seq = (f"seq{k}", item) if isinstance(item, str) else item
        try:
            yield SeqRecord(str(rid), policy.clean(seq))
        except ValueError as e:
            raise ProtlmError(f"sequence {rid}: {e}") from None


class ProtLM:
    """A loaded model: a pre-trained masked LM (protlm's own, ESM-2, ProtBERT, RoBERTa; a directory or
    an HF Hub id), a fine-tuned task model, or a composition baseline."""

    def __init__(self, path: str | Path, device: str = "auto"):
        device = resolve_device(device)  # first: a device this machine lacks is named before any loading
        self.model_dir = open_model(path)
        self.path, self.info, self.device = self.model_dir.path, self.model_dir.task, device
        self.task_model = self.baseline = self._mlm = None
        self.tokenizer = self.encoder = None
        if self.model_dir.is_baseline:
            self.baseline = Baseline.load(self.path)
            return
        self.tokenizer = self.model_dir.tokenizer()
        self.config = self.model_dir.config()
        if self.model_dir.is_task_model:
            self.task_model = self.model_dir.task_model().to(device).eval()
            self.encoder = self.task_model.base_model
        else:
            self.encoder = self.model_dir.encoder().to(device).eval()

    # ------------------------------------------------------------------ embeddings

    def embedder(self, **options) -> Embedder:
        if self.encoder is None:
            raise ProtlmError(f"{self.path}: a composition baseline has no embeddings")
        if isinstance(options.get("pools"), str):
            options["pools"] = (options["pools"],)
        return Embedder(self.encoder, self.tokenizer, EmbedOptions(**options))

    def embed(self, seqs, pool: str | tuple[str, ...] = "mean", layers: tuple[int, ...] = (-1,), **options) -> dict:
        """{id: {output: array}} for the sequences; outputs are `mean`, `cls`, `residue` (length x hidden)."""
        pools = (pool,) if isinstance(pool, str) else tuple(pool)
        embedder = self.embedder(pools=pools, layers=tuple(layers), **options)
        return {e.id: e.vectors for e in embedder.embed(_records(seqs))}

    def iter_embed(self, records: Iterable[SeqRecord], **options) -> Iterator[Embedding]:
        """Streaming form of `embed` for large inputs (what `protlm embed` uses)."""
        return self.embedder(**options).embed(records)

    # ------------------------------------------------------------------ fine-tuned predictions

    @property
    def task(self):
        if self.info is None:
            raise ProtlmError(f"{self.path}: not a fine-tuned model (no {TASK_FILE}): use embed or fill")
        return get_task(self.info["task"])

    def predict(self, inputs, tokens_per_batch: int = 16384, batch_size: int = 64) -> list[Prediction]:
        """Predictions for sequences ({id: seq}, [(id, seq)], records) or, for pair / assembly tasks,
        [(id, seq_a, seq_b, ...)], {id: "A:B:C"}, records with ':'-joined chains or protlm `Pair`s.
        Long inputs are windowed (cropped for pairs / assemblies) as in evaluation."""
        kind, labels = self.task.kind, tuple(self.info["labels"])
        if kind.multi_part:
            items = inputs.items() if isinstance(inputs, Mapping) else inputs
            examples = [self._pair_example(p, k, kind.placeholder("", len(labels))) for k, p in enumerate(items)]
        else:
            examples = [Example(r.id, (r.seq,), kind.placeholder(r.seq, len(labels))) for r in _records(inputs)]
        if self.baseline is not None:
            _, out = self.baseline.predict_proba(examples)
            if kind.per_residue:
                bounds = np.cumsum([0] + [len(ex.parts[0]) for ex in examples])
                outputs = [out[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
            else:
                outputs = list(out)
        else:
            trained = (self.info.get("config") or {}).get("max_tokens")  # the windows it was trained on
            max_tokens = window_tokens(self.task_model.config, trained)
            ts = build_taskset(kind, examples, self.tokenizer, max_tokens)
            outputs = [kind.outputs(z) for z in predict_logits(self.task_model, ts, tokens_per_batch, batch_size)]
        return [Prediction(ex.id, kind.predicted(p, labels), p, labels)
                for ex, p in zip(examples, outputs, strict=True)]  # fmt: skip

    @staticmethod
    def _pair_example(item, k: int, label=0):
        """A pair / assembly input as an Example: a protlm `Pair`, (id, seq_a, seq_b, ...), or
        (id, "A:B:C") / a SeqRecord with chains joined by ':'."""
        if isinstance(item, Pair):
            return Example(f"{item.id_a}|{item.id_b}", (item.seq_a, item.seq_b), label)
        if isinstance(item, SeqRecord):
            rid, chains = item.id, item.seq.split(CHAIN_SEP)
        elif isinstance(item, str):
            rid, chains = f"input{k}", item.split(CHAIN_SEP)
        else:
            rid, *chains = item
            chains = chains[0].split(CHAIN_SEP) if len(chains) == 1 else chains
        try:
            return Example(str(rid), tuple(ResiduePolicy().clean(c) for c in chains), label)
        except ValueError as e:
            raise ProtlmError(f"input {rid}: {e}") from None

    # ------------------------------------------------------------------ masked-residue prediction

    def fill(self, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """Top-k tokens (residue strings) with probabilities for every mask in `text`: `<mask>` with any
        tokenizer (ProtBERT's `[MASK]` is accepted too), so one command line works with every backbone."""
        import torch

        if self.info is not None:
            raise ProtlmError(f"{self.path}: fill needs a pre-trained masked LM, not a fine-tuned model")
        if self._mlm is None:
            self._mlm = self.model_dir.masked_lm().to(self.device).eval()
        parts = [self.tokenizer.encode(p) if p else np.zeros(0, np.int64) for p in self._fill_pieces(text)]
        mask_id = np.array([self.tokenizer.mask_token_id])
        content = np.concatenate([x for k, p in enumerate(parts) for x in ((p,) if k == 0 else (mask_id, p))])
        ids = torch.from_numpy(self.tokenizer.assemble([content]))[None]
        with torch.inference_mode():
            logits = self._mlm(input_ids=ids.to(self.device), attention_mask=torch.ones_like(ids).to(self.device))
            logits = logits.logits[0].cpu()
        positions = (ids[0] == self.tokenizer.mask_token_id).nonzero().flatten().tolist()
        residue = torch.zeros(logits.shape[-1], dtype=torch.bool)  # the head may be wider than the vocabulary
        n = min(len(self.tokenizer), len(residue))
        residue[:n] = torch.from_numpy(self.tokenizer.residue_lengths[:n] > 0)
        top_k = min(top_k, int(residue.sum()))
        results = []
        for pos in positions:
            probs = torch.softmax(logits[pos].float(), -1)
            probs[~residue] = 0  # a residue position is filled with residue tokens only
            top = torch.topk(probs / probs.sum(), top_k)
            results.append(
                [(self.tokenizer.convert_ids_to_tokens(int(i)), float(p)) for p, i in zip(*top, strict=True)]
            )
        return results

    def _fill_pieces(self, text: str) -> list[str]:
        """The validated, upper-cased residues between the masks of `text`. The user writes `<mask>`
        whatever the model (the help and the docs say so); the tokenizer's own mask token (`[MASK]`
        for BERT-style vocabularies) means the same, so text copied from the model's card works too."""
        marks = {FILL_MASK, self.tokenizer.mask_token}
        pieces = re.split("|".join(re.escape(m) for m in sorted(marks, key=len, reverse=True)), text)
        if len(pieces) == 1:
            raise ProtlmError(f"no {FILL_MASK} in the input: write e.g. MKT{FILL_MASK}LLV")
        try:
            return [ResiduePolicy().clean(p) if p else "" for p in pieces]
        except ValueError as e:
            raise ProtlmError(f"fill input: {e}") from None

    # ------------------------------------------------------------------ zero-shot variant effects

    def score_variants(self, wt: str, mutants, strategy: str = "masked-marginal", **options) -> np.ndarray:
        """(n,) scores of substitutions of `wt` (`["A23C", "A23C:G45T"]`, 1-based), higher = predicted fitter;
        `strategy` masked-marginal, wt-marginal, pll or span; `options` of `variants.ScoreOptions`
        (context, tokens_per_batch, max_tokens, precision). What `protlm variants score` runs."""
        from protlm.variants.assay import clean_wt
        from protlm.variants.scorer import ScoreOptions, VariantScorer, parse_variants

        if self.info is not None:
            raise ProtlmError(f"{self.path}: variant scores need a pre-trained masked LM, not a fine-tuned model")
        if self._mlm is None:
            self._mlm = self.model_dir.masked_lm().to(self.device).eval()
        wt = clean_wt(wt, "wild type")
        scorer = VariantScorer(self._mlm, self.tokenizer, ScoreOptions(strategy=strategy, **options))
        return scorer.score(wt, parse_variants(wt, mutants))


def load(path: str | Path, device: str = "auto") -> ProtLM:
    """Load a model directory (`protlm pretrain` output, a fine-tuned `model/`, any ESM-2 / ProtBERT /
    RoBERTa directory) or an HF Hub id such as `facebook/esm2_t6_8M_UR50D`, onto `device` (auto: the GPU
    when there is one; cpu, cuda, cuda:N)."""
    return ProtLM(path, device)
