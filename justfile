# biomamba: raw PubMed → biomedical Mamba, end to end. `just --list` shows every recipe.

set shell := ["bash", "-euo", "pipefail", "-c"]

export CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", env_var("HOME") + "/.cache/biomamba-target")
export BIOMAMBA_FIXTURES := env_var_or_default("BIOMAMBA_FIXTURES", justfile_directory() + "/../shared/fixtures")

# Real runs use the paper's settings; the demo uses the bundled sample.
config := env_var_or_default("CONFIG", "configs/pubmed-130m.toml")
data := env_var_or_default("DATA", "data")
# Where the model runs: `auto` (CUDA when a driver and a device are found, else CPU) unless DEVICE
# (cpu, cuda, cuda:N, cuda:0,1,…, wgpu, wgpu:N) or the config's [train] device says otherwise.
device := env_var_or_default("DEVICE", "")
device_flag := if device == "" { "" } else { "--device " + device }

default:
    @just --list

# Both binaries are built in one cargo invocation and then run as built: `cargo run -p pipeline`
# and `cargo run -p trainer` would each unify features on their own and compile the shared crates
# (burn, schemas, …) a second time, in another variant.
build := "cargo build -q -p pipeline -p trainer"
release_build := "cargo build -q --release -p pipeline -p trainer"
pipeline := CARGO_TARGET_DIR + "/debug/pipeline"
trainer := CARGO_TARGET_DIR + "/debug/trainer"
release_pipeline := CARGO_TARGET_DIR + "/release/pipeline"
release_trainer := CARGO_TARGET_DIR + "/release/trainer"

