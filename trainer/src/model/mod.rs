//! Mamba language models in Burn — Mamba-1 (`MambaForCausalLM`) and Mamba-2
//! (`Mamba2ForCausalLM`) — numerically matching transformers' pure-PyTorch ("slow") paths. The
//! two share the embedding, the pre-norm residual blocks, norm_f, the (tied) head and the
//! generation loop ([`MambaLm`]); they differ in the block's mixer ([`Mixer`]): the selective
//! scan ([`mixer`], [`scan`]) or SSD ([`mamba2`], [`ssd`]). Also: configs ([`config`]), autocast
//! ([`precision`]), HF weights in and out ([`hf`]) and generation ([`generate`]).
//!
//! Parameters are stored in the HF layout (`Linear` weights as `[out, in]`, conv weight
//! `[C, 1, K]`) so import/export is a plain copy and gradients map 1:1 to HF names.

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

pub mod config;
pub mod generate;
pub mod hf;
pub mod lookup;
pub mod mamba2;
pub mod mixer;
pub mod precision;
pub mod scan;
pub mod ssd;

pub use config::{Arch, MambaConfig, ModelConfig};
use config::{normal, uniform};
pub use generate::{Candidate, GenerateConfig, beam_search, greedy};
pub use lookup::{LookupBackend, LookupPlan};
pub use mamba2::{GatedRmsNorm, Mamba2Config, Mamba2Mixer};
pub use mixer::{LayerState, MambaCache, MambaMixer, RmsNorm, softplus_torch};
pub use precision::Precision;

use precision::{linear_t, matmul_t};
use scan::ScanBackend;

/// Residual block: x + mixer(RMSNorm(x)).
#[derive(Module, Debug)]
pub struct MambaBlock<B: Backend> {
    pub norm: RmsNorm<B>,
    pub mixer: Mixer<B>,
}

/// A block's sequence mixer: Mamba-1's selective scan or Mamba-2's SSD. Both keep a recurrent
/// [`LayerState`] of the same form (conv inputs `[B, C, K]`, SSM state `[B, D, N]`).
#[derive(Module, Debug)]
pub enum Mixer<B: Backend> {
    Mamba(MambaMixer<B>),
    Mamba2(Mamba2Mixer<B>),
}

impl<B: Backend> Mixer<B> {
    pub fn arch(&self) -> Arch {
        match self {
            Mixer::Mamba(_) => Arch::Mamba,
            Mixer::Mamba2(_) => Arch::Mamba2,
        }
    }

    pub fn precision(&self) -> Precision {
        match self {
            Mixer::Mamba(m) => m.precision,
            Mixer::Mamba2(m) => m.precision,
        }
    }

    fn set_precision(&mut self, precision: Precision) {
        match self {
            Mixer::Mamba(m) => m.precision = precision,
            Mixer::Mamba2(m) => m.precision = precision,
        }
    }

    /// The input projection (both architectures have one).
    pub fn in_proj(&self) -> &Param<Tensor<B, 2>> {
        match self {
            Mixer::Mamba(m) => &m.in_proj,
            Mixer::Mamba2(m) => &m.in_proj,
        }
    }

    /// One recurrent step. `x`: [B, d_model] → [B, d_model]; updates `state`.
    pub fn step(&self, x: Tensor<B, 2>, state: &mut LayerState<B>) -> Tensor<B, 2> {
        match self {
            Mixer::Mamba(m) => m.step(x, state),
            Mixer::Mamba2(m) => m.step(x, state),
        }
    }

    fn empty_state(&self, bsz: usize, device: &B::Device) -> LayerState<B> {
        match self {
            Mixer::Mamba(m) => m.empty_state(bsz, device),
            Mixer::Mamba2(m) => m.empty_state(bsz, device),
        }
    }
}

