//! The token embedding lookup `E[ids]`, with a backward that reduces in parallel on the GPU.
//!
//! Burn's backward of `select` adds the `[N, d]` upstream gradient into zeros `[V, d]`
//! (`select_add`), which CubeCL runs with one thread per column walking all N rows in order: at
//! 8 × 2048 tokens, 768 threads each doing 16,384 dependent read-modify-writes. The training
//! loop knows the ids on the host, so [`LookupPlan`] sorts the positions by id there (stably:
//! equal ids keep their position order) and the backward sums in two fixed-order stages:
//!
//! 1. the sorted gradient rows, cut into `k` chunks of `m` (`k` the largest divisor of N not above
//!    √N), are summed per (chunk, id) by a scatter along the chunk's rows: `k × d` threads, `m`
//!    rows each; every chunk also keeps one row that stays zero;
//! 2. an id whose rows all fell in one chunk takes that row; an id spanning several chunks (at
//!    most `k - 1` of them: only the ids where a chunk boundary falls) adds its chunk sums in
//!    chunk order. Ids not in the batch read a zero row. Gathers throughout: one thread per
//!    output element.
//!
//! Deterministic (no atomics, every order fixed by the ids), and the same sums as Burn's up to
//! f32 rounding (a sum of chunk sums instead of one running sum). NdArray keeps Burn's backward:
//! on the CPU the running sum is fastest, and CPU results stay as they were.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::Backend;
use burn::tensor::ops::IntTensor;
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData, TensorPrimitive};

use super::precision::root_divisor;

/// How the embedding gradient of one batch of ids is reduced, computed on the host from the ids
/// (see the module docs). Index vectors address the stage-1 table `[k × (m + 1), d]`.
#[derive(Clone, Debug, PartialEq)]
pub struct LookupPlan {
    /// Chunks `k` and rows per chunk `m` (`k × m` = the number of ids).
    chunks: usize,
    chunk_rows: usize,
    /// Positions of the ids, sorted by id (stable).
    order: Vec<i64>,
    /// The slot of each sorted position in its chunk: the rank of its id among the chunk's ids.
    slots: Vec<i64>,
    /// Ids whose rows all fell in one chunk, with that chunk's stage-1 row.
    singles: Vec<(i64, i64)>,
    /// Ids whose rows span several chunks, and their stage-1 rows, `width` each (zero-row padded).
    span_ids: Vec<i64>,
    span_rows: Vec<i64>,
    width: usize,
}

impl LookupPlan {
    /// The plan for the ids of a batch, flattened row-major (the lookup's order). `None` when
    /// the ids cannot be cut into 2 or more equal chunks (fewer than 4 ids, or a prime count):
    /// Burn's backward is used then.
    pub fn new<T: Copy + Ord + Into<i64>>(ids: &[T]) -> Option<Self> {
        let n = ids.len();
        let chunks = chunks(n)?;
        let m = n / chunks;
        let stride = m + 1;
        // Row m of chunk 0 is never written: the zero row.
        let zero = m as i64;
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&p| ids[p]); // stable
        let id_at = |p: usize| ids[order[p]];
        let mut slots = vec![0i64; n];
        for p in 1..n {
            if p % m != 0 {
                slots[p] = slots[p - 1] + i64::from(id_at(p) != id_at(p - 1));
            }
        }
        let mut singles = Vec::new();
        let (mut span_ids, mut spans) = (Vec::new(), Vec::<Vec<i64>>::new());
        let mut start = 0;
        while start < n {
            let id = id_at(start);
            let mut end = start + 1;
            while end < n && id_at(end) == id {
                end += 1;
            }
            // One stage-1 row per chunk the run touches: the run's slot in that chunk.
            let run: Vec<i64> = (start / m..=(end - 1) / m)
                .map(|c| {
                    let first = start.max(c * m);
                    (c * stride) as i64 + slots[first]
                })
                .collect();
            if let [row] = run[..] {
                singles.push((id.into(), row));
            } else {
                span_ids.push(id.into());
                spans.push(run);
            }
            start = end;
        }
        let width = spans.iter().map(Vec::len).max().unwrap_or(0);
        let span_rows = spans
            .iter()
            .flat_map(|r| r.iter().copied().chain(std::iter::repeat(zero)).take(width))
            .collect();
        Some(LookupPlan {
            chunks,
            chunk_rows: m,
            order: order.into_iter().map(|p| p as i64).collect(),
            slots,
            singles,
            span_ids,
            span_rows,
            width,
        })
    }

    /// The plan's index vectors as tensors on `device`, for a vocabulary of `vocab` rows.
    fn upload<B: Backend>(&self, vocab: usize, device: &B::Device) -> DevicePlan<B> {
        // Every vocabulary row reads its id's stage-1 row, or the zero row: an unused id, or a
        // spanning one (its sum is added after).
        let mut rows = vec![self.chunk_rows as i64; vocab];
        for &(id, row) in &self.singles {
            if let Some(r) = rows.get_mut(id as usize) {
                *r = row;
            }
        }
        let int = |v: &[i64]| -> IntTensor<B> {
            Tensor::<B, 1, Int>::from_data(TensorData::new(v.to_vec(), [v.len()]), device)
                .into_primitive()
        };
        DevicePlan {
            chunks: self.chunks,
            chunk_rows: self.chunk_rows,
            width: self.width,
            order: int(&self.order),
            slots: int(&self.slots),
            rows: int(&rows),
            spans: (!self.span_ids.is_empty()).then(|| (int(&self.span_ids), int(&self.span_rows))),
        }
    }
}

