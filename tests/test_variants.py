"""Zero-shot variant scores (issue 29): every strategy against a direct computation with the plain HF model,
the BPE span scorer against re-scoring by hand, bad input, and the CLI on an assay in ProteinGym's layout."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from backbones import build_esm, build_protbert
from conftest import DATA, run_cli
from protlm.io.validate import STANDARD
from protlm.models.loading import open_model
from protlm.variants.mutants import parse_mutant
from protlm.variants.scorer import ScoreOptions, VariantScorer, parse_variants

WINDOW = 64  # the tiny models' positions: proteins of over 62 residues are windowed
RNG = np.random.default_rng(29)
SHORT = "".join(RNG.choice(list(STANDARD), 40))
LONG = "".join(RNG.choice(list(STANDARD), 150))


def _sub(wt: str, pos: int, k: int = 0) -> str:
    """A substitution at 1-based `pos` to another amino acid (the k-th other one)."""
    others = [a for a in STANDARD if a != wt[pos - 1]]
    return f"{wt[pos - 1]}{pos}{others[(pos * 7 + k) % 19]}"


def _mutants(wt: str, positions: list[int], doubles: list[tuple[int, int]]) -> list[str]:
    return [_sub(wt, p) for p in positions] + [f"{_sub(wt, a, 1)}:{_sub(wt, b, 2)}" for a, b in doubles]


SHORT_MUTANTS = _mutants(SHORT, [1, 5, 20, 40], [(3, 30), (10, 11)])
LONG_MUTANTS = _mutants(LONG, [2, 31, 33, 75, 119, 150], [(5, 140), (70, 80)])


# ---------------------------------------------------------------- fixtures: tiny models, real vocabularies


@pytest.fixture(scope="module")
def esm(tmp_path_factory):
    return build_esm(tmp_path_factory.mktemp("esm") / "m", max_tokens=WINDOW)


@pytest.fixture(scope="module")
def protbert(tmp_path_factory):
    return build_protbert(tmp_path_factory.mktemp("bert") / "m", max_tokens=WINDOW)


@pytest.fixture(scope="module")
def char_model(tmp_path_factory):
    """A micro RoBERTa over protlm's `char` tokenizer (one token per residue)."""
    from protlm.models import build_mlm
    from protlm.tokenization import train_tokenizer

    out = tmp_path_factory.mktemp("char") / "m"
    tok = train_tokenizer([], kind="char")
    build_mlm(str(DATA / "micro.yaml"), tok, seed=1).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def scorer(path, **options) -> VariantScorer:
    spec = open_model(path)
    return VariantScorer(spec.masked_lm().eval(), spec.tokenizer(), ScoreOptions(precision="fp32", **options))


# ---------------------------------------------------------------- the direct computation, written out


def hf(path):
    """The plain HF masked LM and a function residues -> input ids, from the model's own tokenizer."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer, BertTokenizer

    model = AutoModelForMaskedLM.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    spaced = isinstance(tok, BertTokenizer) or type(tok).__name__ == "BertTokenizerFast"  # ProtBERT: "M K T"
    return model, tok, (lambda seq: tok(" ".join(seq) if spaced else seq)["input_ids"])


def gym_window(pos: int, length: int, window: int) -> tuple[int, int]:
    """ProteinGym's get_optimal_window (utils/scoring_utils.py), as written there."""
    half = window // 2
    if length <= window:
        return 0, length
    if pos < half:
        return 0, window
    if pos >= length - half:
        return length - window, length
    return max(0, pos - half), min(length, pos + half)


def log_probs(model, ids: list[int], centre: int, mask_id: int | None) -> torch.Tensor:
    """log_softmax over the vocabulary at `centre`, in ProteinGym's window around it (masked when asked)."""
    a, b = gym_window(centre, len(ids), WINDOW)
    x = torch.tensor([ids[a:b]])
    if mask_id is not None:
        x[0, centre - a] = mask_id
    with torch.no_grad():
        return torch.log_softmax(model(input_ids=x).logits[0, centre - a].float(), -1)


def direct_marginal(path, wt: str, mutant: str, masked: bool) -> float:
    model, tok, encode = hf(path)
    ids, score = encode(wt), 0.0
    for m in mutant.split(":"):
        pos = int(m[1:-1])  # the first residue is input token 1, after <cls> / [CLS]
        lp = log_probs(model, ids, pos, tok.mask_token_id if masked else None)
        score += (lp[tok.convert_tokens_to_ids(m[-1])] - lp[tok.convert_tokens_to_ids(m[0])]).item()
    return score


