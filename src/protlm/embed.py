"""Embeddings of protein sequences: pooled vectors and one vector per residue, any length.

Pipeline per chunk of records (streaming, so memory does not grow with the input):
tokenize (Rust, batched) -> windows over proteins longer than the model (stride configurable)
-> length-sorted token-budget batches -> encoder under `torch.inference_mode` (SDPA; bf16 only
where it is faster and the hardware has it) -> token states averaged over the windows covering
them -> per residue (each residue takes the state of the BPE token that contains it) -> pools.

Pools: `mean` = mean over residues of the residue vectors (a token covering k residues counts k
times), `cls` = the `<s>` state (averaged over windows), `residue` = (length, hidden) per protein.
Padding is masked and every window is encoded on its own, so a protein's vectors do not depend
on the other proteins of its batch. A record whose sequence joins chains with `:` is an assembly,
encoded `<s> A </s></s> B </s>...` (residue vectors of all chains in order; pools over all).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from protlm.batching import pad_batch, plan_batches, windows
from protlm.device import autocast, inference_dtype, precision_name
from protlm.errors import ProtlmError
from protlm.heap import HeapTrim
from protlm.io import SeqRecord
from protlm.io.inference import CHAIN_SEP
from protlm.models.kernels import exact_gelu
from protlm.models.loading import window_tokens
from protlm.models.longformer import encoder_kwargs

POOLS = ("mean", "cls", "residue")


@dataclass(frozen=True)
class EmbedOptions:
    pools: tuple[str, ...] = ("mean",)
    layers: tuple[int, ...] = (-1,)  # hidden-state indices: 0 = embeddings, -1 = last layer
    tokens_per_batch: int = 16384
    stride: int | None = None  # tokens between window starts (default: half a window)
    max_tokens: int | None = None  # window length incl. specials (default: the model's)
    chunk: int = 2048  # records encoded per chunk (bounds memory)
    precision: str = "auto"  # auto | fp32 | bf16

    def validate(self, n_hidden: int) -> None:
        bad = [p for p in self.pools if p not in POOLS]
        if bad or not self.pools:
            raise ProtlmError(f"--pool must be among {', '.join(POOLS)}, got {', '.join(bad) or 'none'}")
        for layer in self.layers:
            if not -n_hidden <= layer < n_hidden:
                raise ProtlmError(
                    f"--layers {layer}: the model has hidden states 0..{n_hidden - 1} (or -1..-{n_hidden})"
                )
        if self.tokens_per_batch <= 0 or self.chunk <= 0:
            raise ProtlmError("--tokens-per-batch and the chunk size must be > 0")

    def keys(self) -> list[str]:
        """Output names: the pool (`mean`), or `mean.-4` when several layers are asked for."""
        return [p if len(self.layers) == 1 else f"{p}.{layer}" for layer in self.layers for p in self.pools]


@dataclass
class Embedding:
    id: str
    length: int  # residues (all chains of an assembly)
    chains: tuple[int, ...] = ()  # residues per chain (one entry for a single protein)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # key -> (hidden,) or (length, hidden)


class Embedder:
    """Encodes records with an HF encoder (RoBERTa, Longformer, ESM-2, BERT) and its `ProteinTokenizer`."""

    def __init__(self, encoder, tokenizer, options: EmbedOptions = EmbedOptions()):

        self.encoder, self.tokenizer, self.opt = encoder.eval(), tokenizer, options
        n_hidden = encoder.config.num_hidden_layers + 1
        options.validate(n_hidden)
        self.layers = [layer % n_hidden for layer in options.layers]
        self.max_tokens = window_tokens(encoder.config, options.max_tokens)
        self.template = tokenizer.template
        self.width = self.max_tokens - self.template.overhead(1)
        self.stride = options.stride or max(1, self.width // 2)
        if not 0 < self.stride <= self.width:
            raise ProtlmError(f"--stride must be in 1..{self.width} tokens (the window), got {self.stride}")
        self.token_lengths = tokenizer.residue_lengths
        self.device = next(encoder.parameters()).device
        self.dtype = inference_dtype(options.precision, self.device)

    def embed(self, records: Iterable[SeqRecord]) -> Iterator[Embedding]:
        """Embeddings in input order, encoded chunk by chunk."""
        chunk: list[SeqRecord] = []
        for rec in records:
            chunk.append(rec)
            if len(chunk) == self.opt.chunk:
                yield from self._chunk(chunk)
                chunk = []
        if chunk:
            yield from self._chunk(chunk)

    @property
    def precision(self) -> str:
        """fp32 or bf16: the autocast the embeddings are computed under."""
        return precision_name(self.dtype)

    @torch.inference_mode()
    def _chunk(self, records: list[SeqRecord]) -> list[Embedding]:
        # Assemblies (chains joined by ':') become `A </s></s> B ...` (the template's separator between
        # chains): the separators cover no residue.
        chains = [r.seq.split(CHAIN_SEP) for r in records]
        encs = iter(self.tokenizer.encode_batch([c for cs in chains for c in cs]))
        start, end = self.template.start, len(self.template.suffix)
        tokens = []
        for cs in chains:
            joined = self.tokenizer.assemble([next(encs) for _ in cs])
            tokens.append(joined[start : len(joined) - end])  # content between the prefix and the suffix
        per_token = [self.token_lengths[t] for t in tokens]
        for rec, cs, lens in zip(records, chains, per_token, strict=True):
            if int(lens.sum()) != sum(map(len, cs)):
                raise ProtlmError(f"record {rec.id}: the tokenizer does not cover the sequence residue by residue")
        items = [(i, s) for i, t in enumerate(tokens) for s in windows(len(t), self.width, self.stride)]
        lengths = np.array([self.template.length([min(len(tokens[i]) - s, self.width)]) for i, s in items])
        d = self.encoder.config.hidden_size
        sums = [np.zeros((len(self.layers), len(t), d), dtype=np.float32) for t in tokens]
        counts = [np.zeros(len(t), dtype=np.float32) for t in tokens]
        cls = np.zeros((len(tokens), len(self.layers), d), dtype=np.float32)
        cls_n = np.zeros(len(tokens), dtype=np.float32)
        # Sorted by length (no shuffle: inference), packed to the token budget.
        heap = HeapTrim()
        for batch in plan_batches(lengths, self.opt.tokens_per_batch, _NoShuffle()):
            heap.step()
            seqs = [
                self.tokenizer.assemble([tokens[items[k][0]][items[k][1] : items[k][1] + self.width]]) for k in batch
            ]
            ids, mask = pad_batch(seqs, self.tokenizer.pad_token_id)
            with autocast(self.device, self.dtype), exact_gelu():
                out = self.encoder(
                    input_ids=ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    output_hidden_states=True,
                    **encoder_kwargs(self.encoder.config, ids.to(self.device)),
                )
            states = torch.stack([out.hidden_states[layer] for layer in self.layers], 1).float().cpu().numpy()
            first = self.template.start
            for row, k in enumerate(batch):  # states: (B, n_layers, T, d)
                i, start = items[k]
                n = len(seqs[row]) - self.template.overhead(1)
                sums[i][:, start : start + n] += states[row, :, first : first + n]
                counts[i][start : start + n] += 1
                cls[i] += states[row, :, 0]
                cls_n[i] += 1
        out_list = []
        for i, rec in enumerate(records):
            tok_vec = sums[i] / counts[i][None, :, None]  # (n_layers, T, d) averaged over windows
            emb = Embedding(rec.id, sum(map(len, chains[i])), tuple(len(c) for c in chains[i]))
            for li, layer in enumerate(self.opt.layers):
                suffix = "" if len(self.opt.layers) == 1 else f".{layer}"
                for pool in self.opt.pools:
                    if pool == "residue":
                        emb.vectors["residue" + suffix] = np.repeat(tok_vec[li], per_token[i], axis=0)
                    elif pool == "mean":
                        weights = per_token[i][:, None].astype(np.float32)
                        emb.vectors["mean" + suffix] = (tok_vec[li] * weights).sum(0) / weights.sum()
                    else:
                        emb.vectors["cls" + suffix] = cls[i, li] / cls_n[i]
            out_list.append(emb)
        return out_list


class _NoShuffle:
    """An rng stand-in for `plan_batches` that keeps length order (ties by input order)."""

    def permutation(self, n: int) -> np.ndarray:
        return np.arange(n)

    def shuffle(self, x) -> None:
        return None
