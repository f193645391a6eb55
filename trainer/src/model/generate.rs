//! Autoregressive decoding with the recurrent cache: greedy and beam search.
//!
//! The prompt is processed in parallel mode (which also yields the cache), then each new
//! token costs one O(1) recurrent step per layer.

use crate::model::scan::ScanBackend;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::model::{MambaCache, MambaLm};

/// Decoding options.
#[derive(Debug, Clone)]
pub struct GenerateConfig {
    pub max_new_tokens: usize,
    /// 1 = greedy.
    pub num_beams: usize,
    /// Generation stops at EOS (Mamba/GPT-NeoX tokenizer: 0). The EOS token is kept in the
    /// returned tokens.
    pub eos_token_id: Option<u32>,
    /// Extra stop tokens (e.g. the newline token for one-line answers).
    pub stop_token_ids: Vec<u32>,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        GenerateConfig {
            max_new_tokens: 32,
            num_beams: 1,
            eos_token_id: Some(0),
            stop_token_ids: Vec::new(),
        }
    }
}

impl GenerateConfig {
    fn is_stop(&self, t: u32) -> bool {
        self.eos_token_id == Some(t) || self.stop_token_ids.contains(&t)
    }
}

/// A finished (or length-capped) continuation.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// New tokens only (the stop token included when it ended the sequence).
    pub tokens: Vec<u32>,
    /// Sum of the natural-log probabilities of `tokens` (no length normalization).
    pub logprob: f64,
    /// True when a stop token ended it, false when `max_new_tokens` did.
    pub stopped: bool,
}

fn ids_1d<B: Backend>(ids: &[u32], device: &B::Device) -> Tensor<B, 1, Int> {
    let v: Vec<i64> = ids.iter().map(|&x| x as i64).collect();
    Tensor::from_data(TensorData::new(v, [ids.len()]), device)
}

/// Run the prompt in parallel mode; returns last-position logits `[1, V]` and the cache.
pub fn prefill<B: ScanBackend>(
    model: &MambaLm<B>,
    prompt: &[u32],
    device: &B::Device,
) -> (Tensor<B, 2>, MambaCache<B>) {
    assert!(!prompt.is_empty(), "prompt must not be empty");
    let ids = ids_1d::<B>(prompt, device).reshape([1, prompt.len()]);
    model.prefill(ids)
}