def pll(model, tok, ids: list[int], positions) -> float:
    return sum(log_probs(model, ids, j, tok.mask_token_id)[ids[j]].item() for j in positions)


def direct_pll(path, wt: str, mutant: str) -> float:
    model, tok, encode = hf(path)
    mutated = list(wt)
    for m in mutant.split(":"):
        mutated[int(m[1:-1]) - 1] = m[-1]
    a, b = encode("".join(mutated)), encode(wt)
    return pll(model, tok, a, range(1, len(a) - 1)) - pll(model, tok, b, range(1, len(b) - 1))


DIRECT = {"masked-marginal": lambda p, w, m: direct_marginal(p, w, m, True),
          "wt-marginal": lambda p, w, m: direct_marginal(p, w, m, False), "pll": direct_pll}  # fmt: skip


# ---------------------------------------------------------------- every strategy equals the direct computation


@pytest.mark.parametrize("family", ["esm", "protbert"])
@pytest.mark.parametrize("strategy", ["masked-marginal", "wt-marginal", "pll"])
@pytest.mark.parametrize("length", ["short", "long"])
def test_every_strategy_equals_the_direct_hf_computation(family, strategy, length, request):
    path = request.getfixturevalue(family)
    wt, mutants = (SHORT, SHORT_MUTANTS) if length == "short" else (LONG, LONG_MUTANTS)
    if strategy == "pll" and length == "long":
        mutants = mutants[:1] + mutants[3:4] + mutants[-1:]  # near the start, mid, a far-apart double
    got = scorer(path, strategy=strategy).score(wt, parse_variants(wt, mutants))
    want = [DIRECT[strategy](path, wt, m) for m in mutants]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert np.abs(got).min() > 1e-6  # real numbers, not zeros that agree


@pytest.mark.parametrize("strategy", ["masked-marginal", "wt-marginal", "pll", "span"])
def test_scores_do_not_depend_on_the_batches(esm, strategy):
    variants = parse_variants(LONG, LONG_MUTANTS[:4])
    one = scorer(esm, strategy=strategy, tokens_per_batch=1, chunk=7).score(LONG, variants)
    many = scorer(esm, strategy=strategy, tokens_per_batch=1 << 20).score(LONG, variants)
    np.testing.assert_allclose(one, many, atol=1e-5, rtol=0)


def test_masked_marginal_runs_one_pass_per_distinct_position(esm):
    s = scorer(esm)
    seen = []
    forward = s.passes.encoder.forward
    s.passes.encoder.forward = lambda **kw: (seen.append(kw["input_ids"].shape[0]), forward(**kw))[1]
    singles = [f"{SHORT[p]}{p + 1}{a}" for p in range(len(SHORT)) for a in STANDARD if a != SHORT[p]]
    scores = s.score(SHORT, parse_variants(SHORT, singles))
    assert len(scores) == 19 * len(SHORT) and sum(seen) == len(SHORT)  # 760 variants, 40 passes, batched
    assert len(seen) < len(SHORT)


# ---------------------------------------------------------------- tokens spanning several residues


def test_span_reduces_to_the_residue_strategies_on_a_char_tokenizer(char_model):
    singles, all_ = SHORT_MUTANTS[:4], parse_variants(SHORT, SHORT_MUTANTS)
    masked = scorer(char_model, strategy="masked-marginal").score(SHORT, parse_variants(SHORT, singles))
    span0 = scorer(char_model, strategy="span", context=0).score(SHORT, parse_variants(SHORT, singles))
    np.testing.assert_allclose(span0, masked, atol=1e-5, rtol=0)
    whole = scorer(char_model, strategy="span", context=len(SHORT)).score(SHORT, all_)
    np.testing.assert_allclose(whole, scorer(char_model, strategy="pll").score(SHORT, all_), atol=1e-5, rtol=0)
    want = [direct_marginal(char_model, SHORT, m, True) for m in singles]  # the char model checked by HF too
    np.testing.assert_allclose(masked, want, atol=1e-4, rtol=0)


