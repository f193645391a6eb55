//! Mamba-1 language model (`MambaForCausalLM`) in Burn, numerically matching
//! transformers' pure-PyTorch ("slow") path.
//!
//! Parameters are stored in the HF layout (`Linear` weights as `[out, in]`, conv weight
//! `[D, 1, K]`) so import/export is a plain copy and gradients map 1:1 to HF names.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::activation::{log_softmax, silu};
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::scan::{ScanBackend, ScanInputs};

/// Model hyper-parameters; field names follow HF `MambaConfig` / `config.json`.
#[derive(Config, Debug, PartialEq)]
pub struct MambaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    #[config(default = 16)]
    pub state_size: usize,
    #[config(default = 2)]
    pub expand: usize,
    #[config(default = 4)]
    pub conv_kernel: usize,
    /// Low rank of Δ; `None` means "auto" = ceil(hidden_size / 16).
    #[config(default = "None")]
    pub time_step_rank: Option<usize>,
    /// d_inner; `None` means expand * hidden_size.
    #[config(default = "None")]
    pub intermediate_size: Option<usize>,
    #[config(default = 1e-5)]
    pub layer_norm_epsilon: f64,
    #[config(default = false)]
    pub use_bias: bool,
    #[config(default = true)]
    pub use_conv_bias: bool,
    #[config(default = true)]
    pub residual_in_fp32: bool,
    #[config(default = true)]
    pub tie_word_embeddings: bool,
    #[config(default = 0.001)]
    pub time_step_min: f64,
    #[config(default = 0.1)]
    pub time_step_max: f64,
    #[config(default = 1e-4)]
    pub time_step_floor: f64,
    #[config(default = "String::from(\"random\")")]
    pub time_step_init_scheme: String,
    #[config(default = 1.0)]
    pub time_step_scale: f64,
    /// mamba_ssm rescales out_proj by 1/sqrt(n_layer) at init.
    #[config(default = true)]
    pub rescale_prenorm_residual: bool,
    #[config(default = 0)]
    pub eos_token_id: usize,
}

impl MambaConfig {
    /// The mamba-130m architecture (`state-spaces/mamba-130m-hf`).
    pub fn mamba_130m() -> Self {
        MambaConfig::new(50280, 768, 24)
    }
    pub fn d_inner(&self) -> usize {
        self.intermediate_size
            .unwrap_or(self.expand * self.hidden_size)
    }
    pub fn dt_rank(&self) -> usize {
        self.time_step_rank.unwrap_or(self.hidden_size.div_ceil(16))
    }

