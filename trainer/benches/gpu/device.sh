#!/usr/bin/env bash
# Runs ON the lent GPU machine (device tool `run`, carry [".gpu"]; `just bench-gpu` builds .gpu/
# here first): GPU facts, bench_gpu (fused and tensor-op scan, f32 and bf16), the transformers
# peer on the same GPU, peak GPU memory of each by polling nvidia-smi. Logs go to $OUT; the
# tables are printed last. Extra arguments go to both programs (e.g. --layers 4 --iters 3).
set -uo pipefail
OUT="${OUT:-/tmp/bench-gpu}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv | tee "$OUT/gpu.txt"
poll() { while sleep 0.2; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done >"$1"; }

poll "$OUT/mem-ours.txt" & p=$!
./.gpu/bench_gpu "$@" >"$OUT/ours.txt" 2>"$OUT/ours.err"; ours_rc=$?
kill "$p"
poll "$OUT/mem-peer.txt" & p=$!
PYTHONUNBUFFERED=1 python3 trainer/benches/peer_mamba_gpu.py "$@" >"$OUT/peer.txt" 2>"$OUT/peer.err"; peer_rc=$?
kill "$p"

echo "== ours (rc $ours_rc)"; tail -n 20 "$OUT/ours.err" | grep -v '^$' | tail -n 4; cat "$OUT/ours.txt"
echo "== transformers (rc $peer_rc)"; grep -v "falling back" "$OUT/peer.err" | tail -n 4; cat "$OUT/peer.txt"
echo "== peak GPU memory used (MiB, nvidia-smi): ours $(sort -n "$OUT/mem-ours.txt" | tail -n 1), transformers $(sort -n "$OUT/mem-peer.txt" | tail -n 1)"
