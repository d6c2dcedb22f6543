#!/usr/bin/env bash
# The one-shot GPU check (issue 28): on a bare machine with CUDA torch, no internet and none of duckdb /
# lmdb / gemmi / p-scldata installed, it measures in about 8 minutes what a GPU user runs and writes
# one results file, gpu_check.md (with the full log beside it):
#   1. protlm doctor: versions, the device, the measured matmul peak;
#   2. `protlm pretrain` for 45 s of training with its defaults (roberta-base; --tokens-per-batch auto);
#   3. bench/pretrain_throughput.py at roberta-base with the budget pretrain chose: HF Trainer and
#      protlm's train_step (as pretrain runs it, kernels on, AdamW not fused, --pack on), every row warmed up, two
#      passes in alternating order, medians;
#   4. the same at the ESM-2 650M size (bench/esm-650m-size.yaml), HF Trainer and protlm (padded, packed);
#   5. `protlm embed --device cuda` as a whole command against fair-esm's pipeline on the GPU;
#   6. the torch.compile lever, when time is left.
# Missing packages travel as wheels in .whl/ (py3.12 manylinux; bench/RESULTS.md says which), and the
# default BPE tokenizer in .gpu/tokenizer (trained beforehand: `protlm tokenizer train --out .gpu/tokenizer`).
#
#     bash bench/gpu_check.sh                                     # on the GPU machine; results in $OUT
#     GPU_CHECK_DEVICE=cpu GPU_CHECK_QUICK=1 PYTHON=.venv/bin/python bash bench/gpu_check.sh  # tiny, on a CPU
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=${OUT:-bench/out/gpu}
WORK=${GPU_CHECK_WORK:-/tmp/protlm_gpu_check}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
QUICK=${GPU_CHECK_QUICK:-0}
BUDGET=${GPU_CHECK_SECONDS:-480}  # optional steps are skipped past this
mkdir -p "$RESULTS" && rm -rf "$WORK" && mkdir -p "$WORK"
LOG=$RESULTS/gpu_check.log MD=$RESULTS/gpu_check.md
: >"$LOG" && : >"$MD"
T0=$(date +%s)
elapsed() { echo $(($(date +%s) - T0)); }
say() { echo "$*" | tee -a "$MD"; }
run() { echo "== [$(elapsed)s] $*" >>"$LOG"; "$@" >>"$LOG" 2>&1; }

PY=${PYTHON:-python3}
if [ "$DEVICE" != cpu ] && compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl >>"$LOG" 2>&1 && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PROTLM_CACHE=$WORK/cache
protlm() { $PY -m protlm "$@"; }

if [ "$QUICK" = 1 ]; then
    BASE=tiny LARGE=tiny PT_TIME=10s ROW_S=2 HF_BASE=8 HF_LARGE=8 LARGE_TPB=2048 EMBED_N=200 PROTEINS=400
else
    BASE=roberta-base LARGE=bench/esm-650m-size.yaml PT_TIME=45s ROW_S=10 HF_BASE=128 HF_LARGE=64 LARGE_TPB=32768
    EMBED_N=5000 PROTEINS=0
fi

