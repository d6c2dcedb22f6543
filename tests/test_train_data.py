"""The pre-training mixture: weights, random crops, negative sampling, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from protlm.hashing import held_out
from protlm.pairs.negatives import NegativePool, organism
from protlm.tokenization import load_tokenizer
from protlm.tokenized import TokenizedSet
from protlm.train.data import PretrainData

# `<s> A </s></s> B </s>`, pad 1, mask 4; ids 5..299 are residue tokens
TOKENIZER = load_tokenizer(Path(__file__).parent / "data" / "tokenizer_bpe300")


def toy_set(lengths: list[int], ids: list[str] | None = None) -> TokenizedSet:
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = (np.arange(offsets[-1]) % 200 + 5).astype(np.uint16)
    ids = ids or [f"P{i}" for i in range(len(lengths))]
    return TokenizedSet(ids, tokens, offsets, np.asarray(lengths) * 3)


def mixture(tset, singles, binding, nonbinding=None, weights=None, max_tokens=64, known=None):
    binding = np.asarray(binding, dtype=np.int64).reshape(-1, 2)
    members = np.unique(binding)
    known = binding if known is None else known
    pool = NegativePool.from_ids(
        members, [tset.ids[i] for i in members], [(tset.ids[a], tset.ids[b]) for a, b in known]
    )
    return PretrainData(
        tset, max_tokens, np.asarray(singles, dtype=np.int64), binding,
        np.asarray(nonbinding if nonbinding is not None else [], dtype=np.int64).reshape(-1, 2),
        pool, weights or {"singles": 1.0, "binding": 1.0, "nonbinding": 1.0}, TOKENIZER,
    )  # fmt: skip


def unmasked(batch) -> torch.Tensor:
    """A batch's tokens before MLM masking (the labels hold the originals of the masked positions)."""
    return torch.where(batch.labels != -100, batch.labels, batch.input_ids)


def test_long_singles_get_a_fresh_random_window_each_epoch():
    tset = toy_set([300, 10])
    data = mixture(tset, [0, 1], [], weights={"singles": 1.0})
    starts = set()
    for epoch in range(8):
        examples, lengths, crops = data.epoch_examples(epoch)
        k = examples.index((0,))
        assert lengths[k] == 64 and crops[examples.index((1,))] == 0
        window = unmasked(data.make_batch([((0,), int(crops[k]))], torch.Generator().manual_seed(0)))[0, 1:-1]
        start = int(window[0]) - 5  # toy tokens count up from 5 (mod 200) along the protein
        assert len(window) == 62 and 0 <= start <= 300 - 62
        starts.add(start)
        batch = data.make_batch(data.epoch_batches(epoch, 1024)[0], torch.Generator().manual_seed(0))
        assert batch.input_ids.shape[1] <= 64
    assert len(starts) > 4  # not always the first window
    assert data.epoch_examples(3)[2].tolist() == data.epoch_examples(3)[2].tolist()  # deterministic


def test_weights_split_the_epoch_and_labels_never_reach_the_batch():
    tset = toy_set([10] * 40)
    data = mixture(tset, list(range(20)), [(20 + i, 21 + i) for i in range(0, 10, 2)])
    counts = data.epoch_counts()
    assert counts == {"singles": 10, "binding": 10, "nonbinding": 10, "assemblies": 0}  # 30 examples, equal weights
    batch = data.make_batch([(ex, 0) for ex in data.epoch_examples(0)[0][:4]], torch.Generator().manual_seed(0))
    # MLM only (segments and positions are packed rows' layout, None here)
    assert set(vars(batch)) == {"input_ids", "attention_mask", "labels", "n_tokens", "segments", "position_ids"}
    assert batch.segments is None and batch.position_ids is None


