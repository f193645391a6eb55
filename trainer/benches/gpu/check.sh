#!/usr/bin/env bash
# `just gpu-check`, the part that runs ON the GPU machine (device tool `run`, command
# "bash trainer/benches/gpu/check.sh", carry [".gpu"]): nothing is built there (it has no Rust);
# `just gpu-check` builds the release binaries, copies the golden fixtures and makes the sample's
# shards into .gpu/ first. Prints one table: the devices; golden parity (tiny-a, tiny-b: logits,
# loss, hidden states, every gradient, greedy tokens); the fused scan kernels against the
# tensor-op reference scan (forward + backward loss, f32 and bf16); a training step of mamba-130m
# at 8 x 2048 per precision (tokens/s the median of steps 3-10, peak GPU memory, kernel launches
# and host reads per step); data parallel over 2 GPUs when there are 2; SIGKILL + resume
# bit-identical; the transformers peer on the same GPU. Sized for about 8 minutes on one H100/H200.
#
# The same script runs here on wgpu (lavapipe) at small sizes, as CI does (tests/gpu_check.rs):
# DEVICE=wgpu SMALL=1 BIN=<dir with trainer, bench_train, bench_gpu> DATA=<sample data dir>
# GOLDEN=<fixtures golden dir>. Logs go to $OUT; the table is printed last; the exit status is 1
# when any check failed.
set -uo pipefail
DEVICE="${DEVICE:-cuda}"
BIN="${BIN:-.gpu/bin}"
DATA="${DATA:-.gpu/data}"
GOLDEN="${GOLDEN:-.gpu/golden}"
OUT="${OUT:-/tmp/gpu-check}"
SMALL="${SMALL:-0}"
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
mkdir -p "$OUT"
rows=()
failed=0
row() { rows+=("| $1 | $2 | $3 |"); [ "$2" = ok ] || [ "$2" = skip ] || failed=1; }
have_smi=0; command -v nvidia-smi >/dev/null 2>&1 && have_smi=1
poll() { [ $have_smi = 1 ] || return 0; while sleep 0.2; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -n 1; done >"$1"; }
peak() { [ -s "$1" ] && echo "$(sort -n "$1" | tail -n 1) MiB" || echo "n/a"; }
# Runs "$@" with nvidia-smi polling into $OUT/mem-$1.txt (first argument: a tag).
polled() { local tag=$1; shift; poll "$OUT/mem-$tag.txt" & local p=$!; "$@"; local rc=$?; kill $p 2>/dev/null; wait $p 2>/dev/null; return $rc; }
start=$(date +%s)
[ $have_smi = 1 ] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
gpus=$([ $have_smi = 1 ] && nvidia-smi -L | grep -c '^GPU' || echo 0)

# 1. What the trainer sees.
if "$BIN/trainer" devices >"$OUT/devices.txt" 2>&1; then
  row "trainer devices" ok "$(grep -m1 -i 'auto' "$OUT/devices.txt" | cut -c1-150)"
else
  row "trainer devices" fail "$(tail -n 1 "$OUT/devices.txt" | cut -c1-150)"
fi

# 2. Golden parity. On CUDA products are TF32 (about 1e-3); wgpu and the CPU are strict f32.
if [ "$DEVICE" = cuda ] || [[ "$DEVICE" == cuda:* ]]; then bound=5e-3; grad_bound=1e-2; else bound=1e-4; grad_bound=1e-4; fi
for fixture in tiny-a tiny-b; do
  res=$(python3 "$here/golden_check.py" --trainer "$BIN/trainer" --device "$DEVICE" --model "$GOLDEN/mamba/$fixture" \
        --bound $bound --grad-bound $grad_bound --log "$OUT/golden-$fixture.log")
  rc=$?
  row "golden parity $fixture (bounds $bound, grads $grad_bound)" "$([ $rc = 0 ] && echo ok || echo fail)" "$res"
done

