//! Mamba-2 (SSD): the config (HF `Mamba2Config`), the mixer (transformers' `Mamba2Mixer`
//! `torch_forward`, parallel and recurrent), its group-wise gated RMSNorm, and the mamba_ssm
//! initialization. The chunked SSD itself is [`super::ssd`].
//!
//! Mixer, parallel form: `in_proj(x)` → [z (d_inner), xBC (d_inner + 2·G·N), dt (H)]; causal
//! depthwise conv1d + SiLU over xBC, split into x `[H, P]`, B and C `[G, N]`;
//! `Δ = clamp(softplus(dt + dt_bias), time_step_limit)`; `A = −exp(A_log)` per head; SSD with the
//! D skip on x; `norm(y · silu(z))` per group of d_inner/G channels; `out_proj`.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::mixer::{LayerState, RmsNorm, causal_conv1d, conv1d_step, softplus_torch};
use super::precision::{Precision, linear, scale_channels};
use super::ssd::{SsdInputs, ssd_chunked};
use super::{MambaBlock, MambaLm, Mixer, normal, uniform};

/// Mamba-2 hyper-parameters; field names follow HF `Mamba2Config` / `config.json`.
#[derive(Config, Debug, PartialEq)]
pub struct Mamba2Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    #[config(default = 128)]
    pub state_size: usize,
    #[config(default = 64)]
    pub head_dim: usize,
    #[config(default = 1)]
    pub n_groups: usize,
    #[config(default = 2)]
    pub expand: usize,
    #[config(default = 4)]
    pub conv_kernel: usize,
    #[config(default = 256)]
    pub chunk_size: usize,
    /// Δ is clamped to `[time_step_limit_min, time_step_limit_max]` (HF `time_step_limit`).
    #[config(default = 0.0)]
    pub time_step_limit_min: f64,
    #[config(default = "f64::INFINITY")]
    pub time_step_limit_max: f64,
    #[config(default = 0.001)]
    pub time_step_min: f64,
    #[config(default = 0.1)]
    pub time_step_max: f64,
    #[config(default = 1e-4)]
    pub time_step_floor: f64,
    /// A is drawn uniformly from this range at init (mamba_ssm's `A_init_range`).
    #[config(default = 1.0)]
    pub a_init_min: f64,
    #[config(default = 16.0)]
    pub a_init_max: f64,
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
    /// mamba_ssm rescales out_proj by 1/sqrt(n_layer) at init.
    #[config(default = true)]
    pub rescale_prenorm_residual: bool,
    #[config(default = 0)]
    pub eos_token_id: usize,
}

impl Mamba2Config {
    /// `state-spaces/mamba2-130m`: 24 layers of 768, 24 heads × 64, one group, state 128,
    /// vocabulary 50,277 padded to a multiple of 16.
    pub fn mamba2_130m() -> Self {
        Mamba2Config::new(50288, 768, 24)
    }
    pub fn d_inner(&self) -> usize {
        self.expand * self.hidden_size
    }
    /// num_heads = expand · hidden_size / head_dim.
    pub fn heads(&self) -> usize {
        self.d_inner() / self.head_dim.max(1)
    }
    /// Channels of the conv: x, B and C.
    pub fn conv_dim(&self) -> usize {
        self.d_inner() + 2 * self.n_groups * self.state_size
    }
    /// Rows of in_proj: z, xBC, dt.
    pub fn in_proj_dim(&self) -> usize {
        self.d_inner() + self.conv_dim() + self.heads()
    }

    /// Shape errors a config can hold (checked before any weight is read).
    pub fn validate(&self) -> anyhow::Result<()> {
        let (di, h, p, g) = (self.d_inner(), self.heads(), self.head_dim, self.n_groups);
        anyhow::ensure!(
            p >= 1 && h * p == di,
            "Mamba-2 config: head_dim {p} must divide expand x hidden_size = {di}"
        );
        anyhow::ensure!(
            g >= 1 && h % g == 0,
            "Mamba-2 config: num_heads {h} must be a multiple of n_groups {g}"
        );
        anyhow::ensure!(
            self.chunk_size >= 1 && self.conv_kernel >= 1 && self.state_size >= 1,
            "Mamba-2 config: chunk_size, conv_kernel and state_size must be at least 1"
        );
        anyhow::ensure!(
            self.time_step_limit_min <= self.time_step_limit_max,
            "Mamba-2 config: time_step_limit [{}, {}] is empty",
            self.time_step_limit_min,
            self.time_step_limit_max
        );
        Ok(())
    }

