"""No host synchronisation inside a training step: every op that makes the host wait for the device's answer
(nonzero, item, a tensor's truth value, boolean masking) is counted while `train_step` runs its forward,
backward and clipping. On a GPU each one stalls the launch queue; the batch knows these answers on the host."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from protlm.batching import MaskingVocab, mask_for_mlm, pack_rows, pad_batch
from protlm.device import make_accelerator
from protlm.models import build_mlm
from protlm.tokenization import load_tokenizer
from protlm.train.config import TrainConfig
from protlm.train.data import Batch
from protlm.train.loop import StepSetup, make_optimizer, mlm_fields, train_step
from protlm.train.objective import MaskedLMObjective

DATA = Path(__file__).parent / "data"
aten = torch.ops.aten
SYNCING = {aten.nonzero.default, aten._local_scalar_dense.default, aten.is_nonzero.default,
           aten.masked_select.default, aten.equal.default}  # fmt: skip


class SyncCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen: list[str] = []
        self.paused = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        boolean_index = func is aten.index.Tensor and any(
            t is not None and t.dtype == torch.bool for t in (args[1] if len(args) > 1 else [])
        )
        if not self.paused and (func in SYNCING or boolean_index):
            self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


def _syncs(seqs: list[str], preset: str = "micro.yaml", packed: bool = False) -> list[str]:
    tok = load_tokenizer(DATA / "tokenizer_bpe300")
    objective = MaskedLMObjective(build_mlm(str(DATA / preset), tok, seed=0)).train()
    encoded = [tok.assemble([tok.encode(s)]) for s in seqs]
    if packed:
        rows = pack_rows(encoded, 64, 1, tok.pad_token_id, 2)
        ids, mask, extra = rows.input_ids, rows.attention_mask, (rows.segments, rows.position_ids)
    else:
        (ids, mask), extra = pad_batch(encoded, tok.pad_token_id), ()
    inputs, labels = mask_for_mlm(ids, MaskingVocab.of(tok), torch.Generator().manual_seed(0), 0.3)
    batch = Batch(inputs, mask, labels, int(mask.sum()), *extra)
    cfg = TrainConfig(max_steps=2, precision="fp32", kernels="off")
    acc = make_accelerator("cpu")
    prepared, opt = acc.prepare(objective, make_optimizer(objective, cfg, acc.device))
    counter = SyncCounter()
    # the optimizer's own step count lives on the host for a non-fused AdamW; on CUDA it is fused, on the device
    opt.optimizer.register_step_pre_hook(lambda *a: setattr(counter, "paused", True))

    def host_fields(b):  # the batch's own fields are worked out on the host, before they go to the device
        counter.paused = True
        fields = mlm_fields(b)
        counter.paused = False
        return fields

    with counter:
        train_step(StepSetup(prepared, opt, acc, cfg, 2, None, host_fields), 0, [batch])
    return counter.seen


def test_a_step_on_unpadded_rows_never_waits_for_the_device():
    assert _syncs(["MKTAYIAKQRQISFVKSHFSRQ", "MKTAYIAKQRQISFVKSHFSRQ"]) == []


def test_a_step_on_padded_rows_asks_at_most_whether_rows_are_padded():
    # transformers' SDPA mask path checks `padding_mask.all()` once per forward; nothing of protlm's syncs
    seen = _syncs(["MKTAYIAKQRQISFVKSHFSRQ", "MVLSPA"])
    assert len(seen) <= 1 and all("_local_scalar_dense" in s or "is_nonzero" in s for s in seen), seen


def test_a_packed_step_never_waits_for_the_device():
    # its block mask is built on the device from the segments: transformers takes a 4-D mask as it is
    assert _syncs(["MKTAYIAKQRQISFVKSHFSRQ", "MVLSPA", "MKVLAAGIVGLLLA"], packed=True) == []


def test_the_counter_sees_a_boolean_index():
    counter = SyncCounter()
    x = torch.arange(6.0)
    with counter:
        _ = x[x > 2]
    assert counter.seen