    /// Parameter count, from the config alone (tied head counted once).
    pub fn num_params(&self) -> usize {
        let (d, di, n, k, r) = (
            self.hidden_size,
            self.d_inner(),
            self.state_size,
            self.conv_kernel,
            self.dt_rank(),
        );
        let bias = |x: usize| if self.use_bias { x } else { 0 };
        let per_layer = d // norm
            + 2 * di * d + bias(2 * di) // in_proj
            + di * k + if self.use_conv_bias { di } else { 0 } // conv1d
            + (r + 2 * n) * di // x_proj
            + di * r + di // dt_proj (+bias, always)
            + di * n + di // A_log, D
            + d * di + bias(d); // out_proj
        let head = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * d
        };
        self.vocab_size * d + self.num_hidden_layers * per_layer + d + head
    }

    /// Random init as in mamba_ssm (see [`init_seeded`](Self::init_seeded)), seed 0.
    pub fn init<B: Backend>(&self, device: &B::Device) -> MambaLm<B> {
        self.init_seeded(device, 0)
    }

    /// Random initialization following mamba_ssm, deterministic in `seed` (values are drawn
    /// on the host, so every backend gets the same model):
    /// embeddings N(0, 0.02); in/x/out_proj PyTorch Linear default (kaiming-uniform,
    /// bound 1/sqrt(fan_in)), out_proj then divided by sqrt(n_layer); conv1d PyTorch
    /// default; dt_proj weight U(±dt_rank^-0.5·scale), dt_proj bias = softplus⁻¹(dt) with dt
    /// log-uniform in [dt_min, dt_max] floored at dt_floor; A_log = log(1..N); D = 1.
    pub fn init_seeded<B: Backend>(&self, device: &B::Device, seed: u64) -> MambaLm<B> {
        let mut rng = StdRng::seed_from_u64(seed);
        let (d, di, n, k, r) = (
            self.hidden_size,
            self.d_inner(),
            self.state_size,
            self.conv_kernel,
            self.dt_rank(),
        );
        let uni = |rng: &mut StdRng, len: usize, bound: f64| -> Vec<f32> {
            (0..len)
                .map(|_| ((rng.random::<f64>() * 2.0 - 1.0) * bound) as f32)
                .collect()
        };
        let p1 = |v: Vec<f32>, s: [usize; 1]| Param::from_data(TensorData::new(v, s), device);
        let p2 = |v: Vec<f32>, s: [usize; 2]| Param::from_data(TensorData::new(v, s), device);
        let p3 = |v: Vec<f32>, s: [usize; 3]| Param::from_data(TensorData::new(v, s), device);

        let emb: Vec<f32> = (0..self.vocab_size * d)
            .map(|_| (normal(&mut rng) * 0.02) as f32)
            .collect();
        let embeddings = p2(emb, [self.vocab_size, d]);
        let mut layers = Vec::with_capacity(self.num_hidden_layers);
        for _ in 0..self.num_hidden_layers {
            let in_proj = p2(
                uni(&mut rng, 2 * di * d, (d as f64).powf(-0.5)),
                [2 * di, d],
            );
            let in_proj_bias = self.use_bias.then(|| p1(vec![0.0; 2 * di], [2 * di]));
            let conv_w = p3(uni(&mut rng, di * k, (k as f64).powf(-0.5)), [di, 1, k]);
            let conv_b = self
                .use_conv_bias
                .then(|| p1(uni(&mut rng, di, (k as f64).powf(-0.5)), [di]));
            let x_proj = p2(
                uni(&mut rng, (r + 2 * n) * di, (di as f64).powf(-0.5)),
                [r + 2 * n, di],
            );
            let dt_std = (r as f64).powf(-0.5) * self.time_step_scale;
            let dt_w = if self.time_step_init_scheme == "constant" {
                vec![dt_std as f32; di * r]
            } else {
                uni(&mut rng, di * r, dt_std)
            };
            let dt_proj = p2(dt_w, [di, r]);
            let (lo, hi) = (self.time_step_min.ln(), self.time_step_max.ln());
            let dt_b: Vec<f32> = (0..di)
                .map(|_| {
                    let dt = (rng.random::<f64>() * (hi - lo) + lo)
                        .exp()
                        .max(self.time_step_floor);
                    // inverse softplus: dt + log(1 - exp(-dt))
                    (dt + (-(-dt).exp_m1()).ln()) as f32
                })
                .collect();
            let dt_proj_bias = p1(dt_b, [di]);
            let a_log: Vec<f32> = (0..di)
                .flat_map(|_| (1..=n).map(|i| (i as f32).ln()))
                .collect();
            let mut out_w = uni(&mut rng, d * di, (di as f64).powf(-0.5));
            if self.rescale_prenorm_residual {
                let s = (self.num_hidden_layers as f32).sqrt();
                out_w.iter_mut().for_each(|w| *w /= s);
            }
            let out_proj_bias = self.use_bias.then(|| p1(vec![0.0; d], [d]));
            layers.push(MambaBlock {
                norm: RmsNorm {
                    weight: p1(vec![1.0; d], [d]),
                    eps: self.layer_norm_epsilon,
                },
                mixer: MambaMixer {
                    in_proj,
                    in_proj_bias,
                    conv1d_weight: conv_w,
                    conv1d_bias: conv_b,
                    x_proj,
                    dt_proj,
                    dt_proj_bias,
                    a_log: p2(a_log, [di, n]),
                    d: p1(vec![1.0; di], [di]),
                    out_proj: p2(out_w, [d, di]),
                    out_proj_bias,
                    d_inner: di,
                    d_state: n,
                    dt_rank: r,
                    d_conv: k,
                    precision: Precision::F32,
                },
            });
        }
        let lm_head = (!self.tie_word_embeddings).then(|| {
            p2(
                (0..self.vocab_size * d)
                    .map(|_| (normal(&mut rng) * 0.02) as f32)
                    .collect(),
                [self.vocab_size, d],
            )
        });
        MambaLm {
            embeddings,
            layers,
            norm_f: RmsNorm {
                weight: p1(vec![1.0; d], [d]),
                eps: self.layer_norm_epsilon,
            },
            lm_head,
            vocab_size: self.vocab_size,
            precision: Precision::F32,
        }
    }
}