    /// Parameter count, from the config alone (tied head counted once).
    pub fn num_params(&self) -> usize {
        let (d, di, h, k) = (
            self.hidden_size,
            self.d_inner(),
            self.heads(),
            self.conv_kernel,
        );
        let conv = self.conv_dim();
        let bias = |x: usize| if self.use_bias { x } else { 0 };
        let per_layer = d // norm
            + self.in_proj_dim() * d + bias(self.in_proj_dim())
            + conv * k + if self.use_conv_bias { conv } else { 0 }
            + 3 * h // dt_bias, A_log, D
            + di // gated norm
            + d * di + bias(d); // out_proj
        let head = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * d
        };
        self.vocab_size * d + self.num_hidden_layers * per_layer + d + head
    }

    /// Random initialization following mamba_ssm's `Mamba2` and `MambaLMHeadModel`,
    /// deterministic in `seed` (drawn on the host, so every backend gets the same model):
    /// embeddings N(0, 0.02); in_proj and out_proj PyTorch Linear default (U(±1/sqrt(fan_in))),
    /// out_proj then divided by sqrt(n_layer); biases 0; conv1d PyTorch default
    /// (U(±1/sqrt(K)) for weight and bias); dt_bias = softplus⁻¹(dt) with dt log-uniform in
    /// [dt_min, dt_max] floored at dt_floor; A_log = log(U[A_init_range]); D = 1; norms 1.
    pub fn init_seeded<B: Backend>(&self, device: &B::Device, seed: u64) -> MambaLm<B> {
        let mut rng = StdRng::seed_from_u64(seed);
        let (d, di, h, k) = (
            self.hidden_size,
            self.d_inner(),
            self.heads(),
            self.conv_kernel,
        );
        let (conv, inp) = (self.conv_dim(), self.in_proj_dim());
        let p1 = |v: Vec<f32>, s: [usize; 1]| Param::from_data(TensorData::new(v, s), device);
        let p2 = |v: Vec<f32>, s: [usize; 2]| Param::from_data(TensorData::new(v, s), device);
        let p3 = |v: Vec<f32>, s: [usize; 3]| Param::from_data(TensorData::new(v, s), device);
        let ones = |n: usize| p1(vec![1.0; n], [n]);

        let emb: Vec<f32> = (0..self.vocab_size * d)
            .map(|_| (normal(&mut rng) * 0.02) as f32)
            .collect();
        let embeddings = p2(emb, [self.vocab_size, d]);
        let mut layers = Vec::with_capacity(self.num_hidden_layers);
        for _ in 0..self.num_hidden_layers {
            let in_proj = p2(uniform(&mut rng, inp * d, (d as f64).powf(-0.5)), [inp, d]);
            let conv_bound = (k as f64).powf(-0.5);
            let conv_w = p3(uniform(&mut rng, conv * k, conv_bound), [conv, 1, k]);
            let conv_b = self
                .use_conv_bias
                .then(|| p1(uniform(&mut rng, conv, conv_bound), [conv]));
            let (lo, hi) = (self.time_step_min.ln(), self.time_step_max.ln());
            let dt_bias: Vec<f32> = (0..h)
                .map(|_| {
                    let dt = (rng.random::<f64>() * (hi - lo) + lo)
                        .exp()
                        .max(self.time_step_floor);
                    // inverse softplus: dt + log(1 - exp(-dt))
                    (dt + (-(-dt).exp_m1()).ln()) as f32
                })
                .collect();
            let a_log: Vec<f32> = (0..h)
                .map(|_| {
                    let a =
                        self.a_init_min + rng.random::<f64>() * (self.a_init_max - self.a_init_min);
                    a.ln() as f32
                })
                .collect();
            let mut out_w = uniform(&mut rng, d * di, (di as f64).powf(-0.5));
            if self.rescale_prenorm_residual {
                let s = (self.num_hidden_layers as f32).sqrt();
                out_w.iter_mut().for_each(|w| *w /= s);
            }
            layers.push(MambaBlock {
                norm: RmsNorm {
                    weight: ones(d),
                    eps: self.layer_norm_epsilon,
                },
                mixer: Mixer::Mamba2(Mamba2Mixer {
                    in_proj,
                    in_proj_bias: self.use_bias.then(|| p1(vec![0.0; inp], [inp])),
                    conv1d_weight: conv_w,
                    conv1d_bias: conv_b,
                    dt_bias: p1(dt_bias, [h]),
                    a_log: p1(a_log, [h]),
                    d: ones(h),
                    norm: GatedRmsNorm {
                        weight: ones(di),
                        eps: self.layer_norm_epsilon,
                        groups: self.n_groups,
                    },
                    out_proj: p2(out_w, [d, di]),
                    out_proj_bias: self.use_bias.then(|| p1(vec![0.0; d], [d])),
                    shape: self.mixer_shape(),
                    precision: Precision::F32,
                }),
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
                weight: ones(d),
                eps: self.layer_norm_epsilon,
            },
            lm_head,
            vocab_size: self.vocab_size,
            precision: Precision::F32,
        }
    }

    /// The dimensions a mixer needs at run time.
    pub fn mixer_shape(&self) -> Mamba2Shape {
        Mamba2Shape {
            d_inner: self.d_inner(),
            num_heads: self.heads(),
            head_dim: self.head_dim,
            n_groups: self.n_groups,
            d_state: self.state_size,
            chunk_size: self.chunk_size,
            dt_min: self.time_step_limit_min,
            dt_max: self.time_step_limit_max,
        }
    }
}

