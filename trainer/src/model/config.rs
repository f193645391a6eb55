//! Model hyper-parameters (HF `MambaConfig`) and the mamba_ssm initialization.

use burn::config::Config;
use burn::module::Param;
use burn::tensor::TensorData;
use burn::tensor::backend::Backend;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::mamba2::Mamba2Config;
use super::mixer::{MambaMixer, RmsNorm};
use super::precision::Precision;
use super::{MambaBlock, MambaLm, Mixer};

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
        let uni = uniform;
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
                mixer: Mixer::Mamba(MambaMixer {
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
                weight: p1(vec![1.0; d], [d]),
                eps: self.layer_norm_epsilon,
            },
            lm_head,
            vocab_size: self.vocab_size,
            precision: Precision::F32,
        }
    }
}

/// A standard normal draw (Box–Muller; u1 in (0, 1] so ln is finite).
pub(super) fn normal(rng: &mut StdRng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// `len` draws from U(−bound, bound) (PyTorch's kaiming-uniform default for Linear/Conv1d).
pub(super) fn uniform(rng: &mut StdRng, len: usize, bound: f64) -> Vec<f32> {
    (0..len)
        .map(|_| ((rng.random::<f64>() * 2.0 - 1.0) * bound) as f32)
        .collect()
}

/// The architecture of a model (HF `model_type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Mamba-1: the selective scan (`MambaForCausalLM`).
    #[default]
    Mamba,
    /// Mamba-2: SSD (`Mamba2ForCausalLM`).
    Mamba2,
}

impl Arch {
    pub fn is_mamba(&self) -> bool {
        *self == Arch::Mamba
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Arch::Mamba => "mamba",
            Arch::Mamba2 => "mamba2",
        })
    }
}

/// The hyper-parameters of either architecture.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelConfig {
    Mamba(MambaConfig),
    Mamba2(Mamba2Config),
}

impl From<MambaConfig> for ModelConfig {
    fn from(c: MambaConfig) -> Self {
        ModelConfig::Mamba(c)
    }
}

impl From<Mamba2Config> for ModelConfig {
    fn from(c: Mamba2Config) -> Self {
        ModelConfig::Mamba2(c)
    }
}

impl ModelConfig {
    pub fn arch(&self) -> Arch {
        match self {
            ModelConfig::Mamba(_) => Arch::Mamba,
            ModelConfig::Mamba2(_) => Arch::Mamba2,
        }
    }
    pub fn vocab_size(&self) -> usize {
        match self {
            ModelConfig::Mamba(c) => c.vocab_size,
            ModelConfig::Mamba2(c) => c.vocab_size,
        }
    }
    pub fn hidden_size(&self) -> usize {
        match self {
            ModelConfig::Mamba(c) => c.hidden_size,
            ModelConfig::Mamba2(c) => c.hidden_size,
        }
    }
    pub fn num_hidden_layers(&self) -> usize {
        match self {
            ModelConfig::Mamba(c) => c.num_hidden_layers,
            ModelConfig::Mamba2(c) => c.num_hidden_layers,
        }
    }
    pub fn tie_word_embeddings(&self) -> bool {
        match self {
            ModelConfig::Mamba(c) => c.tie_word_embeddings,
            ModelConfig::Mamba2(c) => c.tie_word_embeddings,
        }
    }
    pub fn layer_norm_epsilon(&self) -> f64 {
        match self {
            ModelConfig::Mamba(c) => c.layer_norm_epsilon,
            ModelConfig::Mamba2(c) => c.layer_norm_epsilon,
        }
    }
    pub fn eos_token_id(&self) -> usize {
        match self {
            ModelConfig::Mamba(c) => c.eos_token_id,
            ModelConfig::Mamba2(c) => c.eos_token_id,
        }
    }
    pub fn num_params(&self) -> usize {
        match self {
            ModelConfig::Mamba(c) => c.num_params(),
            ModelConfig::Mamba2(c) => c.num_params(),
        }
    }
    /// Random initialization of the architecture, deterministic in `seed`.
    pub fn init_seeded<B: Backend>(&self, device: &B::Device, seed: u64) -> MambaLm<B> {
        match self {
            ModelConfig::Mamba(c) => c.init_seeded(device, seed),
            ModelConfig::Mamba2(c) => c.init_seeded(device, seed),
        }
    }
}