def direct_span(path, wt: str, mutant: str, context: int | None, window: int) -> float:
    """Re-scoring by hand with HF's tokenizer: tokens by their residue offsets, changed = not in the other
    tokenization (same token over the same residues), +- context tokens, each masked in turn."""
    model, tok, _ = hf(path)
    mutated = list(wt)
    for m in mutant.split(":"):
        mutated[int(m[1:-1]) - 1] = m[-1]

    def tokens(seq):
        enc = tok(seq, return_offsets_mapping=True)
        return enc["input_ids"], [
            (a, b, i) for (a, b), i in zip(enc["offset_mapping"], enc["input_ids"], strict=True) if b > a
        ]

    (ids_m, toks_m), (ids_w, toks_w) = tokens("".join(mutated)), tokens(wt)

    def side(ids, toks, other):
        changed = [k for k, t in enumerate(toks) if t not in set(other)]
        keep = (
            range(len(toks))
            if context is None
            else sorted({k for c in changed for k in range(c - context, c + context + 1) if 0 <= k < len(toks)})
        )
        return sum(log_probs_window(model, tok, ids, 1 + k, window) for k in keep)  # after <s>

    return side(ids_m, toks_m, toks_w) - side(ids_w, toks_w, toks_m)


def log_probs_window(model, tok, ids, j, window):
    from protlm.models.longformer import encoder_kwargs  # Longformer: global attention on <s>; others: none

    a, b = gym_window(j, len(ids), window)
    x = torch.tensor([ids[a:b]])
    x[0, j - a] = tok.mask_token_id
    with torch.no_grad():
        logits = model(input_ids=x, **encoder_kwargs(model.config, x)).logits
    return torch.log_softmax(logits[0, j - a], -1)[ids[j]].item()


@pytest.mark.parametrize(("strategy", "window"), [("masked-marginal", None), ("pll", None), ("span", 16)])
def test_bpe_scores_equal_rescoring_by_hand(micro_model, strategy, window):
    s = scorer(micro_model, strategy=strategy, context=1, max_tokens=window)
    assert s.strategy == ("pll" if strategy == "pll" else "span")  # marginals are undefined over BPE tokens
    got = s.score(SHORT, parse_variants(SHORT, SHORT_MUTANTS))
    context = None if strategy == "pll" else 1
    want = [direct_span(micro_model, SHORT, m, context, window or 128) for m in SHORT_MUTANTS]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def byte_bpe(tmp_path_factory):
    """paccmann's layout: a byte-level BPE RoBERTa (vocab.json + merges.txt)."""
    from backbones import build_roberta_bpe
    from protlm.io import iter_fasta

    seqs = [r.seq for r in iter_fasta(DATA / "swissprot_50.fasta")]
    return build_roberta_bpe(tmp_path_factory.mktemp("bytebpe") / "m", seqs, max_tokens=WINDOW)


@pytest.fixture(scope="module")
def longformer(micro_model, tmp_path_factory):
    from protlm.models.longformer import convert_roberta_to_longformer

    return convert_roberta_to_longformer(micro_model, tmp_path_factory.mktemp("lf") / "m", max_length=256, window=32)


@pytest.mark.parametrize("family", ["byte_bpe", "longformer"])
@pytest.mark.parametrize("strategy", ["span", "pll"])
def test_other_backbones_equal_rescoring_by_hand(family, strategy, request):
    path = request.getfixturevalue(family)
    mutants = SHORT_MUTANTS[1:2] + SHORT_MUTANTS[-2:]
    got = scorer(path, strategy=strategy).score(SHORT, parse_variants(SHORT, mutants))
    context = None if strategy == "pll" else 2
    window = open_model(path).config().max_position_embeddings - 2
    want = [direct_span(path, SHORT, m, context, window) for m in mutants]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_the_bpe_tokenization_does_change_around_mutations(micro_model):
    tok = open_model(micro_model).tokenizer()
    lengths = {len(tok.encode(SHORT[: p - 1] + a + SHORT[p:])) for p in (5, 20) for a in STANDARD}
    assert len(lengths) > 1  # so the span scorer is exercised on real re-tokenizations


# ---------------------------------------------------------------- the Python API


def test_python_api(esm):
    import protlm

    lm = protlm.load(esm, device="cpu")
    wt = SHORT
    mutants = [_sub(wt, 23), f"{_sub(wt, 23)}:{_sub(wt, 35)}"]
    got = lm.score_variants(wt, mutants, strategy="masked-marginal", precision="fp32")
    want = scorer(esm).score(wt, [parse_mutant(m) for m in mutants])
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert got.shape == (2,) and got[1] != got[0]
    wrong = next(a for a in STANDARD if a != wt[22])
    with pytest.raises(protlm.errors.ProtlmError, match="the wild type has"):
        lm.score_variants(wt, [f"{wrong}23A"])


# ---------------------------------------------------------------- files in ProteinGym's layout, the CLI