# 3. Scan kernels against the tensor-op reference scan: the same model's forward + backward loss.
if [ "$SMALL" = 1 ]; then shape=(--layers 1 --hidden 64 --vocab 256 --batch 2 --len 64); else shape=(--layers 2 --batch 2 --len 1024); fi
precisions="f32 bf16"; [[ "$DEVICE" == wgpu* ]] && precisions="f32"
for p in $precisions; do
  "$BIN/bench_gpu" --device "$DEVICE" --precision "$p" "${shape[@]}" --iters 1 --warmup 0 >"$OUT/scan-$p.txt" 2>"$OUT/scan-$p.err"
  rc=$?
  loss() { grep "^| $1 |" "$OUT/scan-$p.txt" | head -n 1 | awk -F'|' '{gsub(/ /,"",$7); print $7}'; }
  ref=$(loss tensor-op); seq=$(loss "fused CubeCL, sequence-parallel"); pc=$(loss "fused CubeCL, per-channel")
  tol=$([ "$p" = bf16 ] && echo 1e-2 || echo 1e-4)
  verdict=$(python3 -c "
import sys
r, a, b, tol = sys.argv[1:5]
try:
    r, a, b, tol = float(r), float(a), float(b), float(tol)
except ValueError:
    print('fail no loss'); sys.exit()
d = max(abs(a - r), abs(b - r)) / abs(r)
print(('ok' if d <= tol else 'fail') + f' reference loss {r:.5f}, sequence-parallel {a:.5f}, per-channel {b:.5f}: max rel {d:.1e} (bound {tol})')
" "${ref:-x}" "${seq:-x}" "${pc:-x}" "$tol")
  [ $rc = 0 ] || verdict="fail rc $rc: $(tail -n 1 "$OUT/scan-$p.err" | cut -c1-120)"
  row "scan kernels vs reference, $p" "${verdict%% *}" "${verdict#* }"
done

# 4. Training steps (forward + backward + accumulation + clip + AdamW), one process per run so
# nvidia-smi gives each its peak memory; kernel launches from CubeCL's own log in a short run.
# (SMALL: a 4,096-token vocabulary, since wgpu's default binding limit of 128 MiB is below the
# 154 MB embedding of the 50,280-token one.)
if [ "$SMALL" = 1 ]; then train=(--layers 1 --vocab 4096 --micro-batch 1 --len 128 --warmup 1 --iters 2); else train=(--micro-batch 8 --len 2048 --warmup 2 --iters 8); fi
if [[ "$DEVICE" == cuda* ]]; then train_precisions="tf32 bf16"; else train_precisions="f32"; fi
for p in $train_precisions; do
  polled "train-$p" "$BIN/bench_train" --device "$DEVICE" --precision "$p" "${train[@]}" >"$OUT/train-$p.txt" 2>"$OUT/train-$p.err"
  rc=$?
  line=$(grep '^| mamba-130m' "$OUT/train-$p.txt" | head -n 1)
  if [ $rc = 0 ] && [ -n "$line" ]; then
    tps=$(echo "$line" | awk -F'|' '{gsub(/ /,"",$5); print $5}'); reads=$(echo "$line" | awk -F'|' '{gsub(/ /,"",$6); print $6}')
    row "train step mamba-130m ${train[*]} $p" ok "$tps tokens/s (median), $reads host read(s)/step, peak GPU $(peak "$OUT/mem-train-$p.txt")"
  else
    row "train step mamba-130m $p" fail "rc $rc: $(tail -n 1 "$OUT/train-$p.err" | cut -c1-150)"
  fi
done
kdir="$OUT/kernels"; mkdir -p "$kdir"
printf '[profiling.logger]\nlevel = "minimal"\nfile = "%s/launches.log"\n' "$kdir" >"$kdir/cubecl.toml"
p=${train_precisions%% *}
if [ "$SMALL" = 1 ]; then count=(--layers 1 --vocab 4096 --len 64); else count=(--layers 24 --len 256); fi
(cd "$kdir" && "$BIN/bench_train" --device "$DEVICE" --precision "$p" "${count[@]}" --micro-batch 1 --iters 1 \
   --kernel-log "$kdir/launches.log" >"$kdir/out.txt" 2>"$kdir/err.txt")
rc=$?
line=$(grep '^| mamba-130m' "$kdir/out.txt" | head -n 1)
if [ $rc = 0 ] && [ -n "$line" ]; then
  ks=$(echo "$line" | awk -F'|' '{gsub(/ /,"",$7); print $7}'); km=$(echo "$line" | awk -F'|' '{gsub(/ /,"",$8); print $8}')
  row "kernel launches, mamba-130m $p" "$([ "$ks" != - ] && echo ok || echo fail)" "$ks per step (1 micro-batch), $km per micro-batch forward + backward"
else
  row "kernel launches, mamba-130m $p" fail "rc $rc: $(tail -n 1 "$kdir/err.txt" | cut -c1-150)"
fi

# 5 and 6: the sample config through `trainer pretrain`: data parallel, SIGKILL + resume.
steps=$([ "$SMALL" = 1 ] && echo 6 || echo 20)
sample=(pretrain --config "$repo/configs/sample.toml" --data-dir "$DATA" --max-steps $steps)
pretrain() { # run dir, device
  "$BIN/trainer" "${sample[@]}" --run-dir "$1" --device "$2"
}
final() { ls -d "$1"/checkpoints/step-* 2>/dev/null | sort | tail -n 1; }
losses() { python3 -c "
import json, sys
for l in open(sys.argv[1]):
    v = json.loads(l)
    print(v.get('step'), v.get('loss'), v.get('val_loss'))
" "$1/metrics.jsonl"; }
runs="$OUT/runs"; rm -rf "$runs"; mkdir -p "$runs"
if pretrain "$runs/one" "$DEVICE" >"$OUT/pretrain-one.log" 2>&1; then
  if [ "$gpus" -ge 2 ]; then
    if pretrain "$runs/two" cuda:0,1 >"$OUT/pretrain-two.log" 2>&1; then
      d=$(python3 -c "
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]; b = [json.loads(l) for l in open(sys.argv[2])]
w = max(abs(x[k] - y[k]) / abs(x[k]) for x, y in zip(a, b) for k in ('loss', 'val_loss') if k in x)
print(f'{w:.1e}')" "$runs/one/metrics.jsonl" "$runs/two/metrics.jsonl")
      row "data parallel cuda:0,1 vs one GPU (sample, $steps steps)" "$(python3 -c "print('ok' if $d <= 1e-4 else 'fail')")" "max rel diff of logged losses $d"
    else
      row "data parallel cuda:0,1" fail "$(tail -n 1 "$OUT/pretrain-two.log" | cut -c1-150)"
    fi
  else
    row "data parallel over 2 GPUs" skip "$gpus GPU(s) here"
  fi
  # SIGKILL at a line chosen by the clock, resume, and compare with the uninterrupted run.
  at=$(( 2 + RANDOM % (steps - 2) ))
  # (The binary itself in the background, so that $! is its process and the kill reaches it.)
  "$BIN/trainer" "${sample[@]}" --run-dir "$runs/killed" --device "$DEVICE" >"$OUT/pretrain-killed.log" 2>&1 &
  pid=$!
  while kill -0 $pid 2>/dev/null && [ "$( { wc -l <"$runs/killed/metrics.jsonl"; } 2>/dev/null || echo 0)" -lt $at ]; do sleep 0.05; done
  kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  pretrain "$runs/killed" "$DEVICE" >"$OUT/pretrain-resumed.log" 2>&1
  rc=$?
  a=$(final "$runs/one"); b=$(final "$runs/killed")
  if [ $rc = 0 ] && [ -n "$b" ] && cmp -s "$a/model.safetensors" "$b/model.safetensors" && [ "$(losses "$runs/one")" = "$(losses "$runs/killed")" ]; then
    row "SIGKILL at line $at + resume on $DEVICE" ok "final weights and every logged loss bit-identical to the uninterrupted run"
  else
    row "SIGKILL at line $at + resume on $DEVICE" fail "rc $rc; weights or losses differ ($(tail -n 1 "$OUT/pretrain-resumed.log" | cut -c1-100))"
  fi
else
  row "pretrain the sample on $DEVICE" fail "$(tail -n 1 "$OUT/pretrain-one.log" | cut -c1-150)"
fi

# 7. The peer: transformers' MambaForCausalLM forward + backward on the same device and shape.
peer_dev=$([[ "$DEVICE" == cuda* ]] && echo cuda || echo cpu)
if [ "$SMALL" = 1 ]; then peer=(--layers 1 --batch 1 --len 128 --iters 2 --warmup 1); else peer=(--batch 8 --len 2048 --iters 8 --warmup 2); fi
if python3 -c "import torch, transformers" 2>/dev/null; then
  PYTHONUNBUFFERED=1 python3 "$repo/trainer/benches/peer_mamba_gpu.py" --device "$peer_dev" "${peer[@]}" >"$OUT/peer.txt" 2>"$OUT/peer.err"
  rc=$?
  detail=$(python3 -c "
import json, sys
for l in open(sys.argv[1]):
    v = json.loads(l)
    mem = f\", peak {v['peak_mem_gib']:.1f} GiB\" if v['peak_mem_gib'] else ''
    print(f\"{v['precision']}: {v['tokens_per_s']:.0f} tokens/s fwd+bwd{mem};\", end=' ')
" "$OUT/peer.txt" 2>/dev/null)
  row "transformers peer ($peer_dev, ${peer[*]})" "$([ $rc = 0 ] && echo ok || echo fail)" "${detail:-$(tail -n 1 "$OUT/peer.err" | cut -c1-150)}"
else
  row "transformers peer" skip "no torch/transformers here"
fi

echo
echo "| check | result | detail |"
echo "|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "gpu-check on $DEVICE: $(( $(date +%s) - start )) s; logs in $OUT"
exit $failed