impl<B: ScanBackend> Mixer<B> {
    /// Parallel forward. `x`: [B, L, d_model] → ([B, L, d_model], final state when asked).
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        want_state: bool,
    ) -> (Tensor<B, 3>, Option<LayerState<B>>) {
        match self {
            Mixer::Mamba(m) => m.forward(x, want_state),
            Mixer::Mamba2(m) => m.forward(x, want_state),
        }
    }
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

    /// The architecture of the blocks (Mamba-1 when there are none).
    pub fn arch(&self) -> Arch {
        self.layers.first().map_or(Arch::Mamba, |l| l.mixer.arch())
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
            layer.mixer.set_precision(precision);
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

    /// [`Self::forward`] for training: the embedding gradient is reduced by `plan` (made on the
    /// host from the same ids, [`LookupPlan::new`]) on backends where that is faster.
    pub fn forward_planned(
        &self,
        ids: Tensor<B, 2, Int>,
        plan: Option<&LookupPlan>,
    ) -> Tensor<B, 3> {
        let (x, _, _) = self.blocks(ids, plan, false, false);
        let x = self.norm_f.forward(x);
        linear_t(x, self.head_weight(), None, self.precision)
    }

    /// Parallel forward with optional per-block hidden states and final recurrent cache.
    pub fn forward_full(
        &self,
        ids: Tensor<B, 2, Int>,
        want_hidden: bool,
        want_cache: bool,
    ) -> ForwardOutput<B> {
        let (x, mut hidden, states) = self.blocks(ids, None, want_hidden, want_cache);
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
        let (x, _, states) = self.blocks(ids, None, false, true);
        let d = x.dims()[2];
        let x = self
            .norm_f
            .forward(x.narrow(1, len - 1, 1).reshape([bsz, d]));
        (self.head(x), MambaCache { layers: states })
    }

    /// Embedding and every block in parallel mode: the residual stream before `norm_f`, the
    /// stream after each block (when `want_hidden`) and each layer's final state (`want_cache`).
    #[allow(clippy::type_complexity)]
    fn blocks(
        &self,
        ids: Tensor<B, 2, Int>,
        plan: Option<&LookupPlan>,
        want_hidden: bool,
        want_cache: bool,
    ) -> (Tensor<B, 3>, Vec<Tensor<B, 3>>, Vec<LayerState<B>>) {
        let [bsz, len] = ids.dims();
        let emb = self.embeddings.val();
        let d = emb.dims()[1];
        let mut x = B::lookup(emb, ids.reshape([bsz * len]), plan).reshape([bsz, len, d]);
        let mut hidden = Vec::new();
        let mut states = Vec::with_capacity(if want_cache { self.layers.len() } else { 0 });
        for layer in &self.layers {
            let (y, st) = layer
                .mixer
                .forward(layer.norm.forward(x.clone()), want_cache);
            x = x + y;
            if want_hidden {
                hidden.push(x.clone());
            }
            states.extend(st);
        }
        (x, hidden, states)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::TensorData;

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
        let Mixer::Mamba(mx) = &m.layers[1].mixer else {
            panic!("a Mamba-1 config builds Mamba-1 mixers")
        };
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
            let loss = crate::train::loss::causal_lm_loss(logits.clone(), ids.clone());
            let grads = loss.backward();
            for g in [
                m.embeddings.grad(&grads).unwrap(),
                m.lm_head.as_ref().unwrap().grad(&grads).unwrap(),
                m.layers[0].mixer.in_proj().grad(&grads).unwrap(),
            ] {
                assert_eq!(g.dtype(), DType::F32, "master-weight gradients stay f32");
            }
            let flat = |t: Tensor<Ad, 3>| t.into_data().to_vec::<f32>().unwrap();
            let g = crate::model::hf::hf_grads(m, &grads).unwrap();
            (flat(logits), g)
        };
        let (want, want_g) = run(&base);
        let wide = base.clone().with_precision(Precision::F64);
        assert_eq!(wide.valid().layers[1].mixer.precision(), Precision::F64);
        let (got, got_g) = run(&wide);
        let rel = crate::model::scan::tests::rel;
        assert_ne!(got, want, "the f64 products were not used");
        assert!(
            rel(&got, &want) < 1e-5,
            "logits rel err {}",
            rel(&got, &want)
        );
        for (a, b) in got_g.iter().zip(&want_g) {
            let f = |t: &crate::model::hf::safetensors::OutTensor| -> Vec<f32> {
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
        // TF32 is CUDA's: refused here; "f32" is strict here, and refused on CUDA by name.
        let err = Precision::Tf32
            .check::<Be>(&dev, "[finetune] precision")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"tf32\" is CUDA's") && err.contains("\"f32\""),
            "{err}"
        );
        assert!(crate::model::precision::runs_f32_as_tf32(
            "autodiff<cubecl<cuda>>"
        ));
        assert!(!crate::model::precision::runs_f32_as_tf32(
            "autodiff<ndarray>"
        ));
        let err = Precision::Bf16
            .check::<Be>(&dev, "[pretrain] precision")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[pretrain] precision = \"bf16\"") && err.contains("--device cuda"),
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