def dms_table(wt: str, mutants: list[str], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    seqs = []
    for m in mutants:
        s = list(wt)
        for part in m.split(":"):
            s[int(part[1:-1]) - 1] = part[-1]
        seqs.append("".join(s))
    score = rng.normal(size=len(mutants))
    return pd.DataFrame({"mutant": mutants, "mutated_sequence": seqs, "DMS_score": score.round(4),
                         "DMS_score_bin": (score > np.median(score)).astype(int)})  # fmt: skip


def all_singles(wt: str, positions) -> list[str]:
    return [f"{wt[p - 1]}{p}{a}" for p in positions for a in STANDARD if a != wt[p - 1]]


@pytest.fixture(scope="module")
def gym(tmp_path_factory):
    """Three assays on two proteins, as ProteinGym lays them out: a reference file and a DMS folder."""
    root = tmp_path_factory.mktemp("gym")
    (root / "DMS_ProteinGym_substitutions").mkdir()
    other = "".join(np.random.default_rng(3).choice(list(STANDARD), 30))
    assays = [("PROT1_HUMAN_Smith_2020", "PROT1_HUMAN", SHORT, "Stability"),
              ("PROT1_HUMAN_Jones_2021", "PROT1_HUMAN", SHORT, "Activity"),
              ("PROT2_ECOLI_Lee_2019", "PROT2_ECOLI", other, "Activity")]  # fmt: skip
    rows = []
    for k, (dms_id, uniprot, wt, kind) in enumerate(assays):
        mutants = all_singles(wt, range(1 + k, 8 + k)) + [f"{_sub(wt, 2 + k)}:{_sub(wt, 9 + k)}"]
        table = dms_table(wt, mutants, seed=k)
        table.to_csv(root / "DMS_ProteinGym_substitutions" / f"{dms_id}.csv", index=False)
        rows.append({"DMS_id": dms_id, "DMS_filename": f"{dms_id}.csv", "UniProt_ID": uniprot, "taxon": "Human",
                     "target_seq": wt, "seq_len": len(wt), "includes_multiple_mutants": True,
                     "DMS_total_number_mutants": len(table), "DMS_binarization_cutoff": 0.0,
                     "coarse_selection_type": kind})  # fmt: skip
    pd.DataFrame(rows).to_csv(root / "DMS_substitutions.csv", index=False)
    return root


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_score_cli_writes_every_column_plus_score_and_the_metrics(esm, gym, tmp_path, capsys, suffix):
    source = pd.read_csv(gym / "DMS_ProteinGym_substitutions" / "PROT1_HUMAN_Smith_2020.csv")
    source["note"] = "kept"
    src = tmp_path / f"dms{suffix}"
    if suffix == ".parquet":
        source.to_parquet(src, index=False)
    else:
        source.to_csv(src, sep="\t" if suffix == ".tsv" else ",", index=False)
    out, metrics = tmp_path / f"scored{suffix}", tmp_path / "m.json"
    code, stdout, _ = run_cli(["variants", "score", str(src), "--model", str(esm), "--out", str(out),
                               "--metrics", str(metrics), "--precision", "fp32", "--device", "cpu"], capsys)  # fmt: skip
    assert code == 0, stdout
    table = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out, sep="\t" if suffix == ".tsv" else ",")
    assert list(table.columns) == [*source.columns, "score"] and (table["note"] == "kept").all()
    want = scorer(esm).score(SHORT, [parse_mutant(m) for m in source["mutant"]])
    np.testing.assert_allclose(table["score"].astype(float), want, atol=1e-5)
    result = json.loads(metrics.read_text())
    assert set(result) >= {"spearman", "n", "auc", "mcc", "ndcg", "top10_recall", "strategy"}
    assert result["precision"] == "fp32" and "fp32 on cpu" in stdout
    assert result["n"] == len(source) and "spearman" in stdout


def test_benchmark_cli_on_proteingym_layout(esm, gym, tmp_path, capsys):
    out = tmp_path / "bench"
    code, stdout, _ = run_cli(["variants", "benchmark", "--reference", str(gym / "DMS_substitutions.csv"),
                               "--dms-dir", str(gym / "DMS_ProteinGym_substitutions"), "--model", str(esm),
                               "--out", str(out), "--precision", "fp32", "--device", "cpu"], capsys)  # fmt: skip
    assert code == 0, stdout
    per = pd.read_csv(out / "per_assay.csv")
    assert list(per["DMS_id"]) == ["PROT1_HUMAN_Smith_2020", "PROT1_HUMAN_Jones_2021", "PROT2_ECOLI_Lee_2019"]
    summary = json.loads((out / "summary.json").read_text())
    by_protein = per.groupby("UniProt_ID")["spearman"].mean().mean()  # per UniProt ID first
    assert summary["spearman"]["mean_over_proteins"] == pytest.approx(by_protein, abs=2e-4)
    assert summary["spearman"]["mean_over_assays"] == pytest.approx(per["spearman"].mean(), abs=2e-4)
    assert summary["assays"] == 3 and summary["proteins"] == 2 and "proteingym_average" in summary["spearman"]
    assert (out / "spearman.png").stat().st_size > 1000 and len(list((out / "scores").iterdir())) == 3
    assert "mean_over_proteins" in stdout