# Whole chain on the bundled sample into data/demo, on the CPU (DEVICE=wgpu|cuda to run there): parse → tokenizer → shards → BioASQ → pretrain → finetune → eval. Mamba-2: `just demo configs/sample-mamba2.toml data/demo-mamba2`; with Wikipedia/C4-style corpora and one document per sequence: `just demo configs/sample-corpora.toml data/demo-corpora`.
demo cfg="configs/sample.toml" d="data/demo":
    #!/usr/bin/env bash
    set -euo pipefail
    cfg={{cfg}}
    d={{d}}
    dev="--device {{ if device == "" { "cpu" } else { device } }}"
    mkdir -p $d/raw/pubmed $d/raw/bioasq
    cp -rp data/sample/pubmed/baseline data/sample/pubmed/updatefiles $d/raw/pubmed/
    cp -p data/sample/bioasq/*.json $d/raw/bioasq/
    {{build}}
    {{pipeline}} --config $cfg --data-dir $d parse
    mkdir -p $d/raw/corpus
    cp -rp data/sample/corpus/. $d/raw/corpus/
    {{pipeline}} --config $cfg --data-dir $d corpus-download --offline
    {{pipeline}} --config $cfg --data-dir $d corpus
    {{pipeline}} --config $cfg --data-dir $d train-tokenizer
    {{pipeline}} --config $cfg --data-dir $d bioasq --offline
    {{pipeline}} --config $cfg --data-dir $d tokenize
    {{pipeline}} --config $cfg --data-dir $d status
    baseline=()
    if grep -q '^\[pretrain.mix\]' $cfg; then
        # Mixed domains: keep the initial model (checkpoint 0) to compare each domain's perplexity with.
        {{trainer}} pretrain --config $cfg --data-dir $d --run-dir $d/runs/pretrain --max-steps 0 $dev
        {{trainer}} export $d/runs/pretrain --out $d/runs/pretrain/initial
        baseline=(--baseline $d/runs/pretrain/initial)
    fi
    {{trainer}} pretrain --config $cfg --data-dir $d --run-dir $d/runs/pretrain $dev
    {{trainer}} export $d/runs/pretrain --out $d/runs/pretrain/export
    cp $d/tokenizer/tokenizer.json $d/runs/pretrain/export/
    {{trainer}} finetune --config $cfg --data-dir $d --init $d/runs/pretrain/export --tokenizer $d/tokenizer/tokenizer.json --task sample --run-dir $d/runs/finetune-sample $dev
    {{trainer}} eval --config $cfg --data-dir $d --ppl --model $d/runs/pretrain/export "${baseline[@]}" --tokenizer $d/tokenizer/tokenizer.json $dev
    echo; echo "== BioASQ factoid QA (Table 3 layout)"; cat $d/runs/finetune-sample/eval/sample/results.md
    echo; echo "== Perplexity on the validation shards (Table 4 layout; per domain when mixed)"; cat $d/runs/pretrain/export/eval/ppl/ppl.md

# Real data: download PubMed, parse, current view, BioASQ and PubMedQA tables, GPT-NeoX tokens (CONFIG, DATA to override).
ingest:
    {{release_build}}
    {{release_pipeline}} --config {{config}} --data-dir {{data}} download
    {{release_pipeline}} --config {{config}} --data-dir {{data}} corpus-download
    {{release_pipeline}} --config {{config}} --data-dir {{data}} fetch-tokenizer
    {{release_pipeline}} --config {{config}} --data-dir {{data}} fetch-model
    {{release_pipeline}} --config {{config}} --data-dir {{data}} parse
    {{release_pipeline}} --config {{config}} --data-dir {{data}} corpus
    {{release_pipeline}} --config {{config}} --data-dir {{data}} bioasq
    {{release_pipeline}} --config {{config}} --data-dir {{data}} pubmedqa
    {{release_pipeline}} --config {{config}} --data-dir {{data}} tokenize
    {{release_pipeline}} --config {{config}} --data-dir {{data}} status

# Continue pretraining mamba-130m on the shards (GPU when found; DEVICE to choose); run it again to resume.
pretrain run="pubmed-130m":
    {{release_build}}
    {{release_trainer}} pretrain --config {{config}} --data-dir {{data}} --run-dir {{data}}/runs/{{run}} {{device_flag}}
    {{release_trainer}} export {{data}}/runs/{{run}} --out {{data}}/runs/{{run}}/export

# Fine-tune RUN's model on BioASQ factoid 4b, 5b, 6b, yes/no + list 6b and PubMedQA, answering each one's test questions; one report of all five runs beside the published numbers (configs/published.toml).
finetune run="pubmed-130m":
    #!/usr/bin/env bash
    set -euo pipefail
    {{release_build}}
    tasks="bioasq-4b bioasq-5b bioasq-6b bioasq-6b-yesno-list pubmedqa"
    runs=()
    for task in $tasks; do
        {{release_trainer}} finetune --config {{config}} --data-dir {{data}} --init {{data}}/runs/{{run}}/export --task $task --run-dir {{data}}/runs/{{run}}/finetune-$task {{device_flag}}
        runs+=("{{run}}={{data}}/runs/{{run}}/finetune-$task")
    done
    {{release_trainer}} report "${runs[@]}" --published configs/published.toml --out {{data}}/runs/{{run}}/table3

# Perplexity on every domain's held-out shards (PubMed; Wikipedia and C4 when mixed in), honest and paper protocol, for RUN's model beside the initial one ([model] init): Table 4.
eval run="pubmed-130m":
    {{release_build}}
    {{release_trainer}} eval --config {{config}} --data-dir {{data}} --ppl --with-init --model {{data}}/runs/{{run}}/export {{device_flag}}

# List the benchmarks; each prints a table with its peer measured in the same run.
bench:
    @just --list | grep bench-

# Loopback download throughput of a 200 MB file, ours vs curl.
bench-download *ARGS:
    cargo run --release -p pipeline --example bench_download -- {{ARGS}}

# Mamba forward+backward on CPU vs transformers (tiny-b, 130m at B=1, L=512), peak memory.
bench-model *ARGS:
    cargo run --release -p trainer --example bench_model -- {{ARGS}}

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

# (trainer/README.md "GPU benchmark": build here into the git-ignored .gpu/, run device.sh on a lent GPU)
# GPU benchmark: builds the CUDA bench binary into .gpu/; then run trainer/benches/gpu/device.sh on a GPU.
bench-gpu:
    CUDARC_CUDA_VERSION=13000 cargo build --release -p trainer --example bench_gpu
    mkdir -p .gpu && cp "${CARGO_TARGET_DIR:-target}/release/examples/bench_gpu" .gpu/
    @echo 'now: device run, command "bash trainer/benches/gpu/device.sh", carry [".gpu"]'

# GPU check: builds release binaries (CUDA 13 API) and copies the golden fixtures and the sample's shards into .gpu/; then runs trainer/benches/gpu/check.sh here if a GPU is here, else prints the device-tool call.
gpu-check:
    #!/usr/bin/env bash
    set -euo pipefail
    CUDARC_CUDA_VERSION=13000 cargo build -q --release -p pipeline -p trainer --bin pipeline --bin trainer --example bench_train --example bench_gpu
    rm -rf .gpu/bin .gpu/golden .gpu/data && mkdir -p .gpu/bin .gpu/golden
    for b in trainer examples/bench_train examples/bench_gpu; do strip -o .gpu/bin/$(basename $b) "$CARGO_TARGET_DIR/release/$b"; done
    cp -r "${BIOMAMBA_GOLDEN:-$BIOMAMBA_FIXTURES/../golden}/mamba" .gpu/golden/
    mkdir -p .gpu/data/raw/pubmed .gpu/data/raw/bioasq
    cp -rp data/sample/pubmed/baseline data/sample/pubmed/updatefiles .gpu/data/raw/pubmed/
    for stage in parse train-tokenizer tokenize; do "$CARGO_TARGET_DIR/release/pipeline" --config configs/sample.toml --data-dir .gpu/data $stage >/dev/null; done
    rm -rf .gpu/data/raw .gpu/data/parquet
    du -sh .gpu
    if nvidia-smi -L >/dev/null 2>&1; then bash trainer/benches/gpu/check.sh; else echo 'now: device run, command "bash trainer/benches/gpu/check.sh", carry [".gpu"]'; fi

# Parser benchmark: ours vs pubmed_parser (Python) vs zcat on a ≥30,000-citation gzipped file.
bench-parse *ARGS:
    cargo run --release -p pipeline --example bench_parse -- {{ARGS}}

# Fuzz the PubMed record parser (cargo-fuzz, libFuzzer) for SECS seconds, seeded with records of the fixture/sample XML.
fuzz-parse SECS="600" *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    cd pipeline/fuzz
    # Own target directory: every crate is built with coverage instrumentation and ASan.
    export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/biomamba-fuzz-target}"
    # cargo-fuzz needs nightly flags (-Zsanitizer); RUSTC_BOOTSTRAP lets the stable toolchain take them.
    export RUSTC_BOOTSTRAP=1
    shopt -s nullglob
    python3 seed_corpus.py corpus/parse_record "$BIOMAMBA_FIXTURES"/pubmed/*.xml "$BIOMAMBA_FIXTURES"/pubmed/*.xml.gz ../../data/sample/pubmed/*/*.xml.gz
    nice cargo fuzz run -O parse_record corpus/parse_record -- -dict=xml.dict -max_len=65536 -max_total_time={{SECS}} -print_final_stats=1 {{ARGS}}

# Training-step throughput (tokens/s) of the sample model and mamba-130m (B=1, L=2048) on CPU.
bench-train *ARGS:
    cargo run --release -p trainer --example bench_train -- {{ARGS}}

# Tokenize stage (Parquet → shards, GPT-NeoX) vs Python tokenizers encode_batch, same docs and threads (≥ 50 MB).
bench-tokenize *ARGS:
    cargo run --release -p pipeline --example bench_tokenize -- {{ARGS}}

# bench-tokenize built with each regex engine of the tokenizers crate (fancy-regex, default; onig), run alternately.
bench-tokenize-engines *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
    for engine in fancy-regex onig; do
        features=(); [ "$engine" = onig ] && features=(--features onig)
        cargo build -q --release -p pipeline --example bench_tokenize "${features[@]}"
        cp "$CARGO_TARGET_DIR/release/examples/bench_tokenize" "$dir/bench-$engine"
    done
    for round in 1 2; do
        for engine in fancy-regex onig; do "$dir/bench-$engine" --rounds 1 {{ARGS}}; done
    done