fn normal(rng: &mut StdRng) -> f64 {
    // Box–Muller; u1 in (0, 1] so ln is finite.
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// The dtype of the model's matrix products (autocast, as PyTorch AMP does it). Parameters
/// stay in the backend's f32 (they are the optimizer's master weights); with `Bf16` each
/// projection and the head cast their input and weight to bf16, multiply, and cast the product
/// straight back, so the residual stream, RMSNorm, conv1d, softplus, the selective scan (with
/// `A_log`, `D` and its state), the loss and every gradient reaching a parameter stay f32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in the backend's float type (f32 here).
    #[default]
    F32,
    /// bf16 matrix products (CUDA; ndarray has no bf16).
    Bf16,
    /// f64 matrix products: a higher-precision check of the same mechanism on the CPU.
    F64,
}

impl Precision {
    /// The dtype products are computed in; `None` = the backend's own.
    pub fn matmul_dtype(self) -> Option<FloatDType> {
        match self {
            Precision::F32 => None,
            Precision::Bf16 => Some(FloatDType::BF16),
            Precision::F64 => Some(FloatDType::F64),
        }
    }

    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    /// An error naming `setting` unless backend `B` computes in this precision on `device`.
    pub fn check<B: Backend>(self, device: &B::Device, setting: &str) -> anyhow::Result<()> {
        if let Some(dt) = self.matmul_dtype() {
            anyhow::ensure!(
                B::supports_dtype(device, dt.into()),
                "{setting} = \"{}\" is not supported by this backend ({}); bf16 needs the CUDA \
                 build (`--features cuda`, `--devices 0`), the CPU backend computes in \"f32\"",
                serde_json::to_value(self)?.as_str().unwrap_or("?"),
                B::name(device)
            );
        }
        Ok(())
    }
}

/// x @ Wᵀ (+ b) for x [..., in] with W in the PyTorch `[out, in]` layout.
fn linear<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    w: &Param<Tensor<B, 2>>,
    b: Option<&Param<Tensor<B, 1>>>,
    p: Precision,
) -> Tensor<B, D> {
    linear_t(x, w.val(), b.map(|b| b.val()), p)
}

fn linear_t<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    w: Tensor<B, 2>,
    b: Option<Tensor<B, 1>>,
    p: Precision,
) -> Tensor<B, D> {
    let dims = x.dims();
    let inn = dims[D - 1];
    let rows = dims.iter().product::<usize>() / inn;
    let out = w.dims()[0];
    let mut y = matmul_t(x.reshape([rows, inn]), w, p);
    if let Some(b) = b {
        y = y + b.reshape([1, out]);
    }
    let mut od = dims;
    od[D - 1] = out;
    y.reshape(od)
}

/// x @ Wᵀ in the compute dtype of `p`, returned in x's dtype.
fn matmul_t<B: Backend>(x: Tensor<B, 2>, w: Tensor<B, 2>, p: Precision) -> Tensor<B, 2> {
    match p.matmul_dtype() {
        None => x.matmul(w.transpose()),
        Some(dt) => {
            let home = FloatDType::from(x.dtype());
            x.cast(dt).matmul(w.cast(dt).transpose()).cast(home)
        }
    }
}

/// PyTorch `F.softplus` (beta 1, threshold 20): linear above 20. The clamp keeps the
/// unused branch finite so its (masked) gradient is 0, not NaN.
pub fn softplus_torch<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let big = x.clone().greater_elem(20.0);
    let sp = x.clone().clamp_max(20.0).exp().log1p();
    sp.mask_where(big, x)
}

#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let var = x.clone().powi_scalar(2).mean_dim(D - 1);
        let x = x * (var + self.eps).sqrt().recip();
        let d = self.weight.dims()[0];
        let mut shape = [1; D];
        shape[D - 1] = d;
        x * self.weight.val().reshape(shape)
    }
}

