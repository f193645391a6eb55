#!/usr/bin/env bash
# Runs ON the lent GPU machine (device tool `run`, carry [".gpu"]; `just bench-gpu` builds .gpu/
# here first): GPU facts, bench_gpu once per (scan, precision) row — sequence-parallel CubeCL
# kernels, per-channel CubeCL kernels, tensor-op scan; f32 and bf16 — each in its own process so
# that nvidia-smi polling gives the peak GPU memory of that row, then the transformers peer on the
# same GPU. Logs go to $OUT; the tables are printed last. Extra arguments go to both programs
# (e.g. --layers 4 --iters 3). SCANS="seq tensor-ops" / PRECISIONS="bf16" narrow the rows.
set -uo pipefail
OUT="${OUT:-/tmp/bench-gpu}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv | tee "$OUT/gpu.txt"
poll() { while sleep 0.2; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done >"$1"; }
peak() { sort -n "$1" | tail -n 1; }

rows=()
for scan in ${SCANS:-seq per-channel tensor-ops}; do
  for precision in ${PRECISIONS:-f32 bf16}; do
    tag="$scan-$precision"
    poll "$OUT/mem-$tag.txt" & p=$!
    ./.gpu/bench_gpu --only "$scan" --precision "$precision" "$@" >"$OUT/ours-$tag.txt" 2>"$OUT/ours-$tag.err"
    rc=$?
    kill "$p"
    # The row itself, with this process's peak GPU memory appended.
    row=$(grep '^| ' "$OUT/ours-$tag.txt" | grep -v '^| scan' | tail -n 1)
    rows+=("${row:-| $scan | $precision | failed (rc $rc) | | | |} $(peak "$OUT/mem-$tag.txt") |")
    echo "== $tag: rc $rc"; grep -v '^$' "$OUT/ours-$tag.err" | tail -n 3
  done
done

poll "$OUT/mem-peer.txt" & p=$!
PYTHONUNBUFFERED=1 python3 trainer/benches/peer_mamba_gpu.py "$@" >"$OUT/peer.txt" 2>"$OUT/peer.err"; peer_rc=$?
kill "$p"

echo "== ours"
grep -m1 '^bench_gpu' "$OUT"/ours-*.txt | head -n 1 | cut -d: -f2-
grep -m1 '^scan kernels' "$OUT"/ours-*.txt | head -n 1 | cut -d: -f2-
echo "| scan | precision | fwd+bwd ms (median) | tokens/s | MFU % (bf16 peak) | first loss | peak GPU MiB (nvidia-smi) |"
echo "|---|---|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
echo "== transformers (rc $peer_rc, peak GPU memory $(peak "$OUT/mem-peer.txt") MiB, nvidia-smi)"
grep -v "falling back" "$OUT/peer.err" | tail -n 4; cat "$OUT/peer.txt"