say "# GPU check ($(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
say ""
say '```'
{ nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"; } | tee -a "$MD"
protlm doctor 2>&1 | tee -a "$MD" "$LOG"
say '```'

TOK=.gpu/tokenizer
if [ ! -f "$TOK/tokenizer.json" ]; then
    TOK=$WORK/tokenizer
    run protlm tokenizer train --out "$TOK" || say "tokenizer training FAILED (see the log)"
fi

# 2. pretrain as a user runs it: defaults, 45 s of training
say "" && say "## protlm pretrain, defaults, $PT_TIME of training ($BASE) [$(elapsed)s]"
run protlm pretrain --model "$BASE" --tokenizer "$TOK" --max-time "$PT_TIME" --out "$WORK/pretrain" --device "$DEVICE" \
    || say "pretrain FAILED (see the log)"
cp "$WORK/pretrain/metrics.jsonl" "$RESULTS/pretrain_metrics.jsonl" 2>/dev/null
TPB=$($PY - "$WORK/pretrain" <<'EOF' 2>>"$LOG" | tee -a "$MD"
import json, statistics, sys
from pathlib import Path
import yaml
run = Path(sys.argv[1])
cfg = yaml.safe_load((run / "config.yaml").read_text())
logs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"tokens_per_s"' in x]
steady = [r["tokens_per_s"] for r in logs[2:]] or [r["tokens_per_s"] for r in logs]
print(f"tokens per batch {cfg['tokens_per_batch']}, grad accum {cfg['grad_accum']}, {logs[-1]['step']} steps; "
      f"non-pad tokens/s, median of the log lines after the first two: {statistics.median(steady):,.0f}",
      file=sys.stderr)
print(cfg["tokens_per_batch"])
EOF
)
say "$(tail -n 3 "$LOG" | grep -o 'tokens per batch.*' || true)"
TPB=${TPB:-8192}

table() {  # a throughput JSON as a markdown table
    $PY - "$1" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
med = d["median"]
hf = next((r["tokens_per_s"] for n, r in med.items() if n.startswith("HF")), float("nan"))
print(f"matmul peak bf16 {d['peaks']['bfloat16'] / 1e12:.0f} TFLOP/s, fp32 {d['peaks']['float32'] / 1e12:.0f} TFLOP/s")
print("\n| run | non-pad tokens/s (median) | each pass | x HF Trainer | MFU vs bf16 peak | steps |\n|---|---:|---|---:|---:|---:|")
for name, r in med.items():
    each = ", ".join(f"{x['tokens_per_s']:,.0f}" for x in d["runs"][name])
    print(f"| {name} | {r['tokens_per_s']:,.0f} | {each} | {r['tokens_per_s'] / hf:.2f} | {r['mfu_bf16_pct']:.1f}% | {r['steps']} |")
EOF
}

# 3. the step benchmark at the budget pretrain chose
say "" && say "## roberta-base, $TPB tokens per batch: HF Trainer (batch $HF_BASE) vs protlm's train_step [$(elapsed)s]"
if run $PY bench/pretrain_throughput.py --device "$DEVICE" --preset "$BASE" --tokenizer "$TOK" --proteins "$PROTEINS" \
    --tokens-per-batch "$TPB" --hf-batch-size "$HF_BASE" --rows hf,protlm,protlm-kernels-on,protlm-unfused,protlm-packed --passes 2 \
    --seconds "$ROW_S" --json "$RESULTS/throughput_base.json"; then
    table "$RESULTS/throughput_base.json" | tee -a "$MD"
else say "FAILED (see the log)"; fi

# 4. the ESM-2 650M size
say "" && say "## ESM-2 650M size ($LARGE), $LARGE_TPB tokens per batch: HF Trainer (batch $HF_LARGE) vs protlm [$(elapsed)s]"
if run $PY bench/pretrain_throughput.py --device "$DEVICE" --preset "$LARGE" --tokenizer "$TOK" --proteins "$PROTEINS" \
    --tokens-per-batch "$LARGE_TPB" --hf-batch-size "$HF_LARGE" --rows hf,protlm,protlm-packed --passes 2 --seconds "$ROW_S" \
    --json "$RESULTS/throughput_large.json"; then
    table "$RESULTS/throughput_large.json" | tee -a "$MD"
else say "FAILED (see the log)"; fi

# 5. embed as a whole command vs fair-esm, equal size (6 x 320)
say "" && say "## protlm embed --device $DEVICE (whole command) vs fair-esm, $EMBED_N SCL2205 proteins [$(elapsed)s]"
if run $PY bench/embed_throughput.py --command --device "$DEVICE" --n "$EMBED_N" --toks-per-batch 16384 --reps 2 \
    --tokenizer "$TOK"; then
    grep -E "^(rep|protlm embed)" "$LOG" | tail -n 5 | tee -a "$MD"
else say "FAILED (see the log)"; fi

# 6. the compile lever, if time is left
if [ "$(elapsed)" -lt "$((BUDGET - 90))" ]; then
    say "" && say "## torch.compile lever at roberta-base, $TPB tokens per batch [$(elapsed)s]"
    if run $PY bench/pretrain_throughput.py --device "$DEVICE" --preset "$BASE" --tokenizer "$TOK" --proteins "$PROTEINS" \
        --tokens-per-batch "$TPB" --rows protlm,protlm-compile --passes 1 --seconds "$ROW_S" \
        --json "$RESULTS/throughput_compile.json"; then
        table "$RESULTS/throughput_compile.json" | tee -a "$MD"
        $PY -c "import json,sys; d=json.load(open(sys.argv[1])); print('warm-up seconds (5 steps; compile included):', {n: round(r['warmup_seconds'], 1) for n, r in d['median'].items()})" \
            "$RESULTS/throughput_compile.json" | tee -a "$MD"
    else say "FAILED (see the log)"; fi
else
    say "" && say "torch.compile lever skipped: $(elapsed)s used of $BUDGET"
fi
say "" && say "done in $(elapsed)s"