/// A Mamba-2 mixer's dimensions and Δ limits (not weights).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Mamba2Shape {
    pub d_inner: usize,
    pub num_heads: usize,
    pub head_dim: usize,
    pub n_groups: usize,
    pub d_state: usize,
    pub chunk_size: usize,
    pub dt_min: f64,
    pub dt_max: f64,
}

impl Mamba2Shape {
    fn conv_dim(&self) -> usize {
        self.d_inner + 2 * self.n_groups * self.d_state
    }
}

/// transformers' `MambaRMSNormGated` as mamba_ssm's `RMSNormGated(norm_before_gate=False,
/// group_size=d_inner/groups)`: `h = y · silu(z)`, normalised over each group of channels, then
/// scaled by `weight`.
#[derive(Module, Debug)]
pub struct GatedRmsNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub eps: f64,
    pub groups: usize,
}

impl<B: Backend> GatedRmsNorm<B> {
    pub fn forward<const D: usize>(&self, y: Tensor<B, D>, z: Tensor<B, D>) -> Tensor<B, D> {
        let dims = y.dims();
        let ch = dims[D - 1];
        let rows = dims.iter().product::<usize>() / ch;
        let h = (y * silu(z)).reshape([rows, self.groups, ch / self.groups]);
        let var = h.clone().powi_scalar(2).mean_dim(2);
        let h = (h * (var + self.eps).sqrt().recip()).reshape(dims);
        scale_channels(h, self.weight.val())
    }
}

/// The SSD mixer (HF `Mamba2Mixer`); parameters in the HF layout.
#[derive(Module, Debug)]
pub struct Mamba2Mixer<B: Backend> {
    pub in_proj: Param<Tensor<B, 2>>,
    pub in_proj_bias: Option<Param<Tensor<B, 1>>>,
    pub conv1d_weight: Param<Tensor<B, 3>>,
    pub conv1d_bias: Option<Param<Tensor<B, 1>>>,
    pub dt_bias: Param<Tensor<B, 1>>,
    pub a_log: Param<Tensor<B, 1>>,
    pub d: Param<Tensor<B, 1>>,
    pub norm: GatedRmsNorm<B>,
    pub out_proj: Param<Tensor<B, 2>>,
    pub out_proj_bias: Option<Param<Tensor<B, 1>>>,
    pub shape: Mamba2Shape,
    /// Dtype of the projections (see [`Precision`]); not saved with the weights.
    pub precision: Precision,
}

impl<B: Backend> Mamba2Mixer<B> {
    /// Δ from the raw projection: softplus(dt + dt_bias), clamped to the limits (a no-op at the
    /// default [0, ∞), as in transformers).
    fn delta<const D: usize>(&self, dt: Tensor<B, D>) -> Tensor<B, D> {
        let h = self.shape.num_heads;
        let mut bias_shape = [1; D];
        bias_shape[D - 1] = h;
        let delta = softplus_torch(dt + self.dt_bias.val().reshape(bias_shape));
        let (lo, hi) = (self.shape.dt_min, self.shape.dt_max);
        if lo == 0.0 && hi == f64::INFINITY {
            delta
        } else {
            delta.clamp(lo, hi.min(f64::MAX))
        }
    }

    fn a(&self) -> Tensor<B, 1> {
        self.a_log.val().exp().neg()
    }

