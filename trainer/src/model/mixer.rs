//! The selective-SSM block parts: RMSNorm, the mixer (parallel and recurrent forms) and its
//! recurrent state.

use burn::module::{Module, Param};
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use super::precision::{Precision, linear, scale_channels};
use super::scan::{ScanBackend, ScanInputs};

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
        scale_channels(x, self.weight.val())
    }
}

/// Causal depthwise conv1d (PyTorch `Conv1d(groups=C, padding=K-1)` cut to the first L
/// outputs) of `x` `[B, C, L]` with `weight` `[C, 1, K]`: y_t = Σ_j w_j x_{t-K+1+j} (+ bias).
/// With `want_state`, also the last K inputs `[B, C, K]` (zero-padded on the left when L < K),
/// the conv state of the recurrent form.
pub fn causal_conv1d<B: Backend>(
    x: Tensor<B, 3>,
    weight: &Param<Tensor<B, 3>>,
    bias: Option<&Param<Tensor<B, 1>>>,
    want_state: bool,
) -> (Tensor<B, 3>, Option<Tensor<B, 3>>) {
    let [_, ch, len] = x.dims();
    let k = weight.dims()[2];
    let xp = x.pad([(k - 1, 0)], burn::tensor::ops::PadMode::Constant(0.0));
    let w = weight.val().reshape([1, ch, k]);
    let mut conv = xp.clone().narrow(2, 0, len) * w.clone().narrow(2, 0, 1);
    for j in 1..k {
        conv = conv + xp.clone().narrow(2, j, len) * w.clone().narrow(2, j, 1);
    }
    if let Some(b) = bias {
        conv = conv + b.val().reshape([1, ch, 1]);
    }
    // xp[j] = x[j-K+1], so the last K padded inputs are the state.
    (conv, want_state.then(|| xp.narrow(2, len - 1, k)))
}

/// One step of [`causal_conv1d`]: shift `x` `[B, C]` into `state` `[B, C, K]`, return the output.
pub fn conv1d_step<B: Backend>(
    x: Tensor<B, 2>,
    state: &mut Tensor<B, 3>,
    weight: &Param<Tensor<B, 3>>,
    bias: Option<&Param<Tensor<B, 1>>>,
) -> Tensor<B, 2> {
    let [bsz, ch] = x.dims();
    let k = weight.dims()[2];
    let window = Tensor::cat(
        vec![state.clone().narrow(2, 1, k - 1), x.reshape([bsz, ch, 1])],
        2,
    );
    let w = weight.val().reshape([1, ch, k]);
    let mut conv = (window.clone() * w).sum_dim(2).reshape([bsz, ch]);
    if let Some(b) = bias {
        conv = conv + b.val().reshape([1, ch]);
    }
    *state = window;
    conv
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
        let (di, n, r) = (self.d_inner, self.d_state, self.dt_rank);
        let p = self.precision;
        let xz = linear(x, &self.in_proj, self.in_proj_bias.as_ref(), p); // [B, L, 2Di]
        let xs = xz.clone().narrow(2, 0, di).swap_dims(1, 2); // [B, Di, L]
        let z = xz.narrow(2, di, di).swap_dims(1, 2);

        let (conv, conv_state) = causal_conv1d(
            xs,
            &self.conv1d_weight,
            self.conv1d_bias.as_ref(),
            want_state,
        );
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
        let state = conv_state.map(|conv| LayerState { conv, ssm: last });
        (out, state)
    }
}

impl<B: Backend> MambaMixer<B> {
    fn a(&self) -> Tensor<B, 2> {
        self.a_log.val().exp().neg()
    }

    /// One recurrent step. `x`: [B, d_model] → [B, d_model]; updates `state`.
    pub fn step(&self, x: Tensor<B, 2>, state: &mut LayerState<B>) -> Tensor<B, 2> {
        let [bsz, _] = x.dims();
        let (di, n, r) = (self.d_inner, self.d_state, self.dt_rank);
        let p = self.precision;
        let xz = linear(x, &self.in_proj, self.in_proj_bias.as_ref(), p);
        let xs = xz.clone().narrow(1, 0, di); // [B, Di]
        let z = xz.narrow(1, di, di);
        let u = silu(conv1d_step(
            xs,
            &mut state.conv,
            &self.conv1d_weight,
            self.conv1d_bias.as_ref(),
        ));
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

    pub(super) fn empty_state(&self, bsz: usize, device: &B::Device) -> LayerState<B> {
        LayerState {
            conv: Tensor::zeros([bsz, self.d_inner, self.d_conv], device),
            ssm: Tensor::zeros([bsz, self.d_inner, self.d_state], device),
        }
    }
}