fn to_rows<B: Backend>(t: Tensor<B, 2>) -> Vec<Vec<f32>> {
    let [r, c] = t.dims();
    let v = t
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 data");
    (0..r).map(|i| v[i * c..(i + 1) * c].to_vec()).collect()
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Greedy decoding: up to `max_new_tokens` new tokens, stopping after a stop token.
pub fn greedy<B: ScanBackend>(
    model: &MambaLm<B>,
    prompt: &[u32],
    cfg: &GenerateConfig,
    device: &B::Device,
) -> Candidate {
    let (mut logits, mut cache) = prefill(model, prompt, device);
    let mut out = Candidate {
        tokens: Vec::new(),
        logprob: 0.0,
        stopped: false,
    };
    for i in 0..cfg.max_new_tokens {
        let lp = to_rows(log_softmax(logits, 1)).remove(0);
        let t = argmax(&lp) as u32;
        out.tokens.push(t);
        out.logprob += lp[t as usize] as f64;
        if cfg.is_stop(t) {
            out.stopped = true;
            break;
        }
        if i + 1 < cfg.max_new_tokens {
            logits = model.step(ids_1d::<B>(&[t], device), &mut cache);
        } else {
            break;
        }
    }
    out
}

/// Beam search with `cfg.num_beams` beams; returns up to `num_beams` candidates, best
/// (highest sequence log-probability) first.
pub fn beam_search<B: ScanBackend>(
    model: &MambaLm<B>,
    prompt: &[u32],
    cfg: &GenerateConfig,
    device: &B::Device,
) -> Vec<Candidate> {
    let k = cfg.num_beams.max(1);
    let (mut logits, mut cache) = prefill(model, prompt, device);
    // Alive beams: (tokens, logprob); row i of `logits`/`cache` belongs to beam i.
    let mut alive: Vec<(Vec<u32>, f64)> = vec![(Vec::new(), 0.0)];
    let mut done: Vec<Candidate> = Vec::new();
    for step in 0..cfg.max_new_tokens {
        let rows = to_rows(log_softmax(logits, 1));
        let mut cands: Vec<(f64, usize, u32)> = Vec::new();
        for (bi, row) in rows.iter().enumerate() {
            // Only the top-k tokens of each beam can make the global top-k.
            let mut idx: Vec<usize> = (0..row.len()).collect();
            let kk = k.min(row.len());
            idx.select_nth_unstable_by(kk - 1, |&a, &b| row[b].total_cmp(&row[a]));
            for &t in &idx[..kk] {
                cands.push((alive[bi].1 + row[t] as f64, bi, t as u32));
            }
        }
        cands.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut next: Vec<(Vec<u32>, f64)> = Vec::new();
        let mut parents: Vec<u32> = Vec::new();
        let mut toks: Vec<u32> = Vec::new();
        let last_step = step + 1 == cfg.max_new_tokens;
        for (lp, bi, t) in cands {
            if next.len() >= k {
                break;
            }
            let mut seq = alive[bi].0.clone();
            seq.push(t);
            if cfg.is_stop(t) {
                done.push(Candidate {
                    tokens: seq,
                    logprob: lp,
                    stopped: true,
                });
            } else if last_step {
                done.push(Candidate {
                    tokens: seq,
                    logprob: lp,
                    stopped: false,
                });
                next.push((Vec::new(), lp)); // counts toward k; not continued
            } else {
                next.push((seq, lp));
                parents.push(bi as u32);
                toks.push(t);
            }
        }
        if last_step || next.is_empty() {
            break;
        }
        // Log-probs only decrease, so once k finished beams beat every alive one, stop.
        done.sort_by(|a, b| b.logprob.total_cmp(&a.logprob));
        if done.len() >= k && done[k - 1].logprob >= next[0].1 {
            alive.clear();
            break;
        }
        cache = cache.select(ids_1d::<B>(&parents, device));
        logits = model.step(ids_1d::<B>(&toks, device), &mut cache);
        alive = next;
    }
    done.sort_by(|a, b| b.logprob.total_cmp(&a.logprob));
    done.truncate(k);
    done
}
/// Continuations of the text `prompt` (tokenized with `tok`): greedy when `cfg.num_beams` is 1,
/// else the beams, best first, as `(sequence log-probability, decoded new text)`.
pub fn complete_text<B: ScanBackend>(
    model: &MambaLm<B>,
    tok: &tokenizers::Tokenizer,
    prompt: &str,
    cfg: &GenerateConfig,
    device: &B::Device,
) -> anyhow::Result<Vec<(f64, String)>> {
    let enc = tok
        .encode(prompt, false)
        .map_err(|e| anyhow::anyhow!("tokenizing the prompt: {e}"))?;
    let ids = enc.get_ids().to_vec();
    anyhow::ensure!(!ids.is_empty(), "the prompt tokenizes to nothing");
    let vocab = model.vocab_size;
    if let Some((pos, id)) = ids
        .iter()
        .enumerate()
        .find(|(_, id)| **id as usize >= vocab)
    {
        anyhow::bail!(
            "prompt token {pos} has id {id}, outside the model's vocabulary of {vocab} (the \
             tokenizer and the model do not match)"
        );
    }
    let cands = if cfg.num_beams <= 1 {
        vec![greedy(model, &ids, cfg, device)]
    } else {
        beam_search(model, &ids, cfg, device)
    };
    cands
        .iter()
        .map(|c| {
            let text = tok
                .decode(&c.tokens, true)
                .map_err(|e| anyhow::anyhow!("decoding {:?}: {e}", c.tokens))?;
            Ok((c.logprob, text))
        })
        .collect()
}
