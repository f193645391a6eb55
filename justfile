# biomamba: raw PubMed → biomedical Mamba, end to end. `just --list` shows every recipe.

set shell := ["bash", "-euo", "pipefail", "-c"]

export CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", env_var("HOME") + "/.cache/biomamba-target")
export BIOMAMBA_FIXTURES := env_var_or_default("BIOMAMBA_FIXTURES", justfile_directory() + "/../shared/fixtures")

# Real runs use the paper's settings; the demo uses the bundled sample.
config := env_var_or_default("CONFIG", "configs/pubmed-130m.toml")
data := env_var_or_default("DATA", "data")

default:
    @just --list

# Run every test of the workspace and print one summary line.
test:
    #!/usr/bin/env bash
    set -uo pipefail
    log=$(mktemp)
    cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1); if ($(i) ~ /^ignored;?$/) ig += $(i-1) } }
         /^SKIP/ { s++ }
         END { printf "summary: %d passed, %d failed, %d ignored, %d skip lines\n", p, f, ig, s; printf "%d passed, %d failed\n", p, f }' "$log"
    rm -f "$log"
    exit $status

# Parser benchmark: ours vs pubmed_parser (Python) vs zcat on a ≥30,000-citation gzipped file.
bench-parse *ARGS:
    cargo run --release -p pipeline --bin bench_parse -- {{ARGS}}

# Training-step throughput (tokens/s) of the sample model and mamba-130m (B=1, L=2048) on CPU.
bench-train *ARGS:
    cargo run --release -p trainer --bin bench_train -- {{ARGS}}

# Tokenize stage (Parquet → shards, GPT-NeoX) vs Python tokenizers encode_batch, same docs and threads (≥ 50 MB).
bench-tokenize *ARGS:
    cargo run --release -p pipeline --bin bench_tokenize -- {{ARGS}}