/// The selective-SSM mixer (HF `MambaMixer`).
#[derive(Module, Debug)]
pub struct MambaMixer<B: Backend> {
    pub in_proj: Param<Tensor<B, 2>>,
    pub in_proj_bias: Option<Param<Tensor<B, 1>>>,
    pub conv1d_weight: Param<Tensor<B, 3>>,
    pub conv1d_bias: Option<Param<Tensor<B, 1>>>,
    pub x_proj: Param<Tensor<B, 2>>,
    pub dt_proj: Param<Tensor<B, 2>>,
    pub dt_proj_bias: Param<Tensor<B, 1>>,
    pub a_log: Param<Tensor<B, 2>>,
    pub d: Param<Tensor<B, 1>>,
    pub out_proj: Param<Tensor<B, 2>>,
    pub out_proj_bias: Option<Param<Tensor<B, 1>>>,
    pub d_inner: usize,
    pub d_state: usize,
    pub dt_rank: usize,
    pub d_conv: usize,
    /// Dtype of the projections (see [`Precision`]); not saved with the weights.
    pub precision: Precision,
}

/// Per-layer recurrent state: last `d_conv` conv inputs `[B, D, K]`, SSM state `[B, D, N]`.
#[derive(Clone, Debug)]
pub struct LayerState<B: Backend> {
    pub conv: Tensor<B, 3>,
    pub ssm: Tensor<B, 3>,
}

/// Recurrent cache of the whole model (one [`LayerState`] per layer).
#[derive(Clone, Debug)]
pub struct MambaCache<B: Backend> {
    pub layers: Vec<LayerState<B>>,
}

impl<B: Backend> MambaCache<B> {
    /// Keep only the batch rows in `idx` (in that order), e.g. to follow beams.
    pub fn select(&self, idx: Tensor<B, 1, Int>) -> Self {
        MambaCache {
            layers: self
                .layers
                .iter()
                .map(|s| LayerState {
                    conv: s.conv.clone().select(0, idx.clone()),
                    ssm: s.ssm.clone().select(0, idx.clone()),
                })
                .collect(),
        }
    }
}

impl<B: ScanBackend> MambaMixer<B> {
    /// Parallel forward. `x`: [B, L, d_model] → ([B, L, d_model], final state).
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        want_state: bool,
    ) -> (Tensor<B, 3>, Option<LayerState<B>>) {
        let [_bsz, len, _] = x.dims();
        let (di, n, r, k) = (self.d_inner, self.d_state, self.dt_rank, self.d_conv);
        let p = self.precision;
        let xz = linear(x, &self.in_proj, self.in_proj_bias.as_ref(), p); // [B, L, 2Di]
        let xs = xz.clone().narrow(2, 0, di).swap_dims(1, 2); // [B, Di, L]
        let z = xz.narrow(2, di, di).swap_dims(1, 2);

        // Causal depthwise conv: left-pad K-1 zeros, y_t = Σ_j w_j x_{t-K+1+j}.
        let xp = xs
            .clone()
            .pad([(k - 1, 0)], burn::tensor::ops::PadMode::Constant(0.0));
        let w = self.conv1d_weight.val().reshape([1, di, k]);
        let mut conv = xp.clone().narrow(2, 0, len) * w.clone().narrow(2, 0, 1);
        for j in 1..k {
            conv = conv + xp.clone().narrow(2, j, len) * w.clone().narrow(2, j, 1);
        }
        if let Some(b) = self.conv_bias() {
            conv = conv + b.reshape([1, di, 1]);
        }
        let u = silu(conv); // [B, Di, L]

        let x_dbl = linear(u.clone().swap_dims(1, 2), &self.x_proj, None, p); // [B, L, R+2N]
        let dt = x_dbl.clone().narrow(2, 0, r);
        let bm = x_dbl.clone().narrow(2, r, n).swap_dims(1, 2); // [B, N, L]
        let cm = x_dbl.narrow(2, r + n, n).swap_dims(1, 2);
        let delta =
            softplus_torch(linear(dt, &self.dt_proj, Some(&self.dt_proj_bias), p)).swap_dims(1, 2); // [B, Di, L]

        let (y, last) = B::selective_scan_forward(ScanInputs {
            u,
            delta,
            a: self.a(),
            b: bm,
            c: cm,
            d: self.d.val(),
        });
        let y = y * silu(z);
        let out = linear(
            y.swap_dims(1, 2),
            &self.out_proj,
            self.out_proj_bias.as_ref(),
            p,
        );
        let state = want_state.then(|| {
            // The last K conv inputs (zero-padded on the left when L < K): xp[j] = xs[j-K+1].
            let conv = xp.narrow(2, len - 1, k);
            LayerState { conv, ssm: last }
        });
        (out, state)
    }
}

