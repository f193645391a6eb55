#!/usr/bin/env python3
"""Golden parity through the binary users get, for `gpu-check` (no numpy needed).

`trainer score --device D --grads --hidden --greedy N` on a golden fixture's input (tiny-a,
tiny-b: transformers in float64), then every output tensor against the fixture by
||ours - golden|| / ||golden||: logits, loss and hidden states against --bound, every parameter
gradient against --grad-bound, and the greedy continuation token for token. Prints one JSON line
and exits 1 when a bound or the continuation fails.
"""
import argparse, array, json, math, os, struct, subprocess, sys, tempfile


def read_st(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        a, b = meta["data_offsets"]
        code = {"F32": "f", "I64": "q"}.get(meta["dtype"])
        if code is None:
            continue
        values = array.array(code)
        values.frombytes(raw[base + a:base + b])
        if sys.byteorder != "little":
            values.byteswap()
        out[name] = (meta["shape"], values)
    return out


def write_st(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, (shape, values) in tensors.items():
        blob = array.array("q", values).tobytes()
        header[name] = {"dtype": "I64", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def rel_err(have, want):
    num = sum((float(x) - float(y)) ** 2 for x, y in zip(have, want))
    den = sum(float(y) ** 2 for y in want)
    return math.sqrt(num / max(den, 1e-300))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--trainer", required=True)
    p.add_argument("--device", required=True)
    p.add_argument("--model", required=True, help="a golden fixture directory (tiny-a, tiny-b)")
    p.add_argument("--bound", type=float, required=True)
    p.add_argument("--grad-bound", type=float, required=True)
    p.add_argument("--log", default=None)
    a = p.parse_args()
    golden = read_st(os.path.join(a.model, "golden.safetensors"))
    prompt_shape, prompt = golden["generate.prompt"]
    _, expect = golden["generate.output"]
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = os.path.join(tmp, "in.safetensors"), os.path.join(tmp, "out.safetensors")
        write_st(inp, {"input_ids": golden["input_ids"], "generate.prompt": (prompt_shape, prompt)})
        cmd = [a.trainer, "score", "--device", a.device, "--grads", "--hidden", "--greedy",
               str(len(expect) - len(prompt)), "--model", a.model, "--input", inp, "--out", out]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if a.log:
            with open(a.log, "w") as f:
                f.write(r.stdout + r.stderr)
        if r.returncode != 0:
            print(json.dumps({"ok": False, "error": (r.stderr.strip().splitlines() or ["?"])[-1]}))
            return 1
        ours = read_st(out)
    worst = {"logits/loss/hidden": 0.0, "gradients": 0.0}
    counted = {"logits/loss/hidden": 0, "gradients": 0}
    for name, (shape, want) in golden.items():
        if name == "input_ids" or name.startswith("generate.") or name.endswith("_transformers"):
            continue
        if name not in ours or ours[name][0] != shape:
            print(json.dumps({"ok": False, "error": f"{name}: missing or of another shape"}))
            return 1
        kind = "gradients" if name.startswith("grad.") else "logits/loss/hidden"
        worst[kind] = max(worst[kind], rel_err(ours[name][1], want))
        counted[kind] += 1
    greedy_ok = list(ours["generate.output"][1]) == list(expect)
    ok = (greedy_ok and counted["gradients"] > 10
          and worst["logits/loss/hidden"] <= a.bound and worst["gradients"] <= a.grad_bound)
    print(json.dumps({"ok": ok, "max_rel": worst, "tensors": counted, "greedy_equal": greedy_ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
