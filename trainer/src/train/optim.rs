//! AdamW with per-parameter weight decay and learning rate (decay groups, layer-wise learning-rate
//! decay), global-norm clipping, and the learning-rate schedules (warmup + cosine, and
//! warmup-stable-decay).
//!
//! Burn's `AdamW` applies one decay to every parameter; the Mamba recipe must not decay
//! `A_log`, `D`, norm weights or biases. This optimizer keys its state by the parameter's HF name
//! (stable across processes, unlike `ParamId`s), so its moments save and load exactly.
//! The update is PyTorch's `torch.optim.AdamW` (decoupled decay, bias-corrected moments).

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result, ensure};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn::tensor::TensorData;
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::{Deserialize, Serialize};

use crate::model::MambaLm;
use crate::model::hf::safetensors::{OutTensor, StFile};

/// Hyper-parameters of the update.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AdamWParams {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decay of the parameters [`decays`] selects, unless a group says otherwise.
    pub weight_decay: f64,
    /// Max global L2 norm of the gradient (0 disables clipping).
    pub clip: f64,
    /// Layer-wise learning-rate decay `d`: layer `i` of `n` learns at `lr · d^(n-1-i)`; the
    /// embedding, the final norm (and an untied head) at `lr` (the BioMamba-2 recipe's choice:
    /// the embedding is also the tied output head).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_lr_decay: Option<f64>,
    /// Weight decay by parameter group: a parameter whose HF name contains a key takes that key's
    /// value (the longest matching key wins; `"*"` matches every name, below any other key),
    /// overriding the default above.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weight_decay_groups: BTreeMap<String, f64>,
}

impl AdamWParams {
    /// The weight decay of the parameter named `name`.
    pub fn decay_of(&self, name: &str) -> f64 {
        let group = self
            .weight_decay_groups
            .iter()
            .filter(|(k, _)| k.as_str() == "*" || name.contains(k.as_str()))
            .max_by_key(|(k, _)| if k.as_str() == "*" { 0 } else { k.len() });
        match group {
            Some((_, &wd)) => wd,
            None if decays(name) => self.weight_decay,
            None => 0.0,
        }
    }

    /// The learning-rate multiplier of the parameter named `name` in a model of `layers` layers.
    pub fn lr_scale_of(&self, name: &str, layers: usize) -> f64 {
        let Some(d) = self.layer_lr_decay else {
            return 1.0;
        };
        if let Some(rest) = name.strip_prefix("backbone.layers.") {
            let i: usize = rest
                .split('.')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            return d.powi((layers.saturating_sub(1 + i)) as i32);
        }
        1.0
    }
}

/// The shape of the learning-rate schedule (`[pretrain] schedule`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Linear warmup, then cosine decay to `min_lr` over the rest.
    #[default]
    Cosine,
    /// Warmup-stable-decay: linear warmup, `stable` steps at the peak, then cosine decay to
    /// `min_lr` over the rest.
    Wsd,
}

/// A learning-rate schedule over `total` updates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub total: u64,
    pub warmup: u64,
    /// Updates at the peak after the warmup (WSD only).
    pub stable: u64,
    pub peak: f64,
    pub min_lr: f64,
}

