//! Autocast: the dtype of the model's matrix products, and the projections that honour it.

use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor};
use serde::{Deserialize, Serialize};

/// The dtype of the model's matrix products (autocast, as PyTorch AMP does it). Parameters
/// stay in the backend's f32 (they are the optimizer's master weights); with `Bf16` each
/// projection and the head cast their input and weight to bf16, multiply, and cast the product
/// straight back, so the residual stream, RMSNorm, conv1d, softplus, the selective scan (with
/// `A_log`, `D` and its state), the loss and every gradient reaching a parameter stay f32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32, matrix products included (strict: the CPU and wgpu backends). CUDA
    /// refuses it: burn 0.21's CUDA matmul runs f32 inputs on TF32 tensor cores (cubek's
    /// `adjust_dtypes`), which would make "f32" silently mean TF32 there.
    #[default]
    F32,
    /// f32 storage, TF32 matrix products on CUDA tensor cores (10-bit mantissa products with
    /// f32 accumulation, about 1e-3 relative; PyTorch's `allow_tf32`). CUDA only.
    Tf32,
    /// bf16 matrix products (CUDA; ndarray has no bf16).
    Bf16,
    /// f64 matrix products: a higher-precision check of the same mechanism on the CPU.
    F64,
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
            Precision::F64 => "f64",
        })
    }
}

impl Precision {
    /// The dtype products are computed in; `None` = the backend's own.
    pub fn matmul_dtype(self) -> Option<FloatDType> {
        match self {
            Precision::F32 | Precision::Tf32 => None,
            Precision::Bf16 => Some(FloatDType::BF16),
            Precision::F64 => Some(FloatDType::F64),
        }
    }

    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    /// `setting`'s value, or when unset the backend's own: TF32 products on CUDA (what its f32
    /// matmul computes), strict f32 elsewhere.
    pub fn of<B: Backend>(setting: Option<Precision>, device: &B::Device) -> Precision {
        setting.unwrap_or_else(|| {
            if runs_f32_as_tf32(&B::name(device)) {
                Precision::Tf32
            } else {
                Precision::F32
            }
        })
    }

    /// An error naming `setting` unless backend `B` computes in this precision on `device`.
    pub fn check<B: Backend>(self, device: &B::Device, setting: &str) -> anyhow::Result<()> {
        let cuda = runs_f32_as_tf32(&B::name(device));
        anyhow::ensure!(
            !(cuda && self == Precision::F32),
            "{setting} = \"f32\" asks for strict f32 matrix products, which the CUDA backend \
             does not compute (burn 0.21 runs f32 products on TF32 tensor cores): set \"tf32\" \
             (f32 weights, TF32 products) or \"bf16\", or train on --device cpu / wgpu"
        );
        anyhow::ensure!(
            cuda || self != Precision::Tf32,
            "{setting} = \"tf32\" is CUDA's tensor-core mode; this backend ({}) computes strict \
             f32: set \"f32\"",
            B::name(device)
        );
        if let Some(dt) = self.matmul_dtype() {
            anyhow::ensure!(
                B::supports_dtype(device, dt.into()),
                "{setting} = \"{self}\" is not supported by this backend ({}); bf16 runs on CUDA \
                 (`--device cuda`), the CPU and wgpu backends compute in \"f32\"",
                B::name(device)
            );
        }
        Ok(())
    }
}

/// Whether a backend (by Burn's name of it) computes f32 matrix products as TF32: CUDA's.
pub fn runs_f32_as_tf32(backend_name: &str) -> bool {
    backend_name.contains("cuda")
}

/// x @ Wᵀ (+ b) for x [..., in] with W in the PyTorch `[out, in]` layout.
pub(super) fn linear<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    w: &Param<Tensor<B, 2>>,
    b: Option<&Param<Tensor<B, 1>>>,
    p: Precision,
) -> Tensor<B, D> {
    linear_t(x, w.val(), b.map(|b| b.val()), p)
}

pub(super) fn linear_t<B: Backend, const D: usize>(
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
pub(super) fn matmul_t<B: Backend>(x: Tensor<B, 2>, w: Tensor<B, 2>, p: Precision) -> Tensor<B, 2> {
    match p.matmul_dtype() {
        None => x.matmul(w.transpose()),
        Some(dt) => {
            let home = FloatDType::from(x.dtype());
            x.cast(dt).matmul(w.cast(dt).transpose()).cast(home)
        }
    }
}