# ---------------------------------------------------------------- bad input: one line, exit 2, nothing written


def _bad(wt: str) -> dict[str, tuple[str, str]]:
    """Name -> (file text, expected message part)."""
    good = dms_table(wt, [_sub(wt, 3), _sub(wt, 7)])
    seq3 = good["mutated_sequence"][0]
    wrong = next(a for a in STANDARD if a != wt[6])
    lines = {
        "wild-type letter": (f"{wrong}7A", wt[:6] + "A" + wt[7:], "the wild type has"),
        "out of range": (f"A{len(wt) + 5}C", wt, "past the wild type"),
        "indel (mutant)": (f"{wt[6]}7-", wt[:6] + wt[7:], "an indel"),
        "indel (sequence)": (f"{wt[6]}7A", wt[:6] + "A" + wt[7:] + "G", "an indel"),
        "non-amino acid": (f"{wt[6]}7B", wt, "not one of the 20 amino acids"),
    }
    cases = {}
    for name, (mutant, seq, message) in lines.items():
        text = f"mutant,mutated_sequence,DMS_score\n{good['mutant'][0]},{seq3},0.5\n{mutant},{seq},1.0\n"
        cases[name] = (text, message)
    cases["empty file"] = ("", "empty file")
    cases["missing column"] = (f"mutant,DMS_score\n{good['mutant'][0]},0.5\n", "missing column(s) mutated_sequence")
    cases["header only"] = ("mutant,mutated_sequence\n", "no variants")
    return cases


@pytest.mark.parametrize("case", list(_bad(SHORT)))
def test_bad_input_is_one_line_exit_2_nothing_written(esm, tmp_path, capsys, case):
    text, message = _bad(SHORT)[case]
    src = tmp_path / "dms.csv"
    src.write_text(text)
    out, metrics = tmp_path / "scored.csv", tmp_path / "m.json"
    code, _, err = run_cli(["variants", "score", str(src), "--model", str(esm), "--out", str(out),
                            "--metrics", str(metrics)], capsys)  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and err.startswith("protlm: error: ") and message in err, err
    assert str(src) in err and ("line 3" in err or case in ("empty file", "missing column", "header only"))
    assert not out.exists() and not metrics.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["dms.csv"]


def test_rows_must_agree_with_the_given_wild_type(esm, tmp_path, capsys):
    src = tmp_path / "dms.csv"
    dms_table(SHORT, [_sub(SHORT, 3)]).to_csv(src, index=False)
    other = SHORT[:2] + ("A" if SHORT[2] != "A" else "C") + SHORT[3:]
    code, _, err = run_cli(["variants", "score", str(src), "--model", str(esm), "--out", str(tmp_path / "o.csv"),
                            "--wt", other], capsys)  # fmt: skip
    assert code == 2 and "line 2" in err and "the wild type has" in err and not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("cmd", [["variants"], ["variants", "score"], ["variants", "benchmark"]])
def test_variants_commands_have_help(cmd, capsys):
    code, out, _ = run_cli([*cmd, "--help"], capsys)
    assert code == 0 and "Usage" in out


@pytest.mark.parametrize(("column", "value"), [("DMS_id", "../../outside"), ("DMS_id", "/tmp/abs"),
                                               ("DMS_filename", "../DMS_substitutions.csv"),
                                               ("DMS_filename", "/etc/passwd"), ("DMS_id", "a;rm -rf x")])  # fmt: skip
def test_reference_names_are_file_names_never_paths(esm, gym, tmp_path, capsys, column, value):
    """A reference row is a crafted input: its DMS_id names an output file and its DMS_filename an input file,
    so either one as a path (or with shell characters) is refused before anything is read or written."""
    ref = pd.read_csv(gym / "DMS_substitutions.csv")
    ref.loc[1, column] = value
    crafted = tmp_path / "ref.csv"
    ref.to_csv(crafted, index=False)
    out = tmp_path / "bench"
    code, _, err = run_cli(["variants", "benchmark", "--reference", str(crafted), "--dms-dir",
                            str(gym / "DMS_ProteinGym_substitutions"), "--model", str(esm), "--out", str(out)], capsys)  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and "not a plain file name" in err and "line 3" in err, err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["ref.csv"]