impl Schedule {
    /// Learning rate of update `step` (0-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        match self.kind {
            ScheduleKind::Cosine => lr_at(step, self.total, self.warmup, self.peak, self.min_lr),
            ScheduleKind::Wsd => {
                let flat_end = self.warmup + self.stable;
                if step < self.warmup {
                    return self.peak * (step + 1) as f64 / self.warmup as f64;
                }
                if step < flat_end {
                    return self.peak;
                }
                // Cosine from the peak at `flat_end` to `min_lr` at the last update.
                let span = self.total.saturating_sub(flat_end).saturating_sub(1).max(1);
                let progress = ((step - flat_end) as f64 / span as f64).min(1.0);
                self.min_lr
                    + 0.5
                        * (self.peak - self.min_lr)
                        * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

/// Whether the parameter with this HF name gets weight decay: linear and embedding weights
/// only (`*_proj.weight`, embeddings, an untied head). Not `A_log`, `D`, norms, biases, conv1d.
pub fn decays(name: &str) -> bool {
    name.ends_with("_proj.weight")
        || name.ends_with("embeddings.weight")
        || name.ends_with("embedding.weight")
        || name == "lm_head.weight"
}

/// Learning rate of update `step` (0-based): linear warmup over `warmup` updates to `peak`,
/// then cosine decay to `min_lr` at update `total - 1`.
pub fn lr_at(step: u64, total: u64, warmup: u64, peak: f64, min_lr: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).saturating_sub(1).max(1);
    let progress = ((step - warmup) as f64 / span as f64).min(1.0);
    min_lr + 0.5 * (peak - min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// First and second moments of one parameter, flattened.
struct Moments<B: Backend> {
    shape: Vec<usize>,
    exp_avg: Tensor<B, 1>,
    exp_avg_sq: Tensor<B, 1>,
}

/// AdamW state: moments per parameter name and the number of updates done.
pub struct AdamW<B: AutodiffBackend> {
    pub params: AdamWParams,
    /// Updates applied so far (drives bias correction).
    pub updates: u64,
    moments: BTreeMap<String, Moments<B::InnerBackend>>,
}

/// What one optimizer step did.
#[derive(Clone, Copy, Debug)]
pub struct StepStats {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

impl<B: AutodiffBackend> AdamW<B> {
    pub fn new(params: AdamWParams) -> Self {
        Self {
            params,
            updates: 0,
            moments: BTreeMap::new(),
        }
    }

    /// Apply one update with learning rate `lr` from the (accumulated) gradients.
    pub fn step(
        &mut self,
        lr: f64,
        model: MambaLm<B>,
        grads: GradientsParams,
    ) -> Result<(MambaLm<B>, StepStats)> {
        let (model, norm) = self.step_on_device(lr, model, grads)?;
        let grad_norm = norm.into_scalar_f64();
        ensure!(
            grad_norm.is_finite(),
            "gradient norm is {grad_norm} at update {} — the loss diverged",
            self.updates
        );
        Ok((model, StepStats { grad_norm }))
    }

    /// [`step`](Self::step) without reading anything back: the gradient norm before clipping
    /// stays on the device, and so does the clipping factor computed from it.
    pub fn step_on_device(
        &mut self,
        lr: f64,
        model: MambaLm<B>,
        mut grads: GradientsParams,
    ) -> Result<(MambaLm<B>, Tensor<B::InnerBackend, 1>)> {
        let names: HashMap<ParamId, String> = model
            .hf_params()
            .into_iter()
            .map(|(n, p)| (p.id(), n))
            .collect();
        let layers = model.num_layers();
        let mut norm = SquaredNorm::<B> {
            grads: &grads,
            total: None,
        };
        model.visit(&mut norm);
        let device = model.devices().into_iter().next();
        let grad_norm = match (norm.total, device) {
            (Some(t), _) => t.sqrt(),
            (None, Some(d)) => Tensor::zeros([1], &d),
            (None, None) => anyhow::bail!("the model has no parameters"),
        };
        // PyTorch's clip_grad_norm_: scale by max_norm / (norm + 1e-6), capped at 1.
        let scale = (self.params.clip > 0.0).then(|| {
            grad_norm
                .clone()
                .add_scalar(1e-6)
                .recip()
                .mul_scalar(self.params.clip)
                .clamp_max(1.0)
        });
        self.updates += 1;
        let mut mapper = UpdateMapper {
            opt: self,
            names: &names,
            grads: &mut grads,
            lr,
            layers,
            scale,
            missing: Vec::new(),
        };
        let model = model.map(&mut mapper);
        let missing = std::mem::take(&mut mapper.missing);
        ensure!(
            missing.is_empty(),
            "parameters without a name in the optimizer: {missing:?}"
        );
        Ok((model, grad_norm))
    }

    /// Name and shape of every moment held, in name order.
    pub fn moment_layout(&self) -> Vec<(String, Vec<usize>)> {
        self.moments
            .iter()
            .map(|(k, m)| (k.clone(), m.shape.clone()))
            .collect()
    }

    /// Replace the moments by those of `layout`, each moment tensor passed through `f` (given
    /// the one held, or zeros on `device` when there is none).
    pub fn remap_moments(
        &mut self,
        layout: &[(String, Vec<usize>)],
        device: &burn::tensor::Device<B::InnerBackend>,
        mut f: impl FnMut(Tensor<B::InnerBackend, 1>) -> Result<Tensor<B::InnerBackend, 1>>,
    ) -> Result<()> {
        let mut held = std::mem::take(&mut self.moments);
        for (name, shape) in layout {
            let n: usize = shape.iter().product();
            let (m, v) = match held.remove(name) {
                Some(m) => (m.exp_avg, m.exp_avg_sq),
                None => (Tensor::zeros([n], device), Tensor::zeros([n], device)),
            };
            let m = Moments {
                shape: shape.clone(),
                exp_avg: f(m)?,
                exp_avg_sq: f(v)?,
            };
            self.moments.insert(name.clone(), m);
        }
        Ok(())
    }

    /// A copy of this state on `device` (a data-parallel replica's optimizer).
    pub fn fork(&self, device: &burn::tensor::Device<B::InnerBackend>) -> Self {
        Self {
            params: self.params.clone(),
            updates: self.updates,
            moments: self
                .moments
                .iter()
                .map(|(k, m)| {
                    let m = Moments {
                        shape: m.shape.clone(),
                        exp_avg: m.exp_avg.clone().to_device(device),
                        exp_avg_sq: m.exp_avg_sq.clone().to_device(device),
                    };
                    (k.clone(), m)
                })
                .collect(),
        }
    }

    /// Moments as safetensors entries `exp_avg.<name>` / `exp_avg_sq.<name>` (f32, exact).
    pub fn state_tensors(&self) -> Result<Vec<OutTensor>> {
        let mut out = Vec::with_capacity(2 * self.moments.len());
        for (name, m) in &self.moments {
            for (prefix, t) in [("exp_avg", &m.exp_avg), ("exp_avg_sq", &m.exp_avg_sq)] {
                let v = t
                    .clone()
                    .into_data()
                    .convert::<f32>()
                    .to_vec::<f32>()
                    .map_err(|e| anyhow::anyhow!("reading {prefix}.{name}: {e:?}"))?;
                out.push(OutTensor::f32(
                    format!("{prefix}.{name}"),
                    m.shape.clone(),
                    &v,
                ));
            }
        }
        Ok(out)
    }

    /// Restore moments written by [`state_tensors`](Self::state_tensors).
    pub fn load_state(
        &mut self,
        f: &StFile,
        updates: u64,
        device: &burn::tensor::Device<B::InnerBackend>,
    ) -> Result<()> {
        self.moments.clear();
        self.updates = updates;
        for key in f.names() {
            let Some(name) = key.strip_prefix("exp_avg.") else {
                continue;
            };
            let (shape, m) = f.f32(&key)?;
            let (shape2, v) = f
                .f32(&format!("exp_avg_sq.{name}"))
                .with_context(|| format!("{}: moments of `{name}`", f.path().display()))?;
            ensure!(
                shape == shape2,
                "{}: exp_avg and exp_avg_sq of `{name}` differ in shape",
                f.path().display()
            );
            let n = m.len();
            self.moments.insert(
                name.to_string(),
                Moments {
                    shape,
                    exp_avg: Tensor::from_data(TensorData::new(m, [n]), device),
                    exp_avg_sq: Tensor::from_data(TensorData::new(v, [n]), device),
                },
            );
        }
        Ok(())
    }
}

trait ScalarF64 {
    fn into_scalar_f64(self) -> f64;
}
impl<B: Backend> ScalarF64 for Tensor<B, 1> {
    fn into_scalar_f64(self) -> f64 {
        self.into_data()
            .convert::<f64>()
            .to_vec::<f64>()
            .ok()
            .and_then(|v| v.first().copied())
            .unwrap_or(f64::NAN)
    }
}

/// Σ‖g‖² over all parameters, in module order and each parameter's sum in a fixed order, so the
/// norm (and with it the clipping) is reproducible on every backend.
struct SquaredNorm<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    total: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorm<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let s = crate::train::loss::sum_all(g.powi_scalar(2));
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

struct UpdateMapper<'a, B: AutodiffBackend> {
    opt: &'a mut AdamW<B>,
    names: &'a HashMap<ParamId, String>,
    grads: &'a mut GradientsParams,
    lr: f64,
    layers: usize,
    /// The clipping factor (≤ 1), on the device; `None` without clipping.
    scale: Option<Tensor<B::InnerBackend, 1>>,
    missing: Vec<ParamId>,
}

impl<B: AutodiffBackend> ModuleMapper<B> for UpdateMapper<'_, B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<B::InnerBackend, D>(id) else {
            // Not part of the loss: PyTorch skips such parameters entirely.
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let Some(name) = self.names.get(&id) else {
            self.missing.push(id);
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let p = &self.opt.params;
        let lr = self.lr * p.lr_scale_of(name, self.layers);
        let weight_decay = p.decay_of(name);
        let (beta1, beta2, eps) = (p.beta1, p.beta2, p.eps);
        let require_grad = tensor.is_require_grad();
        let shape = tensor.dims();
        let numel: usize = shape.iter().product();
        let mut w = tensor.inner();
        let g = grad.reshape([numel]);
        let g = match &self.scale {
            Some(s) => g * s.clone(),
            None => g,
        };
        let device = w.device();
        let m = self.opt.moments.remove(name).unwrap_or_else(|| Moments {
            shape: shape.to_vec(),
            exp_avg: Tensor::zeros([numel], &device),
            exp_avg_sq: Tensor::zeros([numel], &device),
        });
        let exp_avg = m.exp_avg.mul_scalar(beta1) + g.clone().mul_scalar(1.0 - beta1);
        let exp_avg_sq = m.exp_avg_sq.mul_scalar(beta2) + (g.clone() * g).mul_scalar(1.0 - beta2);
        let t = self.opt.updates as i32;
        let bc1 = 1.0 - beta1.powi(t);
        let bc2 = 1.0 - beta2.powi(t);
        if weight_decay > 0.0 {
            w = w.mul_scalar(1.0 - lr * weight_decay);
        }
        let denom = exp_avg_sq
            .clone()
            .sqrt()
            .div_scalar(bc2.sqrt())
            .add_scalar(eps);
        let upd = (exp_avg.clone() / denom).mul_scalar(-lr / bc1);
        let w = w + upd.reshape(shape);
        self.opt.moments.insert(
            name.clone(),
            Moments {
                shape: shape.to_vec(),
                exp_avg,
                exp_avg_sq,
            },
        );
        let mut t = Tensor::from_inner(w);
        if require_grad {
            t = t.require_grad();
        }
        Param::from_mapped_value(id, t, mapper)
    }
}

/// Extension used by [`AdamW::step`]: the id of a borrowed parameter.
trait ParamIdOf {
    fn id(&self) -> ParamId;
}
impl<B: Backend> ParamIdOf for crate::model::hf::ParamRef<'_, B> {
    fn id(&self) -> ParamId {
        match self {
            crate::model::hf::ParamRef::R1(p) => p.id,
            crate::model::hf::ParamRef::R2(p) => p.id,
            crate::model::hf::ParamRef::R3(p) => p.id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_min() {
        let (total, warm, peak, min) = (100, 10, 6e-4, 1e-5);
        assert!((lr_at(0, total, warm, peak, min) - 6e-5).abs() < 1e-12);
        assert!((lr_at(9, total, warm, peak, min) - peak).abs() < 1e-12);
        assert!((lr_at(10, total, warm, peak, min) - peak).abs() < 1e-12);
        assert!((lr_at(99, total, warm, peak, min) - min).abs() < 1e-12);
        let mid = lr_at(10 + 89 / 2, total, warm, peak, min);
        assert!(mid < peak && mid > min);
    }

    /// One update of a tiny model against the scalar PyTorch AdamW formula, with clipping active.
    #[test]
    fn update_matches_the_reference_formula() {
        use burn::backend::{Autodiff, NdArray};
        type B = Autodiff<NdArray<f32>>;
        let dev = Default::default();
        let mut cfg = crate::MambaConfig::new(16, 8, 2);
        cfg.state_size = 4;
        let model = cfg.init_seeded::<B>(&dev, 3);
        let ids = crate::train::data::batch_tensor::<B>(
            &[(0..12).map(|i| (i * 5) % 16).collect()],
            16,
            &dev,
        )
        .unwrap();
        let before: BTreeMap<String, Vec<f32>> = model
            .hf_tensors()
            .unwrap()
            .into_iter()
            .map(|t| {
                (
                    t.name,
                    t.bytes
                        .chunks(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                )
            })
            .collect();
        let grads = crate::causal_lm_loss(model.forward(ids.clone()), ids).backward();
        let host_grads: BTreeMap<String, Vec<f32>> = crate::hf_grads(&model, &grads)
            .unwrap()
            .into_iter()
            .map(|t| {
                (
                    t.name["grad.".len()..].to_string(),
                    t.bytes
                        .chunks(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                )
            })
            .collect();
        let norm = host_grads
            .values()
            .flatten()
            .map(|g| (*g as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let p = AdamWParams {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            clip: norm / 2.0,
            // Every group option in play: the reference below applies them by hand.
            layer_lr_decay: Some(0.5),
            weight_decay_groups: [("embeddings".to_string(), 0.0), ("out_proj".into(), 0.3)]
                .into_iter()
                .collect(),
        };
        let mut opt = AdamW::<B>::new(p.clone());
        let lr = 0.01;
        let gp = GradientsParams::from_grads(grads, &model);
        let (model, stats) = opt.step(lr, model, gp).unwrap();
        assert!(
            (stats.grad_norm - norm).abs() < 1e-4 * norm,
            "{} vs {norm}",
            stats.grad_norm
        );
        let scale = p.clip / (norm + 1e-6);
        let (bc1, bc2) = (1.0 - p.beta1, 1.0 - p.beta2);
        let mut checked = 0;
        for t in model.hf_tensors().unwrap() {
            let after: Vec<f32> = t
                .bytes
                .chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            for ((w1, w0), g) in after.iter().zip(&before[&t.name]).zip(&host_grads[&t.name]) {
                let g = *g as f64 * scale;
                let (m, v) = ((1.0 - p.beta1) * g, (1.0 - p.beta2) * g * g);
                let mut w = *w0 as f64;
                // Layer 0 of 2 learns at lr · 0.5; layer 1 and the embedding at lr.
                let lr = if t.name.contains("layers.0.") {
                    lr * 0.5
                } else {
                    lr
                };
                let wd = if t.name.contains("embeddings") {
                    0.0
                } else if t.name.contains("out_proj") {
                    0.3
                } else if decays(&t.name) {
                    p.weight_decay
                } else {
                    0.0
                };
                w *= 1.0 - lr * wd;
                w -= lr / bc1 * m / (v.sqrt() / bc2.sqrt() + p.eps);
                assert!((w - *w1 as f64).abs() < 2e-6, "{}: {w} vs {w1}", t.name);
                checked += 1;
            }
        }
        assert_eq!(checked, cfg.num_params());
        // The moments round-trip exactly through safetensors.
        let bytes =
            crate::model::hf::safetensors::serialize(&opt.state_tensors().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("opt.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        let mut back = AdamW::<B>::new(p);
        back.load_state(&StFile::open(&path).unwrap(), 1, &dev)
            .unwrap();
        assert_eq!(
            crate::model::hf::safetensors::serialize(&back.state_tensors().unwrap()).unwrap(),
            bytes
        );
    }

    /// WSD over 100 updates, 10 warmup, 65 stable, decay to 0.1 × peak: values by hand.
    #[test]
    fn wsd_schedule_at_chosen_steps() {
        let s = Schedule {
            kind: ScheduleKind::Wsd,
            total: 100,
            warmup: 10,
            stable: 65,
            peak: 5e-6,
            min_lr: 5e-7,
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-18;
        assert!(close(s.lr_at(0), 5e-7)); // 1/10 of the peak
        assert!(close(s.lr_at(4), 2.5e-6));
        assert!(close(s.lr_at(9), 5e-6));
        assert!(close(s.lr_at(10), 5e-6) && close(s.lr_at(74), 5e-6));
        assert!(close(s.lr_at(75), 5e-6)); // the decay starts at the peak
        // Decay over steps 75..=99 (span 24): halfway, step 87, is the mean of peak and floor.
        assert!(close(s.lr_at(87), 2.75e-6), "{}", s.lr_at(87));
        // Step 81: progress 6/24 = 1/4, cos(π/4) = √2/2.
        let want = 5e-7 + 0.5 * 4.5e-6 * (1.0 + std::f64::consts::FRAC_1_SQRT_2);
        assert!(close(s.lr_at(81), want));
        assert!(close(s.lr_at(99), 5e-7) && close(s.lr_at(150), 5e-7));
        // Cosine is the old schedule.
        let c = Schedule {
            kind: ScheduleKind::Cosine,
            ..s
        };
        assert_eq!(c.lr_at(40), lr_at(40, 100, 10, 5e-6, 5e-7));
    }

    #[test]
    fn layer_decay_and_decay_groups_by_name() {
        let p = AdamWParams {
            weight_decay: 0.1,
            layer_lr_decay: Some(0.8),
            weight_decay_groups: [("embeddings".to_string(), 0.0), ("layers.1.".into(), 0.2)]
                .into_iter()
                .collect(),
            ..AdamWParams::default()
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(
            p.lr_scale_of("backbone.layers.2.mixer.in_proj.weight", 3),
            1.0
        ));
        assert!(close(p.lr_scale_of("backbone.layers.0.mixer.D", 3), 0.64));
        assert!(close(p.lr_scale_of("backbone.embeddings.weight", 3), 1.0));
        assert!(close(p.lr_scale_of("backbone.norm_f.weight", 3), 1.0));
        assert_eq!(p.decay_of("backbone.embeddings.weight"), 0.0);
        assert_eq!(p.decay_of("backbone.layers.1.mixer.A_log"), 0.2);
        assert_eq!(p.decay_of("backbone.layers.0.mixer.in_proj.weight"), 0.1);
        assert_eq!(p.decay_of("backbone.layers.0.mixer.A_log"), 0.0);
        let plain = AdamWParams::default();
        assert_eq!(plain.lr_scale_of("backbone.layers.0.mixer.D", 3), 1.0);
        // The recipe's "decay everything": a catch-all below the named groups.
        let all = AdamWParams {
            weight_decay_groups: [("*".to_string(), 0.1), ("norm".into(), 0.0)].into(),
            ..AdamWParams::default()
        };
        assert_eq!(all.decay_of("backbone.layers.0.mixer.A_log"), 0.1);
        assert_eq!(all.decay_of("backbone.layers.0.mixer.dt_bias"), 0.1);
        assert_eq!(all.decay_of("backbone.norm_f.weight"), 0.0);
    }

    #[test]
    fn decay_mask_matches_the_recipe() {
        for n in [
            "backbone.embeddings.weight",
            "backbone.layers.0.mixer.in_proj.weight",
            "backbone.layers.0.mixer.x_proj.weight",
            "backbone.layers.0.mixer.dt_proj.weight",
            "backbone.layers.3.mixer.out_proj.weight",
            "lm_head.weight",
        ] {
            assert!(decays(n), "{n}");
        }
        for n in [
            "backbone.layers.0.mixer.A_log",
            "backbone.layers.0.mixer.D",
            "backbone.layers.0.norm.weight",
            "backbone.norm_f.weight",
            "backbone.layers.0.mixer.dt_proj.bias",
            "backbone.layers.0.mixer.conv1d.bias",
            "backbone.layers.0.mixer.in_proj.bias",
        ] {
            assert!(!decays(n), "{n}");
        }
    }
}
