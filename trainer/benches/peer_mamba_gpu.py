"""Peer for bench_gpu: transformers' MambaForCausalLM forward+backward on a GPU (its PyTorch path
when mamba_ssm is absent), f32 and bf16 autocast, timed with CUDA events (median after warm-up).

Usage: peer_mamba_gpu.py [--layers 24 --hidden 768 --vocab 50280 --batch 8 --len 2048
                          --iters 5 --warmup 2 --device cuda]
Prints one JSON line per precision: {"precision", "fwd_bwd_ms", "tokens_per_s", "peak_mem_gib",
"loss", "torch", "transformers", "device"}. `--device cpu` with a tiny shape is a smoke test.
"""
import argparse, json, statistics, time

p = argparse.ArgumentParser()
p.add_argument("--layers", type=int, default=24)
p.add_argument("--hidden", type=int, default=768)
p.add_argument("--vocab", type=int, default=50280)
p.add_argument("--batch", type=int, default=8)
p.add_argument("--len", type=int, default=2048)
p.add_argument("--iters", type=int, default=5)
p.add_argument("--warmup", type=int, default=2)
p.add_argument("--device", default="cuda")
a = p.parse_args()

import torch, transformers
from transformers import MambaConfig, MambaForCausalLM

dev = torch.device(a.device)
cuda = dev.type == "cuda"
torch.manual_seed(0)
cfg = MambaConfig(vocab_size=a.vocab, hidden_size=a.hidden, num_hidden_layers=a.layers,
                  state_size=16, expand=2, conv_kernel=4)
model = MambaForCausalLM(cfg).float().to(dev).train()
ids = torch.randint(0, a.vocab, (a.batch, a.len), device=dev)

for precision in ["f32", "bf16"]:
    if precision == "bf16" and not cuda:
        continue
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    times, loss_value = [], None
    for i in range(a.warmup + a.iters):
        model.zero_grad(set_to_none=True)
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        else:
            t0 = time.perf_counter()
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        if cuda:
            end.record()
            torch.cuda.synchronize(dev)
            ms = start.elapsed_time(end)
        else:
            ms = (time.perf_counter() - t0) * 1e3
        if i == 0:
            loss_value = loss.item()
        if i >= a.warmup:
            times.append(ms)
    med = statistics.median(times)
    print(json.dumps({
        "precision": precision, "fwd_bwd_ms": med, "tokens_per_s": a.batch * a.len / (med / 1e3),
        "peak_mem_gib": torch.cuda.max_memory_allocated(dev) / 2**30 if cuda else None,
        "loss": loss_value, "torch": torch.__version__, "transformers": transformers.__version__,
        "device": torch.cuda.get_device_name(dev) if cuda else "cpu",
    }), flush=True)