impl<B: Backend> MambaMixer<B> {
    fn a(&self) -> Tensor<B, 2> {
        self.a_log.val().exp().neg()
    }

    fn conv_bias(&self) -> Option<Tensor<B, 1>> {
        self.conv1d_bias.as_ref().map(|b| b.val())
    }

    /// One recurrent step. `x`: [B, d_model] → [B, d_model]; updates `state`.
    pub fn step(&self, x: Tensor<B, 2>, state: &mut LayerState<B>) -> Tensor<B, 2> {
        let [bsz, _] = x.dims();
        let (di, n, r, k) = (self.d_inner, self.d_state, self.dt_rank, self.d_conv);
        let p = self.precision;
        let xz = linear(x, &self.in_proj, self.in_proj_bias.as_ref(), p);
        let xs = xz.clone().narrow(1, 0, di); // [B, Di]
        let z = xz.narrow(1, di, di);
        let conv_state = Tensor::cat(
            vec![
                state.conv.clone().narrow(2, 1, k - 1),
                xs.reshape([bsz, di, 1]),
            ],
            2,
        );
        let w = self.conv1d_weight.val().reshape([1, di, k]);
        let mut conv = (conv_state.clone() * w).sum_dim(2).reshape([bsz, di]);
        if let Some(b) = self.conv_bias() {
            conv = conv + b.reshape([1, di]);
        }
        state.conv = conv_state;
        let u = silu(conv);
        let x_dbl = linear(u.clone(), &self.x_proj, None, p);
        let dt = x_dbl.clone().narrow(1, 0, r);
        let bm = x_dbl.clone().narrow(1, r, n).reshape([bsz, 1, n]);
        let cm = x_dbl.narrow(1, r + n, n).reshape([bsz, 1, n]);
        let delta = softplus_torch(linear(dt, &self.dt_proj, Some(&self.dt_proj_bias), p));
        let da = (delta.clone().reshape([bsz, di, 1]) * self.a().reshape([1, di, n])).exp();
        let dbu = (delta * u.clone()).reshape([bsz, di, 1]) * bm;
        let h = da * state.ssm.clone() + dbu;
        let y = (h.clone() * cm).sum_dim(2).reshape([bsz, di]) + u * self.d.val().reshape([1, di]);
        state.ssm = h;
        let y = y * silu(z);
        linear(y, &self.out_proj, self.out_proj_bias.as_ref(), p)
    }

    fn empty_state(&self, bsz: usize, device: &B::Device) -> LayerState<B> {
        LayerState {
            conv: Tensor::zeros([bsz, self.d_inner, self.d_conv], device),
            ssm: Tensor::zeros([bsz, self.d_inner, self.d_state], device),
        }
    }
}

/// Residual block: x + mixer(RMSNorm(x)).
#[derive(Module, Debug)]
pub struct MambaBlock<B: Backend> {
    pub norm: RmsNorm<B>,
    pub mixer: MambaMixer<B>,
}

/// `MambaForCausalLM`: embeddings, blocks, norm_f, (tied) lm head.
#[derive(Module, Debug)]
pub struct MambaLm<B: Backend> {
    pub embeddings: Param<Tensor<B, 2>>,
    pub layers: Vec<MambaBlock<B>>,
    pub norm_f: RmsNorm<B>,
    /// `None` when tied to the embeddings.
    pub lm_head: Option<Param<Tensor<B, 2>>>,
    pub vocab_size: usize,
    /// Dtype of the head's product (the mixers carry their own copy).
    pub precision: Precision,
}

/// Output of [`MambaLm::forward_full`].
pub struct ForwardOutput<B: Backend> {
    /// [B, L, V]
    pub logits: Tensor<B, 3>,
    /// Residual stream after each block, then the norm_f output (HF convention).
    pub hidden_states: Vec<Tensor<B, 3>>,
    /// Recurrent cache after the last position (when requested).
    pub cache: Option<MambaCache<B>>,
}

impl<B: Backend> MambaLm<B> {
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    fn head_weight(&self) -> Tensor<B, 2> {
        self.lm_head.as_ref().unwrap_or(&self.embeddings).val()
    }

