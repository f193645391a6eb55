//! An exponential moving average of the weights (`[pretrain] ema`), the model the BioMamba-2 recipe
//! releases: after every optimizer update `e ← d·e + (1 − d)·w`, starting from the initial weights.
//!
//! The average lives on the training device beside the model (one more copy of the weights), keyed
//! by HF name like the optimizer's moments, and is saved in every checkpoint as
//! [`EMA_FILE`] under the same names as `model.safetensors`, so `trainer export --weights ema`
//! writes it as an ordinary HF model.

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};

use crate::model::MambaLm;
use crate::model::hf::ParamRef;
use crate::model::hf::safetensors::{OutTensor, StFile};

/// The checkpoint file holding the average (HF names, f32).
pub const EMA_FILE: &str = "ema.safetensors";

/// The moving average of every parameter, flattened.
pub struct Ema<B: AutodiffBackend> {
    pub decay: f64,
    tensors: BTreeMap<String, (Vec<usize>, Tensor<B::InnerBackend, 1>)>,
}

fn flat<B: AutodiffBackend>(p: &ParamRef<'_, B>) -> Tensor<B::InnerBackend, 1> {
    match p {
        ParamRef::R1(p) => p.val().inner(),
        ParamRef::R2(p) => p.val().inner().flatten(0, 1),
        ParamRef::R3(p) => p.val().inner().flatten(0, 2),
    }
}

impl<B: AutodiffBackend> Ema<B> {
    /// The average of a model that has not been updated yet: its weights.
    pub fn new(decay: f64, model: &MambaLm<B>) -> Self {
        let tensors = model
            .hf_params()
            .into_iter()
            .map(|(name, p)| (name, (p.shape(), flat(&p))))
            .collect();
        Self { decay, tensors }
    }

    /// Fold the weights after an update into the average.
    pub fn update(&mut self, model: &MambaLm<B>) -> Result<()> {
        let d = self.decay;
        for (name, p) in model.hf_params() {
            let (_, e) = self
                .tensors
                .get_mut(&name)
                .with_context(|| format!("the moving average has no `{name}`"))?;
            *e = e.clone().mul_scalar(d) + flat(&p).mul_scalar(1.0 - d);
        }
        Ok(())
    }

    /// The average as safetensors entries under HF names (f32, exact).
    pub fn tensors(&self) -> Result<Vec<OutTensor>> {
        self.tensors
            .iter()
            .map(|(name, (shape, t))| {
                let v = t
                    .clone()
                    .into_data()
                    .convert::<f32>()
                    .to_vec::<f32>()
                    .map_err(|e| anyhow::anyhow!("reading the average of {name}: {e:?}"))?;
                Ok(OutTensor::f32(name.clone(), shape.clone(), &v))
            })
            .collect()
    }

    /// The average saved by [`tensors`](Self::tensors) in a checkpoint, for `model`'s parameters.
    pub fn load(
        decay: f64,
        f: &StFile,
        model: &MambaLm<B>,
        device: &burn::tensor::Device<B::InnerBackend>,
    ) -> Result<Self> {
        let mut tensors = BTreeMap::new();
        for (name, p) in model.hf_params() {
            let (shape, v) = f
                .f32(&name)
                .with_context(|| format!("{}: the average of `{name}`", f.path().display()))?;
            ensure!(
                shape == p.shape(),
                "{}: `{name}` has shape {shape:?}, the model {:?}",
                f.path().display(),
                p.shape()
            );
            let n = v.len();
            tensors.insert(
                name,
                (shape, Tensor::from_data(TensorData::new(v, [n]), device)),
            );
        }
        Ok(Self { decay, tensors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::hf::safetensors;
    use burn::backend::{Autodiff, NdArray};
    type B = Autodiff<NdArray<f32>>;

    fn values(ts: &[OutTensor], name: &str) -> Vec<f32> {
        let t = ts.iter().find(|t| t.name == name).unwrap();
        t.bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    /// Three updates with weights w0 (start), w1, w2, w3 give
    /// e3 = d³·w0 + (1−d)(d²·w1 + d·w2 + w3), computed here by hand on every element.
    #[test]
    fn average_after_k_updates_matches_the_formula() {
        let dev = Default::default();
        let mut cfg = crate::MambaConfig::new(16, 8, 1);
        cfg.state_size = 4;
        let models: Vec<MambaLm<B>> = (0..4).map(|s| cfg.init_seeded::<B>(&dev, s)).collect();
        let d = 0.9;
        let mut ema = Ema::new(d, &models[0]);
        for m in &models[1..] {
            ema.update(m).unwrap();
        }
        let got = ema.tensors().unwrap();
        let w: Vec<Vec<OutTensor>> = models.iter().map(|m| m.hf_tensors().unwrap()).collect();
        let mut checked = 0;
        for t in &w[0] {
            let ws: Vec<Vec<f32>> = w.iter().map(|ts| values(ts, &t.name)).collect();
            for (i, e) in values(&got, &t.name).iter().enumerate() {
                let x = |k: usize| ws[k][i] as f64;
                let want = d.powi(3) * x(0) + (1.0 - d) * (d * d * x(1) + d * x(2) + x(3));
                assert!(
                    (*e as f64 - want).abs() < 1e-6,
                    "{}[{i}]: {e} vs {want}",
                    t.name
                );
                checked += 1;
            }
        }
        assert_eq!(checked, cfg.num_params());
        // Saved and loaded back bit for bit.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(EMA_FILE);
        std::fs::write(&path, safetensors::serialize(&got).unwrap()).unwrap();
        let back = Ema::load(d, &StFile::open(&path).unwrap(), &models[0], &dev).unwrap();
        assert_eq!(
            safetensors::serialize(&back.tensors().unwrap()).unwrap(),
            safetensors::serialize(&got).unwrap()
        );
    }
}