def test_sampled_negatives_never_known_never_self_same_organism():
    ids = [f"9606.ENSP{i}" for i in range(10)] + [f"10090.ENSMUSP{i}" for i in range(10)]
    tset = toy_set([10] * 20, ids)
    known_rows = [(i, i + 1) for i in range(0, 9)] + [(10 + i, 11 + i) for i in range(0, 9)]
    known = {(min(ids[a], ids[b]), max(ids[a], ids[b])) for a, b in known_rows}
    data = mixture(tset, [], known_rows, known=known_rows)
    neg = data.sample_negatives(500, np.random.default_rng(0))
    assert len(neg) == 500
    for a, b in neg:
        assert a != b and (min(ids[a], ids[b]), max(ids[a], ids[b])) not in known
        assert organism(ids[a]) == organism(ids[b])
    assert organism("9606.ENSP1") == "9606" and organism("Q9H400") == ""


def test_pairs_too_long_are_cropped_part_by_part_and_counted():
    """A pair longer than the model is kept and cropped: each partner a contiguous window of its share
    (half each when both are long; a short partner whole), fresh every epoch, counted in the report."""
    tset = toy_set([40, 40, 10, 100])
    data = mixture(tset, [], [(0, 1), (2, 3)], weights={"binding": 1.0})
    assert len(data.binding) == 2 and not data.skipped and data.cropped == {"binding pairs longer than 64 tokens": 2}
    seen = set()
    for epoch in range(6):
        examples, lengths, crops = data.epoch_examples(epoch)
        assert (lengths == 64).all() and (crops > 0).all()
        for k in range(len(examples)):
            ids = unmasked(data.make_batch([(examples[k], int(crops[k]))], torch.Generator().manual_seed(0)))[0]
            sep = TOKENIZER.template
            body = ids[len(sep.prefix) : len(ids) - len(sep.suffix)].tolist()
            cut = body.index(TOKENIZER.template.between[0])
            parts = [body[:cut], body[cut + len(sep.between) :]]
            a, b = examples[k]
            want = [30, 30] if (a, b) == (0, 1) else [10, 50]  # 60 content tokens: half each, or the short one whole
            assert [len(x) for x in parts] == want and len(ids) == 64
            for part, protein in zip(parts, (a, b), strict=True):  # a contiguous window of that protein
                full = data.tset.get(protein).tolist()
                assert any(full[s : s + len(part)] == part for s in range(len(full) - len(part) + 1))
            seen.add((examples[k], parts[0][0], parts[1][0]))
    assert len(seen) > 4  # fresh crops


def test_held_out_is_deterministic():
    picked = [held_out(f"P{i}", 0.1) for i in range(10_000)]
    assert picked == [held_out(f"P{i}", 0.1) for i in range(10_000)]
    assert 800 < sum(picked) < 1200


def test_heap_trim_hands_free_memory_back_unless_told_not_to():
    import os
    import subprocess
    import sys

    # Fragment the heap the way changing batch shapes do, free it, trim: RSS must fall back.
    probe = """
import ctypes, re
from pathlib import Path
from protlm.heap import HeapTrim
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def anon():
    return int(re.search(r"RssAnon:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1)) // 1024
big, live = [], []
for k in range(1000):  # 100 KB blocks (heap, under the mmap threshold), each followed by a live one of the same
    # size: a live block that small could come from a free list elsewhere and leave the freed ones at the top,
    # where glibc returns them by itself (seen on Python 3.13)
    p = libc.malloc(100_000); ctypes.memset(p, 1, 100_000); big.append(p)
    q = libc.malloc(100_000); ctypes.memset(q, 1, 100_000); live.append(q)
before = anon()
for p in big:
    libc.free(p)
heap = HeapTrim(every=1); heap.step()
print(heap.active, before, anon())
"""
    runs = {}
    for name, extra in {"default": {}, "off": {"PROTLM_STEADY_HEAP": "0"}}.items():
        env = {k: v for k, v in os.environ.items() if k != "PROTLM_STEADY_HEAP"} | extra
        out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
        active, before, after = out.stdout.split()
        runs[name] = (active, int(before), int(after))
    if not (sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION")):
        return  # not glibc: nothing to trim
    assert runs["default"][0] == "True" and runs["default"][2] < runs["default"][1] - 80  # MB handed back
    assert runs["off"][0] == "False" and runs["off"][2] > runs["off"][1] - 10  # kept by the heap
