//! Fixed-order sums of per-group partials, the deterministic last step of every backward here:
//! `out[p, q] = Σ_g parts[p, g, q]` with `g` walked in order by one unit per `(p, q)`. No float
//! atomics and no autotuned reduction strategy, so the result is bit-identical run to run.

use burn::tensor::{DType, Shape};
use burn_cubecl::{CubeRuntime, tensor::CubeTensor};
use cubecl::prelude::*;

use super::{assert_contiguous, empty};

/// Units per cube of the sum kernel.
pub(super) const SUM_CUBE: u32 = 256;

#[cube(launch)]
pub fn sum_groups_kernel<F: Float>(
    parts: &Tensor<f32>, // [P, G, Q]
    out: &mut Tensor<F>, // P·Q elements, any shape, contiguous
    #[define(F)] _dtype: StorageType,
) {
    let groups = parts.shape(1);
    let width = parts.shape(2);
    let idx = ABSOLUTE_POS;
    // No shared memory and no barrier in this kernel, so units past the end may simply stop.
    if idx >= out.len() {
        terminate!();
    }
    let p = idx / width;
    let q = idx % width;
    let mut acc = 0.0f32;
    for g in 0..groups {
        acc += parts[(p * groups + g) * width + q];
    }
    out[idx] = F::cast_from(acc);
}

/// `Σ_g parts[p, g, q]` for f32 `parts` of shape `[P, G, Q]`, written as a new contiguous tensor
/// of `shape` (`P·Q` elements) and element type `dtype`.
pub(super) fn sum_groups<R: CubeRuntime>(
    parts: CubeTensor<R>,
    shape: Shape,
    dtype: DType,
) -> CubeTensor<R> {
    let dims = parts.meta.shape().to_vec();
    assert!(
        dims.len() == 3 && dims[0] * dims[2] == shape.num_elements(),
        "selective scan: partials {dims:?} do not sum to {shape:?}"
    );
    assert_contiguous(&parts, "partials");
    let out = empty(&parts.client, &parts.device, shape, dtype);
    let elems = out.meta.shape().num_elements();
    if elems > 0 {
        let cube_dim = CubeDim::new_1d(SUM_CUBE);
        let client = parts.client.clone();
        sum_groups_kernel::launch::<R>(
            &client,
            cubecl::calculate_cube_count_elemwise(&client, elems, cube_dim),
            cube_dim,
            parts.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            dtype.into(),
        );
    }
    out
}