/// The largest divisor of `n` not above √n, if it is at least 2.
fn chunks(n: usize) -> Option<usize> {
    Some(root_divisor(n)).filter(|&k| k >= 2)
}

/// A [`LookupPlan`] on the device.
#[derive(Clone, Debug)]
pub struct DevicePlan<B: Backend> {
    chunks: usize,
    chunk_rows: usize,
    width: usize,
    order: IntTensor<B>,
    slots: IntTensor<B>,
    rows: IntTensor<B>,
    spans: Option<(IntTensor<B>, IntTensor<B>)>,
}

fn ints<B: Backend>(t: &IntTensor<B>) -> Tensor<B, 1, Int> {
    Tensor::from_primitive(t.clone())
}

/// The gradient of `E[ids]` w.r.t. `E` `[V, d]` for the upstream gradient `grad` `[N, d]`, by
/// the plan's two stages.
pub fn planned_backward<B: Backend>(grad: Tensor<B, 2>, plan: &DevicePlan<B>) -> Tensor<B, 2> {
    let d = grad.dims()[1];
    let (k, m) = (plan.chunks, plan.chunk_rows);
    let sorted = grad.select(0, ints(&plan.order)).reshape([k, m, d]);
    let slots = ints(&plan.slots).reshape([k, m, 1]).expand([k, m, d]);
    let partial = Tensor::<B, 3>::zeros([k, m + 1, d], &sorted.device())
        .scatter(1, slots, sorted, IndexingUpdateOp::Add)
        .reshape([k * (m + 1), d]);
    let out = partial.clone().select(0, ints(&plan.rows));
    match &plan.spans {
        None => out,
        Some((ids, rows)) => {
            let ids = ints(ids);
            let n = ids.dims()[0];
            let sums = partial
                .select(0, ints(rows))
                .reshape([n, plan.width, d])
                .sum_dim(1)
                .reshape([n, d]);
            // Those ids' rows in `out` are zero rows, so adding sets them.
            out.select_assign(0, ids, sums, IndexingUpdateOp::Add)
        }
    }
}

/// The model's backends choose the lookup's backward: Burn's (the default) or the plan's.
pub trait LookupBackend: Backend {
    /// `weight` `[V, d]` rows at `ids` `[N]`; under autodiff the gradient follows `plan` when
    /// given and the backend reduces that way ([`LookupBackend::PLANNED`] of the inner backend).
    fn lookup(
        weight: Tensor<Self, 2>,
        ids: Tensor<Self, 1, Int>,
        plan: Option<&LookupPlan>,
    ) -> Tensor<Self, 2> {
        let _ = plan;
        weight.select(0, ids)
    }

    /// Whether the plan's backward is used: on GPU backends, where Burn's walks every row with
    /// one thread per column.
    const PLANNED: bool = false;
}

/// The plan for `ids` when backend `B` reduces by one ([`LookupBackend::PLANNED`]), else `None`.
pub fn plan_for<B: LookupBackend, T: Copy + Ord + Into<i64>>(ids: &[T]) -> Option<LookupPlan> {
    if B::PLANNED && PLANS.load(Ordering::Relaxed) {
        LookupPlan::new(ids)
    } else {
        None
    }
}

static PLANS: AtomicBool = AtomicBool::new(true);

/// Whether [`plan_for`] makes plans (the default) or leaves every backend on Burn's backward;
/// the switch lets `bench_train --plain-lookup` time both in one build.
pub fn set_plans(on: bool) {
    PLANS.store(on, Ordering::Relaxed);
}

impl LookupBackend for burn::backend::NdArray<f32> {}

#[cfg(feature = "cubecl-kernels")]
impl<R, F, I, BT> LookupBackend for burn_cubecl::CubeBackend<R, F, I, BT>
where
    R: burn_cubecl::CubeRuntime,
    F: burn_cubecl::FloatElement,
    I: burn_cubecl::IntElement,
    BT: burn_cubecl::BoolElement,
{
    const PLANNED: bool = true;
}

/// Backward step of a planned lookup (parent: the embedding weight).
#[derive(Debug)]
struct LookupBackward;

impl<B: Backend> Backward<B, 1> for LookupBackward {
    type State = DevicePlan<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad: Tensor<B, 2> =
            Tensor::from_primitive(TensorPrimitive::Float(grads.consume::<B>(&ops.node)));
        let out = planned_backward(grad, &ops.state).into_primitive().tensor();
        if let [Some(parent)] = ops.parents {
            grads.register::<B>(parent.id, out);
        }
    }
}

impl<B: LookupBackend, C: CheckpointStrategy> LookupBackend for Autodiff<B, C> {
    const PLANNED: bool = B::PLANNED;

