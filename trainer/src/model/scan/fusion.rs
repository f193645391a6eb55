//! `Fusion<B>` (the trainer's `fusion` feature, Burn's kernel fusion): the scan's forward and
//! backward each become one custom operation of the fusion stream, executed by the inner
//! backend's own implementation (the CubeCL kernels), while the element-wise ops around them
//! fuse. Burn-vision registers its custom ops the same way.

use std::marker::PhantomData;

use burn::backend::ir::{CustomOpIr, HandleContainer, OperationIr, OperationOutput, TensorIr};
use burn::tensor::{Shape, Tensor, TensorPrimitive};
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{Fusion, FusionBackend, FusionRuntime, FusionTensor};

use super::{ScanBackend, ScanGrads, ScanInputs};
use crate::model::LookupBackend;

type Handles<B> =
    HandleContainer<<<B as FusionBackend>::FusionRuntime as FusionRuntime>::FusionHandle>;

/// Registers `op` on `inputs`' streams with outputs of `shapes` (the inputs' dtype).
fn register<B: FusionBackend, O: Operation<B::FusionRuntime> + 'static, const N: usize>(
    name: &'static str,
    inputs: Vec<FusionTensor<B::FusionRuntime>>,
    shapes: [Vec<usize>; N],
    op: impl FnOnce(CustomOpIr) -> O,
) -> [FusionTensor<B::FusionRuntime>; N] {
    let client = inputs[0].client.clone();
    let dtype = inputs[0].dtype;
    let streams = OperationStreams::with_inputs(&inputs);
    let outputs =
        shapes.map(|s| TensorIr::uninit(client.create_empty_handle(), Shape::from(s), dtype));
    let inputs: Vec<TensorIr> = inputs.into_iter().map(|t| t.into_ir()).collect();
    let desc = CustomOpIr::new(name, &inputs, &outputs);
    client
        .register(streams, OperationIr::Custom(desc.clone()), op(desc))
        .outputs()
}

/// The inner tensors of a custom op's inputs, in order.
fn inputs<B: FusionBackend, const N: usize>(
    desc: &CustomOpIr,
    handles: &mut Handles<B>,
) -> [B::FloatTensorPrimitive; N] {
    std::array::from_fn(|i| handles.get_float_tensor::<B>(&desc.inputs[i]))
}

#[derive(Clone, Debug)]
struct Forward<B> {
    desc: CustomOpIr,
    _b: PhantomData<B>,
}

impl<B: FusionBackend + ScanBackend> Operation<B::FusionRuntime> for Forward<B> {
    fn execute(&self, handles: &mut Handles<B>) {
        let x = ScanInputs::<B>::from_primitives(inputs::<B, 6>(&self.desc, handles));
        let (y, last) = B::selective_scan_forward(x);
        let outs = &self.desc.outputs;
        handles.register_float_tensor::<B>(&outs[0].id, y.into_primitive().tensor());
        handles.register_float_tensor::<B>(&outs[1].id, last.into_primitive().tensor());
    }
}

#[derive(Clone, Debug)]
struct Backward<B> {
    desc: CustomOpIr,
    _b: PhantomData<B>,
}

impl<B: FusionBackend + ScanBackend> Operation<B::FusionRuntime> for Backward<B> {
    fn execute(&self, handles: &mut Handles<B>) {
        let [u, delta, a, b, c, d, dy] = inputs::<B, 7>(&self.desc, handles);
        let x = ScanInputs::<B>::from_primitives([u, delta, a, b, c, d]);
        let dy = Tensor::from_primitive(TensorPrimitive::Float(dy));
        let grads = B::selective_scan_backward(x, dy).into_primitives();
        for (out, grad) in self.desc.outputs.iter().zip(grads) {
            handles.register_float_tensor::<B>(&out.id, grad);
        }
    }
}

impl<B: FusionBackend + LookupBackend> LookupBackend for Fusion<B> {
    const PLANNED: bool = B::PLANNED;
}

impl<B: FusionBackend + ScanBackend> ScanBackend for Fusion<B> {
    fn selective_scan_forward(x: ScanInputs<Self>) -> (Tensor<Self, 3>, Tensor<Self, 3>) {
        let [bsz, d, l] = x.u.dims();
        let n = x.a.dims()[1];
        let shapes = [vec![bsz, d, l], vec![bsz, d, n]];
        let ins = x.into_primitives().to_vec();
        let [y, last] =
            register::<B, _, 2>("selective_scan_forward", ins, shapes, |desc| Forward::<B> {
                desc,
                _b: PhantomData,
            });
        let tensor = |t| Tensor::from_primitive(TensorPrimitive::Float(t));
        (tensor(y), tensor(last))
    }

    fn selective_scan_backward(x: ScanInputs<Self>, dy: Tensor<Self, 3>) -> ScanGrads<Self> {
        let shapes = [
            x.u.dims().to_vec(),
            x.delta.dims().to_vec(),
            x.a.dims().to_vec(),
            x.b.dims().to_vec(),
            x.c.dims().to_vec(),
            x.d.dims().to_vec(),
        ];
        let mut ins = x.into_primitives().to_vec();
        ins.push(dy.into_primitive().tensor());
        let grads = register::<B, _, 6>("selective_scan_backward", ins, shapes, |desc| Backward::<
            B,
        > {
            desc,
            _b: PhantomData,
        });
        ScanGrads::from_primitives(grads)
    }
}