    /// Parallel forward. `x`: [B, L, d_model] → ([B, L, d_model], final state).
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        want_state: bool,
    ) -> (Tensor<B, 3>, Option<LayerState<B>>) {
        let [bsz, len, _] = x.dims();
        let s = self.shape;
        let (di, h, p, g, n) = (s.d_inner, s.num_heads, s.head_dim, s.n_groups, s.d_state);
        let conv_dim = s.conv_dim();
        let proj = linear(x, &self.in_proj, self.in_proj_bias.as_ref(), self.precision);
        let z = proj.clone().narrow(2, 0, di);
        let xbc = proj.clone().narrow(2, di, conv_dim).swap_dims(1, 2); // [B, conv, L]
        let dt = proj.narrow(2, di + conv_dim, h);
        let (conv, conv_state) = causal_conv1d(
            xbc,
            &self.conv1d_weight,
            self.conv1d_bias.as_ref(),
            want_state,
        );
        let xbc = silu(conv).swap_dims(1, 2); // [B, L, conv]
        let xs = xbc.clone().narrow(2, 0, di).reshape([bsz, len, h, p]);
        let bm = xbc.clone().narrow(2, di, g * n).reshape([bsz, len, g, n]);
        let cm = xbc.narrow(2, di + g * n, g * n).reshape([bsz, len, g, n]);
        let (y, last) = ssd_chunked(
            SsdInputs {
                x: xs,
                dt: self.delta(dt),
                a: self.a(),
                b: bm,
                c: cm,
                d: self.d.val(),
            },
            s.chunk_size,
        );
        let y = self.norm.forward(y.reshape([bsz, len, di]), z);
        let out = linear(
            y,
            &self.out_proj,
            self.out_proj_bias.as_ref(),
            self.precision,
        );
        let state = conv_state.map(|conv| LayerState {
            conv,
            ssm: last.reshape([bsz, h * p, n]),
        });
        (out, state)
    }

    /// One recurrent step. `x`: [B, d_model] → [B, d_model]; updates `state` (conv inputs
    /// `[B, conv_dim, K]`, SSM state `[B, H·P, N]`).
    pub fn step(&self, x: Tensor<B, 2>, state: &mut LayerState<B>) -> Tensor<B, 2> {
        let [bsz, _] = x.dims();
        let s = self.shape;
        let (di, h, p, g, n) = (s.d_inner, s.num_heads, s.head_dim, s.n_groups, s.d_state);
        let conv_dim = s.conv_dim();
        let proj = linear(x, &self.in_proj, self.in_proj_bias.as_ref(), self.precision);
        let z = proj.clone().narrow(1, 0, di);
        let xbc = proj.clone().narrow(1, di, conv_dim);
        let dt = proj.narrow(1, di + conv_dim, h);
        let xbc = silu(conv1d_step(
            xbc,
            &mut state.conv,
            &self.conv1d_weight,
            self.conv1d_bias.as_ref(),
        ));
        let xs = xbc.clone().narrow(1, 0, di).reshape([bsz, h, p, 1]);
        let per_head = |t: Tensor<B, 2>| {
            t.reshape([bsz, g, 1, n])
                .expand([bsz, g, h / g, n])
                .reshape([bsz, h, 1, n])
        };
        let bm = per_head(xbc.clone().narrow(1, di, g * n));
        let cm = per_head(xbc.narrow(1, di + g * n, g * n));
        let delta = self.delta(dt).reshape([bsz, h, 1, 1]);
        let decay = (delta.clone() * self.a().reshape([1, h, 1, 1])).exp();
        let ssm = state.ssm.clone().reshape([bsz, h, p, n]) * decay + delta * xs.clone() * bm;
        let y = (ssm.clone() * cm).sum_dim(3) + xs * self.d.val().reshape([1, h, 1, 1]);
        state.ssm = ssm.reshape([bsz, h * p, n]);
        let y = self.norm.forward(y.reshape([bsz, di]), z);
        linear(
            y,
            &self.out_proj,
            self.out_proj_bias.as_ref(),
            self.precision,
        )
    }

    pub(super) fn empty_state(&self, bsz: usize, device: &B::Device) -> LayerState<B> {
        let s = self.shape;
        LayerState {
            conv: Tensor::zeros([bsz, s.conv_dim(), self.conv1d_weight.dims()[2]], device),
            ssm: Tensor::zeros([bsz, s.num_heads * s.head_dim, s.d_state], device),
        }
    }
}