    /// Logits `[rows, V]` of final hidden states `[rows, d_model]`.
    fn head(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        matmul_t(x, self.head_weight(), self.precision)
    }

    /// The same model computing its products in `precision` (weights unchanged).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        for layer in &mut self.layers {
            layer.mixer.precision = precision;
        }
        self
    }

    /// Empty recurrent cache for `bsz` sequences.
    pub fn empty_cache(&self, bsz: usize, device: &B::Device) -> MambaCache<B> {
        MambaCache {
            layers: self
                .layers
                .iter()
                .map(|l| l.mixer.empty_state(bsz, device))
                .collect(),
        }
    }

    /// One recurrent step: ids `[B]` → logits `[B, V]`, O(1) in the sequence length.
    pub fn step(&self, ids: Tensor<B, 1, Int>, cache: &mut MambaCache<B>) -> Tensor<B, 2> {
        let mut x = self.embeddings.val().select(0, ids);
        for (layer, st) in self.layers.iter().zip(cache.layers.iter_mut()) {
            x = x.clone() + layer.mixer.step(layer.norm.forward(x), st);
        }
        self.head(self.norm_f.forward(x))
    }
}

impl<B: ScanBackend> MambaLm<B> {
    /// Logits `[B, L, V]` for token ids `[B, L]` (parallel mode).
    pub fn forward(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.forward_full(ids, false, false).logits
    }

    /// Parallel forward with optional per-block hidden states and final recurrent cache.
    pub fn forward_full(
        &self,
        ids: Tensor<B, 2, Int>,
        want_hidden: bool,
        want_cache: bool,
    ) -> ForwardOutput<B> {
        let [bsz, len] = ids.dims();
        let emb = self.embeddings.val();
        let d = emb.dims()[1];
        let mut x = emb
            .select(0, ids.reshape([bsz * len]))
            .reshape([bsz, len, d]);
        let mut hidden = Vec::new();
        let mut states = Vec::new();
        for layer in &self.layers {
            let (y, st) = layer
                .mixer
                .forward(layer.norm.forward(x.clone()), want_cache);
            x = x + y;
            if want_hidden {
                hidden.push(x.clone());
            }
            if let Some(st) = st {
                states.push(st);
            }
        }
        let x = self.norm_f.forward(x);
        if want_hidden {
            hidden.push(x.clone());
        }
        let logits = linear_t(x, self.head_weight(), None, self.precision);
        ForwardOutput {
            logits,
            hidden_states: hidden,
            cache: want_cache.then_some(MambaCache { layers: states }),
        }
    }

    /// Prompt processing for generation: parallel mode over `ids` `[B, L]`, but norm_f and
    /// the (vocabulary-sized) head only on the last position. Returns logits `[B, V]` and
    /// the recurrent cache after the last position.
    pub fn prefill(&self, ids: Tensor<B, 2, Int>) -> (Tensor<B, 2>, MambaCache<B>) {
        let [bsz, len] = ids.dims();
        let emb = self.embeddings.val();
        let d = emb.dims()[1];
        let mut x = emb
            .select(0, ids.reshape([bsz * len]))
            .reshape([bsz, len, d]);
        let mut states = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let (y, st) = layer.mixer.forward(layer.norm.forward(x.clone()), true);
            x = x + y;
            states.push(st.expect("state requested"));
        }
        let x = self
            .norm_f
            .forward(x.narrow(1, len - 1, 1).reshape([bsz, d]));
        (self.head(x), MambaCache { layers: states })
    }
}

