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
        y = match row_split(rows) {
            1 => y + b.reshape([1, out]),
            k => (y.reshape([k, rows / k, out]) + b.reshape([1, 1, out])).reshape([rows, out]),
        };
    }
    let mut od = dims;
    od[D - 1] = out;
    y.reshape(od)
}

/// How to lay out `rows` rows against a vector broadcast over them (a bias, a norm's weight) so
/// that the vector's gradient, a sum over all rows, is reduced in two fixed-order stages:
/// `[k, rows / k, n]` against `[1, 1, n]`, since autodiff sums a broadcast one dimension at a
/// time. Burn reduces with one thread per output, which at 8 × 2048 tokens would be one thread
/// walking 16,384 rows; split, two stages of 128. Returns k, the largest divisor of `rows` not
/// above √rows; 1 (keep the plain broadcast) below [`SPLIT_ROWS`]. The forward values are the
/// same either way.
pub(super) fn row_split(rows: usize) -> usize {
    if rows < SPLIT_ROWS {
        return 1;
    }
    root_divisor(rows)
}

/// The largest divisor of `n` not above √n (1 for a prime): the number of chunks that cuts `n`
/// rows into two near-equal stages (also the embedding lookup's, `lookup.rs`).
pub(super) fn root_divisor(n: usize) -> usize {
    let root = (n as f64).sqrt() as usize;
    (1..=root).rev().find(|d| n % d == 0).unwrap_or(1)
}

/// `x [..., d] × w [d]` (a norm's weight), its gradient reduced in two stages ([`row_split`]).
pub(super) fn scale_channels<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    w: Tensor<B, 1>,
) -> Tensor<B, D> {
    let dims = x.dims();
    let d = dims[D - 1];
    let rows = dims.iter().product::<usize>() / d;
    match row_split(rows) {
        1 => {
            let mut shape = [1; D];
            shape[D - 1] = d;
            x * w.reshape(shape)
        }
        k => (x.reshape([k, rows / k, d]) * w.reshape([1, 1, d])).reshape(dims),
    }
}

/// Rows from which [`row_split`] splits: 8 × 2048 training micro-batches do; the sample's and
/// the golden fixtures' shapes do not, so their results are as before.
pub const SPLIT_ROWS: usize = 4096;

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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::tensor::{Distribution, TensorData};

    type Ad = Autodiff<NdArray<f32>>;

    #[test]
    fn rows_split_near_the_square_root() {
        assert_eq!(row_split(16_384), 128);
        assert_eq!(row_split(8 * 2048 * 3), 192); // 49,152 = 192 × 256
        assert_eq!(row_split(4099), 1); // prime
        assert_eq!(row_split(SPLIT_ROWS - 1), 1);
        assert_eq!(row_split(2 * 37), 1);
    }

    /// At a split shape the bias and norm-weight gradients are the column sums of the upstream
    /// gradient (within f32 rounding of an f64 sum), the forward values are exactly the plain
    /// broadcast's, and two runs agree bit for bit.
    #[test]
    fn split_broadcasts_keep_values_and_sum_their_gradients() {
        let dev = Default::default();
        let (rows, n) = (8192, 24);
        let x = Tensor::<Ad, 2>::random([rows, n], Distribution::Normal(0.0, 1.0), &dev);
        let g = Tensor::<Ad, 2>::random([rows, n], Distribution::Normal(0.0, 1.0), &dev);
        let v0 = Tensor::<Ad, 1>::random([n], Distribution::Normal(0.0, 1.0), &dev);
        // x · I + b through `linear_t` (the product with the identity is exact).
        let eye: Vec<f32> = (0..n * n)
            .map(|i| if i / n == i % n { 1.0 } else { 0.0 })
            .collect();
        let eye = Tensor::<Ad, 2>::from_data(TensorData::new(eye, [n, n]), &dev);
        let run = || {
            let b = v0.clone().require_grad();
            // Its own tensor: clones of one tensor made to require grad share its gradient.
            let w = Tensor::<Ad, 1>::from_data(v0.to_data(), &dev).require_grad();
            let y = linear_t(x.clone(), eye.clone(), Some(b.clone()), Precision::F32);
            let z = scale_channels(x.clone(), w.clone());
            let loss = (y.clone() * g.clone()).sum() + (z.clone() * g.clone()).sum();
            let grads = loss.backward();
            let read = |t: Tensor<NdArray<f32>, 1>| t.into_data().to_vec::<f32>().unwrap();
            (
                y.inner().into_data(),
                z.inner().into_data(),
                read(b.grad(&grads).unwrap()),
                read(w.grad(&grads).unwrap()),
            )
        };
        let (y, z, db, dw) = run();
        let plain_y = (x.clone() + v0.clone().reshape([1, n])).inner().into_data();
        let plain_z = (x.clone() * v0.clone().reshape([1, n])).inner().into_data();
        assert_eq!(y, plain_y, "bias forward changed");
        assert_eq!(z, plain_z, "norm weight forward changed");
        let (xs, gs): (Vec<f32>, Vec<f32>) = (
            x.clone().inner().into_data().to_vec().unwrap(),
            g.clone().inner().into_data().to_vec().unwrap(),
        );
        for c in 0..n {
            let want_b: f64 = (0..rows).map(|r| gs[r * n + c] as f64).sum();
            let want_w: f64 = (0..rows)
                .map(|r| (gs[r * n + c] * xs[r * n + c]) as f64)
                .sum();
            let scale_b: f64 = (0..rows).map(|r| gs[r * n + c].abs() as f64).sum();
            let scale_w: f64 = (0..rows)
                .map(|r| (gs[r * n + c] * xs[r * n + c]).abs() as f64)
                .sum();
            assert!(
                (db[c] as f64 - want_b).abs() <= 1e-6 * scale_b,
                "bias grad {c}: {} vs {want_b} (scale {scale_b})",
                db[c]
            );
            assert!(
                (dw[c] as f64 - want_w).abs() <= 1e-6 * scale_w,
                "weight grad {c}"
            );
        }
        let again = run();
        assert_eq!((again.2, again.3), (db, dw), "not bit-identical run to run");
    }
}
