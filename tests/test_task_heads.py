"""Residue alignment under BPE, every head (shape + backward), long-protein windows, metrics by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoConfig

from conftest import DATA
from protlm.io import iter_fasta
from protlm.tasks.align import aa_codes, residue_map
from protlm.tasks.batches import build_taskset
from protlm.tasks.data import IGNORE, Example
from protlm.tasks.metrics import METRICS, compute
from protlm.tasks.model import ProteinTaskModel
from protlm.tasks.predict import predict
from protlm.tokenization import load_tokenizer


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(DATA / "tokenizer_bpe300")


@pytest.fixture(scope="module")
def seqs() -> list[str]:
    return [r.seq for r in iter_fasta(DATA / "swissprot_50.fasta")]


@pytest.fixture(scope="module")
def lengths(tok):
    return tok.residue_lengths


def tiny_model(tok, head: str, n_labels: int, max_positions: int = 66, pooling: str = "cls") -> ProteinTaskModel:
    config = AutoConfig.for_model(
        "roberta", vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=max_positions, pad_token_id=1, type_vocab_size=1,
        num_labels=n_labels,
    )  # fmt: skip
    config.protlm_head, config.protlm_pooling = head, pooling
    torch.manual_seed(0)
    return ProteinTaskModel(config)


def test_token_lengths_cover_every_residue_once(tok, lengths, seqs):
    for seq in seqs[:20]:
        ids = tok.backend.encode(seq, add_special_tokens=False).ids
        token_of, offset = residue_map(np.array(ids), lengths, len(seq))
        assert len(token_of) == len(seq)  # nothing lost, nothing duplicated
        assert (np.diff(token_of) >= 0).all() and set(token_of) == set(range(len(ids)))
        pieces = tok.convert_ids_to_tokens(ids)
        rebuilt = "".join(pieces[t][o] for t, o in zip(token_of, offset, strict=True))
        assert rebuilt == seq  # residue r really is character `offset` of token `token_of`


def test_residue_labels_survive_tokens_crossing_a_label_boundary(tok, lengths, seqs):
    seq = seqs[0][:120]
    ids = tok.backend.encode(seq, add_special_tokens=False).ids
    token_of, _ = residue_map(np.array(ids), lengths, len(seq))
    # Labels change inside multi-residue tokens: residue r gets r % 3, so every token of >= 2 residues
    # spans a label boundary; residue 5 is unscored.
    label = (np.arange(len(seq)) % 3).astype(np.int8)
    label[5] = IGNORE
    assert (np.bincount(token_of) > 1).any()
    ts = build_taskset("residue", [Example("x", (seq,), label)], tok, max_tokens=512)
    batch = ts.make_batch(ts.items(None))
    got = batch.labels[0, : len(seq)].numpy()
    expected = np.where(label == IGNORE, -100, label)
    np.testing.assert_array_equal(got, expected)
    assert (batch.labels[0, len(seq) :] == -100).all()
    # each residue points at the input position of its own token (<s> is position 0)
    np.testing.assert_array_equal(batch.residue_index[0, : len(seq)].numpy(), token_of + 1)
    np.testing.assert_array_equal(batch.residue_aa[0, : len(seq)].numpy(), aa_codes(seq))


def test_long_protein_windows_score_every_residue(tok, lengths, seqs):
    seq = max(seqs, key=len)
    n_tokens = len(tok.backend.encode(seq, add_special_tokens=False).ids)
    label = (np.arange(len(seq)) % 3).astype(np.int8)
    ts = build_taskset("residue", [Example("long", (seq,), label)], tok, max_tokens=34)
    windows = ts.windows(0)
    assert n_tokens > 32 and len(windows) > 2 and windows[-1] == n_tokens - 32
    model = tiny_model(tok, "residue", 3, max_positions=36)
    y, prob, ids = predict(model, ts, tokens_per_batch=256, batch_size=4)
    assert len(y) == len(seq) and prob.shape == (len(seq), 3)  # every residue exactly once, none beyond
    np.testing.assert_array_equal(y, label)
    assert ids[0] == "long:1" and ids[-1] == f"long:{len(seq)}"


def test_predictions_do_not_depend_on_batch_composition(tok, seqs):
    model = tiny_model(tok, "sequence", 4)
    examples = [Example(f"p{i}", (s[:200],), i % 4) for i, s in enumerate(seqs[:12])]
    ts_all = build_taskset("sequence", examples, tok, max_tokens=64)
    ts_one = build_taskset("sequence", examples[3:4], tok, max_tokens=64)
    _, p_all, _ = predict(model, ts_all, tokens_per_batch=4096, batch_size=12)
    _, p_one, _ = predict(model, ts_one, tokens_per_batch=4096, batch_size=1)
    np.testing.assert_allclose(p_all[3], p_one[0], atol=1e-5)


@pytest.mark.parametrize(
    "kind,head,n_labels", [("sequence", "sequence", 5), ("pair", "sequence", 2), ("residue", "residue", 8)]
)
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_heads_shapes_and_backward(tok, lengths, seqs, kind, head, n_labels, pooling):
    model = tiny_model(tok, head, n_labels, pooling=pooling)
    if kind == "residue":
        examples = [
            Example(f"r{i}", (s[:50],), (np.arange(50) % n_labels).astype(np.int8)) for i, s in enumerate(seqs[:3])
        ]
    elif kind == "pair":
        examples = [Example(f"p{i}", (seqs[i][:40], seqs[i + 1][:60]), i % 2) for i in range(3)]
    else:
        examples = [Example(f"s{i}", (s[:80],), i % n_labels) for i, s in enumerate(seqs[:3])]
    ts = build_taskset(kind, examples, tok, max_tokens=64)
    batch = ts.make_batch(ts.items(np.random.default_rng(0)))
    out = model(**batch.fields())
    expected = (3, batch.labels.shape[1], n_labels) if kind == "residue" else (3, n_labels)
    assert tuple(out.logits.shape) == expected
    out.loss.backward()
    assert model.out_proj.weight.grad.abs().sum() > 0
    assert model.roberta.embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_pair_crop_keeps_both_proteins(tok, seqs):
    a, b = seqs[0], seqs[1]
    ts = build_taskset("pair", [Example("ab", (a, b), 1)], tok, max_tokens=64)
    batch = ts.make_batch(ts.items(np.random.default_rng(1)))
    ids = batch.input_ids[0].tolist()
    assert len(ids) == 64 and ids[0] == 0 and ids.count(2) == 3  # <s> A </s></s> B </s>
    first_sep = ids.index(2)
    assert first_sep - 1 >= 30 and 64 - first_sep - 3 >= 29  # each side keeps about half of the budget


@pytest.mark.parametrize(
    "lengths,budget,expected",
    [
        ([10, 20, 30], 100, [10, 20, 30]),  # fits: nothing cropped
        ([10, 200, 300], 100, [10, 45, 45]),  # the short chain stays whole, the long ones share the rest
        ([500, 500, 500], 99, [33, 33, 33]),  # each keeps 1/k
        ([40, 90], 100, [40, 60]),  # pairs: the pre-assembly rule (each side >= half unless shorter)
        ([90, 90], 101, [50, 51]),
    ],
)
def test_share_budget(lengths, budget, expected):
    from protlm.batching import share_budget

    assert share_budget(lengths, budget) == expected


def test_assembly_crop_keeps_every_chain_in_order(tok, seqs):
    chains = (seqs[0], seqs[1][:20], seqs[2])
    ts = build_taskset("pair", [Example("abc", chains, 1)], tok, max_tokens=64)
    for rng in (None, np.random.default_rng(3)):
        batch = ts.make_batch(ts.items(rng))
        ids = batch.input_ids[0].tolist()
        assert len(ids) == 64 and ids[0] == 0 and ids.count(2) == 5  # <s> A </s></s> B </s></s> C </s>
        bounds = [k for k, t in enumerate(ids) if t == 2]
        kept = [bounds[0] - 1, bounds[2] - bounds[1] - 1, bounds[4] - bounds[3] - 1]
        short = len(tok.backend.encode(chains[1], add_special_tokens=False).ids)
        assert kept[1] == short and kept[0] + kept[2] == 64 - 6 - short and abs(kept[0] - kept[2]) <= 1
        if rng is None:  # evaluation crops take the start of every chain
            first = tok.backend.encode(chains[0], add_special_tokens=False).ids[: kept[0]]
            assert ids[1 : bounds[0]] == first


def test_class_weights_change_the_loss(tok, seqs):
    model = tiny_model(tok, "sequence", 2)
    model.eval()
    ts = build_taskset("sequence", [Example(f"s{i}", (s[:60],), i % 2) for i, s in enumerate(seqs[:4])], tok, 64)
    fields = ts.make_batch(ts.items(None)).fields()
    plain = model(**fields).loss
    weighted = model(**fields, class_weights=torch.tensor([1.0, 3.0])).loss
    assert not torch.isclose(plain, weighted)


def test_metrics_against_hand_computed_values():
    y = np.array([0, 0, 1, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 0, 2])
    prob = np.eye(3)[pred]
    assert compute(("accuracy",), y, prob)["accuracy"] == pytest.approx(4 / 6)
    # per-class F1: class 0 P=1/2 R=1/2 -> 1/2; class 1 P=2/3 R=2/3 -> 2/3; class 2 -> 1
    assert METRICS["macro_f1"](y, prob) == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    # binary: TP=2 FP=1 FN=1 TN=2 -> MCC = (2*2 - 1*1) / sqrt(3*3*3*3) = 3/9
    yb = np.array([1, 1, 1, 0, 0, 0])
    pb = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.1])
    probb = np.stack([1 - pb, pb], axis=1)
    assert METRICS["mcc"](yb, probb) == pytest.approx(1 / 3)
    assert METRICS["f1"](yb, probb) == pytest.approx(2 / 3)
    # ROC-AUC: of the 9 (positive, negative) pairs, 8 are ranked correctly (0.3 < 0.7 is the miss)
    assert METRICS["roc_auc"](yb, probb) == pytest.approx(8 / 9)
    # average precision: ranks 1,2 positive (P=1,1), 3rd negative, 4th positive (P=3/4): (1 + 1 + 3/4) / 3
    assert METRICS["pr_auc"](yb, probb) == pytest.approx((1 + 1 + 0.75) / 3)
    assert METRICS["q3"](y, prob) == METRICS["accuracy"](y, prob)
    assert np.isnan(METRICS["roc_auc"](np.ones(3, dtype=int), np.full((3, 2), 0.5)))