/// Mean next-token cross-entropy over all `B·(L−1)` targets (labels = ids, shifted).
pub fn causal_lm_loss<B: Backend>(logits: Tensor<B, 3>, ids: Tensor<B, 2, Int>) -> Tensor<B, 1> {
    let [bsz, len, v] = logits.dims();
    let lp = log_softmax(
        logits.narrow(1, 0, len - 1).reshape([bsz * (len - 1), v]),
        1,
    );
    let tgt = ids.narrow(1, 1, len - 1).reshape([bsz * (len - 1), 1]);
    lp.gather(1, tgt).mean().neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type Be = NdArray<f32>;

    fn tiny() -> MambaConfig {
        MambaConfig::new(64, 16, 2)
            .with_state_size(4)
            .with_time_step_rank(Some(2))
    }

    #[test]
    fn mamba_130m_parameter_count() {
        let c = MambaConfig::mamba_130m();
        assert_eq!(c.dt_rank(), 48);
        assert_eq!(c.d_inner(), 1536);
        assert_eq!(c.num_params(), 129_135_360);
    }

    #[test]
    fn config_count_matches_allocated_model() {
        let dev = Default::default();
        for c in [
            tiny(),
            tiny().with_use_bias(true).with_tie_word_embeddings(false),
        ] {
            let m: MambaLm<Be> = c.init_seeded(&dev, 1);
            assert_eq!(m.num_params(), c.num_params());
        }
    }

    #[test]
    fn init_follows_mamba_ssm_and_is_seeded() {
        let dev = Default::default();
        let c = tiny();
        let m: MambaLm<Be> = c.init_seeded(&dev, 7);
        let mx = &m.layers[1].mixer;
        let a_log = mx.a_log.val().into_data().to_vec::<f32>().unwrap();
        assert!((a_log[3] - 4f32.ln()).abs() < 1e-6 && a_log[4].abs() < 1e-6);
        assert!(
            mx.d.val()
                .into_data()
                .to_vec::<f32>()
                .unwrap()
                .iter()
                .all(|&x| x == 1.0)
        );
        // softplus(dt bias) is the sampled dt in [dt_min, dt_max].
        let dt = softplus_torch(mx.dt_proj_bias.val())
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert!(
            dt.iter().all(|&x| (0.00099..=0.1001).contains(&x)),
            "{dt:?}"
        );
        let w = mx.dt_proj.val().into_data().to_vec::<f32>().unwrap();
        let bound = (2f32).powf(-0.5);
        assert!(w.iter().all(|x| x.abs() <= bound) && w.iter().any(|x| x.abs() > bound / 2.0));
        let out = mx.out_proj.val().into_data().to_vec::<f32>().unwrap();
        let ob = (c.d_inner() as f32).powf(-0.5) / (2f32).sqrt();
        assert!(out.iter().all(|x| x.abs() <= ob));
        let emb = m.embeddings.val().into_data().to_vec::<f32>().unwrap();
        let std = (emb.iter().map(|x| x * x).sum::<f32>() / emb.len() as f32).sqrt();
        assert!((std - 0.02).abs() < 0.003, "embedding std {std}");
        // Same seed, same model; another seed differs.
        let m2: MambaLm<Be> = c.init_seeded(&dev, 7);
        let m3: MambaLm<Be> = c.init_seeded(&dev, 8);
        let e = |m: &MambaLm<Be>| m.embeddings.val().into_data().to_vec::<f32>().unwrap();
        assert_eq!(e(&m), e(&m2));
        assert_ne!(e(&m), e(&m3));
    }

    /// Autocast changes only the products: with f64 products (the CPU stand-in for bf16) the
    /// logits, loss and parameter gradients stay f32, differ from the f32 run in the last bits
    /// only, and the setting survives `valid()`; bf16 is refused on ndarray with a clear error.
    #[test]
    fn precision_casts_only_the_matrix_products() {
        use burn::backend::Autodiff;
        use burn::module::AutodiffModule;
        use burn::tensor::DType;
        type Ad = Autodiff<Be>;
        let dev = Default::default();
        let base: MambaLm<Ad> = tiny().with_tie_word_embeddings(false).init_seeded(&dev, 9);
        let ids: Tensor<Ad, 2, Int> = Tensor::from_data(
            TensorData::new((0..18).map(|i| (i * 7 % 64) as i64).collect(), [2, 9]),
            &dev,
        );
        let run = |m: &MambaLm<Ad>| {
            let logits = m.forward(ids.clone());
            assert_eq!(logits.dtype(), DType::F32);
            let loss = causal_lm_loss(logits.clone(), ids.clone());
            let grads = loss.backward();
            for g in [
                m.embeddings.grad(&grads).unwrap(),
                m.lm_head.as_ref().unwrap().grad(&grads).unwrap(),
                m.layers[0].mixer.in_proj.grad(&grads).unwrap(),
            ] {
                assert_eq!(g.dtype(), DType::F32, "master-weight gradients stay f32");
            }
            let flat = |t: Tensor<Ad, 3>| t.into_data().to_vec::<f32>().unwrap();
            let g = crate::hf::hf_grads(m, &grads).unwrap();
            (flat(logits), g)
        };
        let (want, want_g) = run(&base);
        let wide = base.clone().with_precision(Precision::F64);
        assert_eq!(wide.valid().layers[1].mixer.precision, Precision::F64);
        let (got, got_g) = run(&wide);
        let rel = crate::scan::tests::rel;
        assert_ne!(got, want, "the f64 products were not used");
        assert!(
            rel(&got, &want) < 1e-5,
            "logits rel err {}",
            rel(&got, &want)
        );
        for (a, b) in got_g.iter().zip(&want_g) {
            let f = |t: &crate::st::OutTensor| -> Vec<f32> {
                t.bytes
                    .chunks(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect()
            };
            let e = rel(&f(a), &f(b));
            assert!(e < 1e-4, "{}: rel err {e}", a.name);
        }
        assert!(
            Precision::F64
                .check::<Be>(&dev, "[pretrain] precision")
                .is_ok()
        );
        let err = Precision::Bf16
            .check::<Be>(&dev, "[pretrain] precision")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[pretrain] precision = \"bf16\"") && err.contains("--features cuda"),
            "{err}"
        );
    }

    #[test]
    fn short_prefill_then_steps_matches_parallel() {
        // Prompts shorter than d_conv exercise the zero-padded conv state.
        let dev = Default::default();
        let m: MambaLm<Be> = tiny().init_seeded(&dev, 3);
        let ids: Vec<i64> = vec![5, 9, 1, 33, 7, 2, 60];
        let full: Tensor<Be, 2, Int> =
            Tensor::from_data(TensorData::new(ids.clone(), [1, 7]), &dev);
        let par = m.forward(full.clone()).into_data().to_vec::<f32>().unwrap();
        for split in 1..4 {
            let out = m.forward_full(full.clone().narrow(1, 0, split), false, true);
            let mut cache = out.cache.unwrap();
            let mut got = out.logits.into_data().to_vec::<f32>().unwrap();
            for t in split..7 {
                let id = full.clone().narrow(1, t, 1).reshape([1]);
                got.extend(m.step(id, &mut cache).into_data().to_vec::<f32>().unwrap());
            }
            let err = got
                .iter()
                .zip(&par)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(err < 1e-5, "split {split}: max abs err {err}");
        }
    }

    #[test]
    fn prefill_equals_last_position_of_the_full_forward() {
        let dev = Default::default();
        let m: MambaLm<Be> = tiny().init_seeded(&dev, 4);
        let ids: Tensor<Be, 2, Int> = Tensor::from_data(
            TensorData::new(vec![3i64, 14, 15, 9, 2, 6, 5, 35, 8, 9, 7], [1, 11]),
            &dev,
        );
        let full = m.forward_full(ids.clone(), false, true);
        let (last, cache) = m.prefill(ids);
        let v = full.logits.dims()[2];
        let want = full.logits.narrow(1, 10, 1).reshape([1, v]);
        let got = last.into_data().to_vec::<f32>().unwrap();
        let want = want.into_data().to_vec::<f32>().unwrap();
        assert_eq!(got.len(), v);
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err < 1e-6, "max abs err {err}");
        for (a, b) in cache.layers.iter().zip(&full.cache.unwrap().layers) {
            assert_eq!(
                a.ssm.clone().into_data().to_vec::<f32>().unwrap(),
                b.ssm.clone().into_data().to_vec::<f32>().unwrap()
            );
            assert_eq!(
                a.conv.clone().into_data().to_vec::<f32>().unwrap(),
                b.conv.clone().into_data().to_vec::<f32>().unwrap()
            );
        }
    }

    #[test]
    fn softplus_matches_torch_threshold() {
        let dev = Default::default();
        let x = Tensor::<Be, 1>::from_floats([-30.0, 0.0, 19.0, 21.0, 100.0], &dev);
        let y = softplus_torch(x).into_data().to_vec::<f32>().unwrap();
        assert!((y[1] - 2f32.ln()).abs() < 1e-6);
        assert!((y[2] - (1.0 + 19f32.exp()).ln()).abs() < 1e-4);
        assert_eq!(y[3], 21.0);
        assert_eq!(y[4], 100.0);
        assert!(y[0] > 0.0 && y[0] < 1e-12);
    }
}
