"""Benchmark: `protlm variants score` (masked-marginal) against fair-esm's `examples/variant-prediction`, one run.

- Model: the ESM-2 8M shape (6 layers, 320 hidden, 20 heads, 1,280 intermediate, ESM's 33-token alphabet),
  random weights, built offline; the same weights copied into fair-esm's `esm.ESM2(num_layers=6,
  embed_dim=320, attention_heads=20, alphabet=esm.Alphabet.from_architecture("ESM-1b"))` (their logits
  are checked to agree).
- Input: a 500-residue protein (seeded, the 20 amino acids) and all 19 x 500 single mutants, as a CSV in
  ProteinGym's layout (mutant, mutated_sequence, DMS_score, DMS_score_bin).
- protlm: the command as a user runs it, in process (`protlm.cli.main`): `protlm variants score DMS.csv
  --model DIR --out scored.csv` with `--precision fp32` (the CPU's default) and with `--precision bf16`:
  reading, model loading, 500 batched passes, writing.
- fair-esm: `predict.py --scoring-strategy masked-marginals` as written there: the batch converter, one
  pass per input position (L + 2) with that token masked, a log-softmax over the vocabulary, then
  `df.apply(label_row)`; timed from the batch converter to the scores (the model is built before).
Both on the CPU with torch's default threads; the sides alternate for `--reps` rounds and the best time of
each is reported (the machine is shared). The scores of the two are compared (fp32).

    .venv/bin/pip install fair-esm
    .venv/bin/python bench/variant_scoring.py --reps 2
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
AMINO = "ACDEFGHIKLMNPQRSTVWY"
# facebook/esm2_t6_8M_UR50D vocab.txt, in order (fair-esm's ESM-1b alphabet is the same list).
ESM_VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q",
             "N", "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z", "O", ".", "-", "<null_1>", "<mask>"]  # fmt: skip


def build_model(out: Path) -> Path:
    """An ESM-2 8M-shaped HF masked LM with random weights and ESM's tokenizer, saved to `out`."""
    from transformers import EsmConfig, EsmForMaskedLM, EsmTokenizer

    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.txt").write_text("\n".join(ESM_VOCAB))
    config = EsmConfig(vocab_size=33, hidden_size=320, num_hidden_layers=6, num_attention_heads=20,
                       intermediate_size=1280, max_position_embeddings=1026, position_embedding_type="rotary",
                       token_dropout=True, emb_layer_norm_before=False, layer_norm_eps=1e-5, pad_token_id=1,
                       mask_token_id=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fmt: skip
    torch.manual_seed(0)
    EsmForMaskedLM(config).save_pretrained(out, safe_serialization=True)
    EsmTokenizer(str(out / "vocab.txt")).save_pretrained(out)
    return out


def fair_esm_model(hf_dir: Path):
    """fair-esm's ESM2 of the same shape, holding the HF model's weights."""
    import esm
    from transformers import EsmForMaskedLM

    hf = EsmForMaskedLM.from_pretrained(hf_dir).state_dict()
    alphabet = esm.Alphabet.from_architecture("ESM-1b")
    model = esm.ESM2(num_layers=6, embed_dim=320, attention_heads=20, alphabet=alphabet).eval()
    names = {"embed_tokens.weight": "esm.embeddings.word_embeddings.weight",
             "emb_layer_norm_after.weight": "esm.encoder.emb_layer_norm_after.weight",
             "emb_layer_norm_after.bias": "esm.encoder.emb_layer_norm_after.bias",
             "lm_head.weight": "lm_head.decoder.weight", "lm_head.bias": "lm_head.bias"}  # fmt: skip
    per_layer = {"self_attn.q_proj": "attention.self.query", "self_attn.k_proj": "attention.self.key",
                 "self_attn.v_proj": "attention.self.value", "self_attn.out_proj": "attention.output.dense",
                 "self_attn_layer_norm": "attention.LayerNorm", "fc1": "intermediate.dense", "fc2": "output.dense",
                 "final_layer_norm": "LayerNorm"}  # fmt: skip
    state = model.state_dict()
    for key in state:
        if key.startswith("layers."):
            _, i, rest = key.split(".", 2)
            module, leaf = rest.rsplit(".", 1)
            if module in per_layer:
                names[key] = f"esm.encoder.layer.{i}.{per_layer[module]}.{leaf}"
        elif key.startswith("lm_head.") and key not in names:
            names[key] = key
        elif key.startswith("contact_head."):
            names[key] = "esm." + key
    model.load_state_dict({k: hf[names[k]] if k in names else v for k, v in state.items()})
    return model, alphabet


def check_same_function(hf_dir: Path, model, alphabet, seq: str) -> float:
    """Max |logit difference| of the two models on one input (they must compute the same function)."""
    from transformers import EsmForMaskedLM

    _, _, tokens = alphabet.get_batch_converter()([("p", seq)])
    with torch.no_grad():
        a = model(tokens)["logits"]
        b = EsmForMaskedLM.from_pretrained(hf_dir).eval()(input_ids=tokens).logits
    return float((a - b).abs().max())


def write_assay(path: Path, wt: str) -> pd.DataFrame:
    rows = [(f"{w}{p + 1}{a}", wt[:p] + a + wt[p + 1 :]) for p, w in enumerate(wt) for a in AMINO if a != w]
    score = np.random.default_rng(1).normal(size=len(rows))
    df = pd.DataFrame(rows, columns=["mutant", "mutated_sequence"])
    df["DMS_score"], df["DMS_score_bin"] = score, (score > np.median(score)).astype(int)
    df.to_csv(path, index=False)
    return df


def run_protlm(dms: Path, model_dir: Path, out: Path, precision: str) -> tuple[float, np.ndarray]:
    """`protlm variants score` in process: seconds and the written scores."""
    from protlm.cli import main

    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        try:
            main(["variants", "score", str(dms), "--model", str(model_dir), "--out", str(out),
                  "--precision", precision, "--device", "cpu"])  # fmt: skip
        except SystemExit as e:
            if e.code:
                raise RuntimeError(printed.getvalue()) from None
    return time.perf_counter() - start, pd.read_csv(out)["score"].to_numpy()


def run_fair_esm(model, alphabet, wt: str, dms: Path) -> tuple[float, np.ndarray]:
    """predict.py's masked-marginals branch, as written there (CPU: no .cuda())."""
    df = pd.read_csv(dms)
    start = time.perf_counter()
    batch_converter = alphabet.get_batch_converter()
    _, _, batch_tokens = batch_converter([("protein1", wt)])
    all_token_probs = []
    for i in range(batch_tokens.size(1)):
        batch_tokens_masked = batch_tokens.clone()
        batch_tokens_masked[0, i] = alphabet.mask_idx
        with torch.no_grad():
            token_probs = torch.log_softmax(model(batch_tokens_masked)["logits"], dim=-1)
        all_token_probs.append(token_probs[:, i])
    token_probs = torch.cat(all_token_probs, dim=0).unsqueeze(0)

    def label_row(row):
        w, idx, mt = row[0], int(row[1:-1]) - 1, row[-1]
        assert wt[idx] == w
        return (token_probs[0, 1 + idx, alphabet.get_idx(mt)] - token_probs[0, 1 + idx, alphabet.get_idx(w)]).item()

    scores = df["mutant"].apply(label_row).to_numpy()
    return time.perf_counter() - start, scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=500)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--skip-esm", action="store_true", help="protlm only (no fair-esm)")
    args = ap.parse_args()
    wt = "".join(np.random.default_rng(0).choice(list(AMINO), args.length))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = build_model(tmp / "esm2-8m-random")
        dms = tmp / "DMS.csv"
        n = len(write_assay(dms, wt))
        print(f"{n:,} single mutants of a {len(wt)}-residue protein; torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads")  # fmt: skip
        esm_model = None
        if not args.skip_esm:
            esm_model, alphabet = fair_esm_model(model_dir)
            print(f"fair-esm vs HF logits, max |diff|: {check_same_function(model_dir, esm_model, alphabet, wt):.2e}")
        times: dict[str, list[float]] = {"protlm fp32": [], "protlm bf16": [], "fair-esm": []}
        scores = {}
        for _ in range(args.reps):
            for precision in ("fp32", "bf16"):
                t, scores[precision] = run_protlm(dms, model_dir, tmp / f"scored-{precision}.csv", precision)
                times[f"protlm {precision}"].append(t)
                print(f"  protlm --precision {precision}: {t:.1f} s", flush=True)
            if esm_model is not None:
                t, scores["esm"] = run_fair_esm(esm_model, alphabet, wt, dms)
                times["fair-esm"].append(t)
                print(f"  fair-esm masked-marginals: {t:.1f} s", flush=True)
        report(times, scores)


def report(times: dict[str, list[float]], scores: dict[str, np.ndarray]) -> None:
    from scipy.stats import spearmanr

    best = {k: min(v) for k, v in times.items() if v}
    for k, v in best.items():
        print(f"{k:<14} best {v:7.1f} s   ({', '.join(f'{x:.1f}' for x in times[k])})")
    if "fair-esm" in best:
        for p in ("fp32", "bf16"):
            print(f"fair-esm / protlm {p}: {best['fair-esm'] / best[f'protlm {p}']:.2f}x")
        print(f"scores, protlm fp32 vs fair-esm: max |diff| {np.abs(scores['fp32'] - scores['esm']).max():.2e}")
    print(f"scores, protlm bf16 vs fp32: max |diff| {np.abs(scores['bf16'] - scores['fp32']).max():.2e}, "
          f"Spearman {spearmanr(scores['bf16'], scores['fp32'])[0]:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
