"""Attention maps of a pre-trained model, mapped from BPE tokens to residues.

The input is encoded as in pre-training: `<s> A </s>` for one protein, `<s> A </s></s> B </s>` for
a pair, and so on for assemblies. Every layer and head is read (eager attention; SDPA does not
return weights). A BPE token covers one or more residues, so the token x token map becomes a
residue x residue map by this rule:

- **rows are copied:** residue i attends as its token does (row of t(i)); every residue row is a
  distribution over the input, like a token row;
- **columns are split:** the attention a token receives is shared equally among its residues
  (column of t(j) divided by the token's residue count).

So mass is conserved: each residue row sums to 1 minus the mass its token puts on the special
tokens (`special`, kept beside the map), and the map summed over the residues of a token gives
back the token map.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from protlm.align import residue_map
from protlm.errors import InputError, ProtlmError
from protlm.io.atomic import atomic_open
from protlm.models.loading import model_max_tokens, open_model, quiet_hf


@dataclass
class ResidueAttention:
    """Attention over the residues of 1+ chains, concatenated in input order."""

    id: str
    chains: tuple[str, ...]  # chain names
    sequences: tuple[str, ...]
    attention: np.ndarray  # (layers, heads, N, N) float32
    special: np.ndarray  # (layers, heads, N) mass on <s> / </s> of each residue row
    chain_index: np.ndarray  # (N,) which chain each residue belongs to
    n_tokens: int

    def block(self, a: int, b: int) -> np.ndarray:
        """(layers, heads, len(a), len(b)) attention from residues of chain a to residues of chain b."""
        ia, ib = np.flatnonzero(self.chain_index == a), np.flatnonzero(self.chain_index == b)
        return self.attention[:, :, ia[:, None], ib[None, :]]


def token_to_residue(att: np.ndarray, token_pos: np.ndarray, residues_per_token: np.ndarray):
    """(L, H, T, T) token attention -> ((L, H, N, N) residue attention, (L, H, N) special mass).

    `token_pos[r]` is the input position of residue r's token; `residues_per_token[t]` the residue
    count of position t (0 for special tokens).
    """
    rows = att[:, :, token_pos, :]  # (L, H, N, T): residue rows copy their token's row
    special = rows[..., residues_per_token == 0].sum(-1)
    cols = rows[..., token_pos] / residues_per_token[token_pos]  # columns shared among the token's residues
    return cols.astype(np.float32), special.astype(np.float32)


class AttentionModel:
    """A pre-trained (or fine-tuned) encoder (RoBERTa, ESM-2, BERT) that returns every layer's attention, run on
    `device` (auto / cpu / cuda / cuda:N; maps come back to the host in fp32)."""

    def __init__(self, path: str | Path, device: str = "cpu"):
        from protlm.device import resolve_device

        self.device = resolve_device(device)
        self.model_dir = open_model(path)
        self.path = self.model_dir.path
        if self.model_dir.is_baseline:
            raise ProtlmError(f"{path}: a composition baseline has no attention")
        config = self.model_dir.config()
        family = self.model_dir.backbone
        if family.sliding_window:
            raise ProtlmError(
                f"{self.path}: a Longformer's sliding-window attention is not a full map; analyse the RoBERTa it was "
                "converted from, or a dense conversion (`protlm longformer convert --attention dense`)"
            )
        self.tokenizer = self.model_dir.tokenizer()
        self.has_contact_head = False  # ESM-2's own trained contact regression, when the checkpoint has it
        if family.contact_head and not self.model_dir.is_task_model:
            from transformers import AutoModel

            with quiet_hf():
                self.model, info = self.model_dir.load(AutoModel, add_pooling_layer=False, attn_implementation="eager",
                                                       output_loading_info=True)  # fmt: skip
            self.has_contact_head = not any("contact_head" in k for k in info["missing_keys"])
        else:
            self.model = self.model_dir.encoder(attn_implementation="eager")
        self.model.to(self.device).eval()
        self.max_tokens = model_max_tokens(config)
        self.lengths = self.tokenizer.residue_lengths
        self.n_layers, self.n_heads = config.num_hidden_layers, config.num_attention_heads

    def encode(self, sequences: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """(input ids (T,), input position of each residue's token (N,))."""
        template = self.tokenizer.template
        parts, positions, start = [], [], template.start
        for seq in sequences:
            ids = self.tokenizer.encode(seq)
            token_of, _ = residue_map(ids, self.lengths, len(seq))
            positions.append(start + token_of)
            parts.append(ids)
            start += len(ids) + len(template.between)  # e.g. </s></s> between chains
        return self.tokenizer.assemble(parts), np.concatenate(positions)

    @torch.inference_mode()
    def esm_contacts(self, sequence: str) -> np.ndarray:
        """(N, N) contact probabilities from ESM-2's own contact head (attention -> APC -> its regression)."""
        ids, _ = self.encode((sequence,))
        if len(ids) > self.max_tokens:
            raise ProtlmError(f"{len(sequence)} residues: the model takes {self.max_tokens} tokens")
        tokens = torch.from_numpy(ids)[None].to(self.device)
        return self.model.predict_contacts(tokens, torch.ones_like(tokens))[0].float().cpu().numpy()

    @torch.inference_mode()
    def __call__(self, sequences: tuple[str, ...], rid: str = "input", names: tuple[str, ...] | None = None):
        ids, token_pos = self.encode(tuple(sequences))
        if len(ids) > self.max_tokens:
            raise TooLong(rid, f"{len(ids)} tokens, the model takes {self.max_tokens}; attention maps are not "
                               "windowed (choose shorter chains or a model with longer positions)")  # fmt: skip
        out = self.model(input_ids=torch.from_numpy(ids)[None].to(self.device), output_attentions=True)
        att = torch.stack(out.attentions, 0)[:, 0].float().cpu().numpy()  # (L, H, T, T)
        per_position = self.lengths[ids]
        residue, special = token_to_residue(att, token_pos, per_position)
        chain_index = np.concatenate([np.full(len(s), k) for k, s in enumerate(sequences)])
        names = names or tuple(str(k + 1) for k in range(len(sequences)))
        return ResidueAttention(rid, tuple(names), tuple(sequences), residue, special, chain_index, len(ids))


class TooLong(ProtlmError):
    """An input longer than the model: attention maps are L x L per head, never windowed."""

    def __init__(self, rid: str, reason: str):
        self.rid, self.reason = rid, reason
        super().__init__(f"{rid}: {reason}")


def export(model: AttentionModel, inputs: list[tuple[str, tuple[str, ...], tuple[str, ...]]], out: Path,
           half: bool = False, extra: dict[str, dict[str, np.ndarray]] | None = None,
           source: str | Path | None = None) -> Path:  # fmt: skip
    """Write `OUT.npz`: per input id, `ID.attention` (L, H, N, N), `ID.special` (L, H, N),
    `ID.chain_index` (N,), `ID.chains`, `ID.sequences`, plus any `extra[ID]` arrays; `_meta` (JSON).
    `ID` is the record id as `embed` names members (`io.embeddings.member_name`: `/`, `\\`, `%`,
    controls and a leading `.` percent-encoded), so no id names a path outside the archive; an id given
    twice is an error. Each input's maps are written as soon as they are computed (memory: one input's
    maps), into a temporary file renamed into place at the end. `source` names the input file in errors."""
    import json
    import zipfile

    from protlm.io.embeddings import member_name

    dtype = np.float16 if half else np.float32
    meta = {
        "model": str(model.path), "layers": model.n_layers, "heads": model.n_heads, "ids": [i[0] for i in inputs],
        "mapping": "residue rows copy their token's row; a token's column is split equally among its residues; "
        "each row sums to 1 - special",
    }  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    written: set[str] = set()
    with atomic_open(out, "wb") as fh, zipfile.ZipFile(fh, "w", allowZip64=True) as zf:
        for rid, seqs, names in inputs:
            name = member_name(rid)
            if name in written:
                raise ProtlmError(f"{out}: id {rid!r} is written twice (output names must be unique)")
            written.add(name)
            try:
                att = model(seqs, rid, names)
            except TooLong as e:
                raise (InputError(source, e.reason, record=rid) if source is not None else e) from None
            arrays = {
                f"{name}.attention": att.attention.astype(dtype), f"{name}.special": att.special.astype(dtype),
                f"{name}.chain_index": att.chain_index, f"{name}.chains": np.array(att.chains),
                f"{name}.sequences": np.array(att.sequences),
            }  # fmt: skip
            arrays |= {f"{name}.{key}": value for key, value in (extra or {}).get(rid, {}).items()}
            for name, value in arrays.items():
                write_npz_member(zf, name, value)
            del att, arrays
        write_npz_member(zf, "_meta", np.array(json.dumps(meta)))
    return out


def write_npz_member(zf, name: str, value: np.ndarray) -> None:
    """One `.npy` member of an NPZ, as `np.savez` writes it (readable by `np.load`)."""
    with zf.open(name + ".npy", "w", force_zip64=True) as member:
        np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
