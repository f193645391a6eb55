//! `Autodiff<B>`: the scan as one custom node of the tape.
//!
//! The forward runs `B::selective_scan_forward` on the inner tensors and records a single
//! backward step whose state is the six input primitives (tensors the model keeps alive
//! anyway: `[B, D, L]`, `[B, N, L]`, `[D, N]`, `[D]`). Its backward calls
//! `B::selective_scan_backward`, which recomputes the states, so no `[B, D, L, N]`
//! activation is stored between forward and backward.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

use super::{ScanBackend, ScanInputs};

fn inner<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

fn prim<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

/// Backward step of the selective scan (parents: u, delta, a, b, c, d).
#[derive(Debug)]
struct ScanBackward;

/// Inner primitives of (u, delta, a, b, c, d).
type ScanState<B> = [FloatTensor<B>; 6];

impl<B: ScanBackend> Backward<B, 6> for ScanBackward {
    type State = ScanState<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 6>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let dy: Tensor<B, 3> = inner(grads.consume::<B>(&ops.node));
        let x = ScanInputs::<B>::from_primitives(ops.state);
        let out = B::selective_scan_backward(x, dy).into_primitives();
        for (parent, grad) in ops.parents.into_iter().zip(out) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: ScanBackend, C: CheckpointStrategy> ScanBackend for Autodiff<B, C> {
    fn selective_scan_forward(x: ScanInputs<Self>) -> (Tensor<Self, 3>, Tensor<Self, 3>) {
        let ins = x.into_primitives();
        let state: ScanState<B> = ins.each_ref().map(|t| t.primitive.clone());
        let nodes = ins.each_ref().map(|t| t.node.clone());
        let (y, last) = B::selective_scan_forward(ScanInputs::from_primitives(state.clone()));
        let y = prim(y);
        let y = match ScanBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(state, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        (
            Tensor::from_primitive(TensorPrimitive::Float(y)),
            Tensor::from_inner(last),
        )
    }
}
