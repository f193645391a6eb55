"""Peer timing for bench_model: transformers' MambaForCausalLM or Mamba2ForCausalLM (by the
config's model_type) forward+backward on CPU, through its pure-PyTorch path.

Usage: peer_mamba.py --config JSON --threads N --len L [--iters K]
Prints one JSON line {"fwd_bwd_s": median seconds, "peak_rss_mib": peak RSS of the process,
"torch": version, "transformers": version}.
"""
import argparse, json, resource, statistics, time

p = argparse.ArgumentParser()
p.add_argument("--config", required=True, help="HF config.json path")
p.add_argument("--threads", type=int, required=True)
p.add_argument("--len", type=int, default=512)
p.add_argument("--iters", type=int, default=3)
a = p.parse_args()

import torch, transformers
from transformers import AutoConfig, AutoModelForCausalLM

torch.set_num_threads(a.threads)
torch.manual_seed(0)
# from_pretrained's reader: it understands transformers 5's {"__float__": "Infinity"}.
cfg = AutoConfig.from_pretrained(a.config)
model = AutoModelForCausalLM.from_config(cfg).float().train()
ids = torch.randint(0, cfg.vocab_size, (1, a.len))
times = []
for i in range(a.iters + 1 if a.iters > 0 else 1):
    model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    dt = time.perf_counter() - t0
    if i > 0 or a.iters == 0:  # first iteration is warm-up (unless --iters 0: one cold run)
        times.append(dt)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
print(json.dumps({"fwd_bwd_s": statistics.median(times), "peak_rss_mib": peak,
                  "torch": torch.__version__,
                  "transformers": transformers.__version__}))