    fn lookup(
        weight: Tensor<Self, 2>,
        ids: Tensor<Self, 1, Int>,
        plan: Option<&LookupPlan>,
    ) -> Tensor<Self, 2> {
        let Some(plan) = plan.filter(|_| B::PLANNED) else {
            return weight.select(0, ids);
        };
        let [vocab, _] = weight.dims();
        let device = weight.device();
        let weight = weight.into_primitive().tensor();
        let inner =
            Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(weight.primitive.clone()))
                .select(0, Tensor::from_primitive(ids.into_primitive()));
        let out = inner.into_primitive().tensor();
        let out = match LookupBackward
            .prepare::<C>([weight.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(plan.upload::<B>(vocab, &device), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        Tensor::from_primitive(TensorPrimitive::Float(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::Distribution;

    type Be = NdArray<f32>;

    /// Ids with a frequent one spanning many chunks (like padding), ids at chunk boundaries,
    /// singletons and vocabulary rows never used.
    fn batch(n: usize, vocab: u32) -> Vec<u32> {
        let mut state = 7u64;
        (0..n)
            .map(|i| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let r = (state >> 33) as u32;
                if i % 3 == 0 {
                    0
                } else if r % 5 == 0 {
                    (1 + r % 7) % vocab
                } else {
                    r % vocab
                }
            })
            .collect()
    }

    fn burn_gradient(grad: &Tensor<Be, 2>, ids: &[u32], vocab: usize) -> Vec<f32> {
        let ids = Tensor::<Be, 1, Int>::from_data(
            TensorData::new(ids.iter().map(|&i| i64::from(i)).collect(), [ids.len()]),
            &Default::default(),
        );
        let d = grad.dims()[1];
        Tensor::<Be, 2>::zeros([vocab, d], &Default::default())
            .select_assign(0, ids, grad.clone(), IndexingUpdateOp::Add)
            .into_data()
            .to_vec()
            .unwrap()
    }

    /// The plan's two stages sum the same rows as Burn's one running sum (within f32 rounding),
    /// unused ids get exact zeros, and the result is the same bit for bit when run again.
    #[test]
    fn planned_backward_sums_what_select_add_sums() {
        let dev = Default::default();
        for (n, vocab) in [(4096usize, 300u32), (6 * 35, 50), (16, 4), (9, 2000)] {
            let ids = batch(n, vocab);
            let grad = Tensor::<Be, 2>::random([n, 5], Distribution::Normal(0.0, 1.0), &dev);
            let plan = LookupPlan::new(&ids).expect("divisible");
            assert_eq!(plan.chunks * plan.chunk_rows, n);
            let want = burn_gradient(&grad, &ids, vocab as usize);
            let run = || -> Vec<f32> {
                planned_backward(grad.clone(), &plan.upload::<Be>(vocab as usize, &dev))
                    .into_data()
                    .to_vec()
                    .unwrap()
            };
            let got = run();
            assert_eq!(got.len(), want.len());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let (v, j) = (i / 5, i % 5);
                if !ids.contains(&(v as u32)) {
                    assert_eq!(*g, 0.0, "id {v} not in the batch");
                }
                assert!(
                    (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                    "n {n}: id {v} col {j}: {g} vs {w}"
                );
            }
            assert_eq!(run(), got, "n {n}: run to run");
            if n == 4096 {
                // Id 0 fills every third position, first in sorted order: it spans the most chunks.
                let zeros = ids.iter().filter(|&&i| i == 0).count();
                assert!(plan.span_ids.contains(&0));
                assert_eq!(plan.width, zeros.div_ceil(plan.chunk_rows));
            }
        }
        assert_eq!(LookupPlan::new(&[1u32, 2, 3]), None);
        assert_eq!(LookupPlan::new(&[1u32; 13]), None);
    }

    /// Sorting is stable and slots count distinct ids within each chunk.
    #[test]
    fn plan_sorts_stably_and_ranks_ids_per_chunk() {
        // 8 ids, 2 chunks of 4.
        let plan = LookupPlan::new(&[3u32, 1, 3, 0, 1, 3, 2, 3]).unwrap();
        assert_eq!((plan.chunks, plan.chunk_rows), (2, 4));
        // Sorted: 0@3, 1@1, 1@4, 2@6 | 3@0, 3@2, 3@5, 3@7.
        assert_eq!(plan.order, vec![3, 1, 4, 6, 0, 2, 5, 7]);
        assert_eq!(plan.slots, vec![0, 1, 1, 2, 0, 0, 0, 0]);
        // Stage-1 rows: chunk c slot s = c * 5 + s (row 4 is the zero row).
        assert_eq!(plan.singles, vec![(0, 0), (1, 1), (2, 2), (3, 5)]);
        assert!(plan.span_ids.is_empty());
        let plan = LookupPlan::new(&[2i64, 2, 2, 2, 2, 1]).unwrap();
        // 2 chunks of 3: 1, 2, 2 | 2, 2, 2: id 2 spans both.
        assert_eq!(plan.span_ids, vec![2]);
        assert_eq!(plan.span_rows, vec![1, 4]);
        assert_eq!(plan.singles, vec![(1, 0)]);
    }
}
