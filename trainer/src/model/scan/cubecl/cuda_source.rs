//! The CUDA C++ that CubeCL generates for every scan kernel, produced without a GPU, so CI can
//! compile it with NVRTC (`tests/scan_nvrtc.rs`) and a code-generation or compile error never
//! first appears on a user's GPU.
//!
//! CubeCL only compiles a kernel when it is launched on a device: `#[cube(launch)]` builds the
//! kernel's IR (`CubeKernel::define`) from a `ComputeClient`, which the CUDA runtime cannot create
//! without a driver. This module does what that `define` does, by hand, with device properties
//! set as `cubecl-cuda` sets them for the given compute capability: a `KernelBuilder` with the
//! element type registered, one `LaunchArg::expand` per tensor argument in parameter order, the
//! macro-generated `expand` function of the kernel, `KernelBuilder::build`; then the CUDA
//! compiler of `cubecl-cpp` (`CppCompiler<CudaDialect<CudaWmmaCompiler>>`, the type
//! `cubecl-cuda` uses) with the compilation options `cubecl-cuda` derives from the compute
//! capability. What differs from a real launch: only the device properties and limits that
//! `cubecl-cuda` reads from the driver (number of SMs, memory size), which the kernels here do not
//! consult.

use burn::tensor::DType;
use cubecl::Compiler;
use cubecl::ir::{
    ContiguousElements, DeviceProperties, HardwareProperties, MatrixLayout, MemoryDeviceProperties,
    MmaProperties, TargetProperties, VectorSize,
};
use cubecl::prelude::*;
use cubecl::profile::TimingMethod;
use cubecl_cpp::{
    cuda::{CudaDialect, mma::CudaWmmaCompiler, mma::contiguous_elements_cuda},
    register_supported_types,
    shared::{CompilationOptions, CppCompiler, CppSupportedFeatures},
};

use super::per_channel::{self, scan_backward_kernel, scan_forward_kernel};
use super::reduce::{self, sum_groups_kernel};
use super::seq::{self, SeqConfig, seq_backward_kernel, seq_forward_kernel};

/// The compiler `cubecl-cuda` uses (without its `ptx-wmma` feature, as Burn builds it).
type CudaCompiler = CppCompiler<CudaDialect<CudaWmmaCompiler>>;

/// One generated kernel: its entry point name and CUDA C++ source.
#[derive(Clone, Debug)]
pub struct CudaKernelSource {
    /// Which launch of which kernel (tile, element type).
    pub label: String,
    /// `extern "C" __global__` entry point.
    pub entrypoint: String,
    /// CUDA C++ as CubeCL hands it to NVRTC.
    pub source: String,
}

/// The CUDA C++ of every kernel launched by [`super`] — sequence-parallel forward, chunk-entry
/// pre-pass and backward with the default tiles (and the small tile the tests use), per-channel
/// forward and backward, the fixed-order sum — for inputs of `dtype` (F32, BF16 or F16), state
/// size `n` and compute capability `arch` (e.g. 80, 90).
pub fn cuda_sources(arch: u32, dtype: DType, n: usize) -> Result<Vec<CudaKernelSource>, String> {
    let elem: StorageType = dtype.into();
    let props = device_properties(arch);
    let options = compilation_options(arch);
    let mut out = Vec::new();
    let mut emit = |label: String, def: KernelDefinition| -> Result<(), String> {
        let entrypoint = def.options.kernel_name.clone();
        let compiled = CudaCompiler::default()
            .compile(
                def,
                &options,
                ExecutionMode::Checked,
                AddressType::U32.unsigned_type(),
            )
            .map_err(|e| format!("{label}: CubeCL's CUDA code generation failed: {e:?}"))?;
        out.push(CudaKernelSource {
            label,
            entrypoint,
            source: compiled.to_string(),
        });
        Ok(())
    };
    let tiles = [SeqConfig::FORWARD, SeqConfig::BACKWARD];
    for cfg in tiles.into_iter().chain(SeqConfig::SMALL_TILES) {
        for write_y in [true, false] {
            emit(
                format!("seq_forward {cfg:?} write_y={write_y} {dtype:?} N={n}"),
                seq_forward(&props, elem, n, cfg, write_y),
            )?;
        }
        emit(
            format!("seq_backward {cfg:?} {dtype:?} N={n}"),
            seq_backward(&props, elem, n, cfg),
        )?;
    }
    emit(
        format!("per_channel_forward {dtype:?} N={n}"),
        per_channel_forward(&props, elem, n),
    )?;
    emit(
        format!("per_channel_backward {dtype:?} N={n}"),
        per_channel_backward(&props, elem, n),
    )?;
    emit(format!("sum_groups {dtype:?}"), sum_groups(&props, elem))?;
    Ok(out)
}

/// What `CudaServer::init` registers for a device of compute capability `arch` and what the
/// kernels can observe of it (types, address widths, cube limits).
fn device_properties(arch: u32) -> DeviceProperties {
    let hardware = HardwareProperties {
        load_width: 128,
        plane_size_min: 32,
        plane_size_max: 32,
        max_bindings: 1024,
        max_shared_memory_size: if arch >= 90 { 227 * 1024 } else { 163 * 1024 },
        max_cube_count: (i32::MAX as u32, u16::MAX as u32, u16::MAX as u32),
        max_units_per_cube: 1024,
        max_cube_dim: (1024, 1024, 64),
        num_streaming_multiprocessors: None,
        num_cpu_cores: None,
        num_tensor_cores: Some(4),
        min_tensor_cores_dim: Some(8),
        max_vector_size: VectorSize::MAX,
    };
    let memory = MemoryDeviceProperties {
        max_page_size: 1 << 30,
        alignment: 512,
    };
    let mut props =
        DeviceProperties::new(Default::default(), memory, hardware, TimingMethod::System);
    register_supported_types(&mut props);
    props
}

/// `CudaRuntime::target_properties()`.
fn target_properties() -> TargetProperties {
    TargetProperties {
        mma: MmaProperties {
            register_size_bits: 32,
            const_plane_size: 32,
            register_layout_a: MatrixLayout::RowMajor,
            register_layout_b: MatrixLayout::ColMajor,
            register_layout_acc: MatrixLayout::RowMajor,
            register_duplication_a: 1,
            register_duplication_b: 1,
            register_duplication_acc: 1,
            contiguous_elements: ContiguousElements::new(contiguous_elements_cuda),
        },
    }
}

/// The options `CudaServer::init` derives from the compute capability (CUDA ≥ 12.8).
fn compilation_options(arch: u32) -> CompilationOptions {
    CompilationOptions {
        warp_size: 32,
        supports_features: CppSupportedFeatures {
            fast_math: true,
            grid_constants: arch >= 70,
            fast_tanh: arch >= 75,
            clusters: arch >= 90,
            elect_sync: arch >= 90,
        },
    }
}

/// A builder set up as the launch macro's `define` sets it up.
fn builder(props: &DeviceProperties) -> KernelBuilder {
    let mut builder = KernelBuilder::default();
    builder.runtime_properties(target_properties());
    builder.device_properties(props);
    AddressType::U32.register(&mut builder.scope);
    builder
}

fn settings(name: &str, elem: StorageType, cube_dim: CubeDim) -> KernelSettings {
    // The launch macro names a kernel `<fn>_<generic>_<type>`, e.g. `seq_forward_kernel_f_bf16`.
    KernelSettings::default()
        .cube_dim(cube_dim)
        .address_type(AddressType::U32)
        .kernel_name(format!("{name}_f_{elem}"))
}

const INPUT: TensorCompilationArg = TensorCompilationArg { inplace: None };

/// Expands one tensor argument, input or output, of element type `$ty`.
macro_rules! arg {
    ($b:expr, in $ty:ty) => {
        <Tensor<$ty> as LaunchArg>::expand(&INPUT, &mut $b)
    };
    ($b:expr, out $ty:ty) => {
        <Tensor<$ty> as LaunchArg>::expand_output(&INPUT, &mut $b)
    };
}

fn seq_forward(
    props: &DeviceProperties,
    elem: StorageType,
    n: usize,
    cfg: SeqConfig,
    write_y: bool,
) -> KernelDefinition {
    type F = seq_forward_kernel::F;
    let mut b = builder(props);
    b.scope.register_type::<F>(elem);
    let u = arg!(b, in F);
    let delta = arg!(b, in F);
    let a = arg!(b, in F);
    let bm = arg!(b, in F);
    let cm = arg!(b, in F);
    let dskip = arg!(b, in F);
    let y = arg!(b, out F);
    let last = arg!(b, out F);
    let bounds = arg!(b, out f32);
    seq_forward_kernel::expand::<F>(
        &mut b.scope,
        u,
        delta,
        a,
        bm,
        cm,
        dskip,
        y,
        last,
        bounds,
        n,
        cfg.units,
        cfg.items,
        cfg.channels,
        write_y,
        !write_y,
        elem,
    );
    b.build(settings("seq_forward_kernel", elem, seq::cube_dim(cfg)))
}

fn seq_backward(
    props: &DeviceProperties,
    elem: StorageType,
    n: usize,
    cfg: SeqConfig,
) -> KernelDefinition {
    type F = seq_backward_kernel::F;
    let mut b = builder(props);
    b.scope.register_type::<F>(elem);
    let u = arg!(b, in F);
    let delta = arg!(b, in F);
    let a = arg!(b, in F);
    let bm = arg!(b, in F);
    let cm = arg!(b, in F);
    let dskip = arg!(b, in F);
    let dy = arg!(b, in F);
    let bounds = arg!(b, in f32);
    let du = arg!(b, out F);
    let ddelta = arg!(b, out F);
    let da_part = arg!(b, out f32);
    let dd_part = arg!(b, out f32);
    let db_part = arg!(b, out f32);
    let dc_part = arg!(b, out f32);
    seq_backward_kernel::expand::<F>(
        &mut b.scope,
        u,
        delta,
        a,
        bm,
        cm,
        dskip,
        dy,
        bounds,
        du,
        ddelta,
        da_part,
        dd_part,
        db_part,
        dc_part,
        n,
        cfg.units,
        cfg.items,
        cfg.channels,
        elem,
    );
    b.build(settings("seq_backward_kernel", elem, seq::cube_dim(cfg)))
}

fn per_channel_forward(props: &DeviceProperties, elem: StorageType, n: usize) -> KernelDefinition {
    type F = scan_forward_kernel::F;
    let mut b = builder(props);
    b.scope.register_type::<F>(elem);
    let u = arg!(b, in F);
    let delta = arg!(b, in F);
    let a = arg!(b, in F);
    let bm = arg!(b, in F);
    let cm = arg!(b, in F);
    let dskip = arg!(b, in F);
    let y = arg!(b, out F);
    let last = arg!(b, out F);
    scan_forward_kernel::expand::<F>(&mut b.scope, u, delta, a, bm, cm, dskip, y, last, n, elem);
    b.build(settings(
        "scan_forward_kernel",
        elem,
        per_channel::cube_dim(),
    ))
}

fn per_channel_backward(props: &DeviceProperties, elem: StorageType, n: usize) -> KernelDefinition {
    type F = scan_backward_kernel::F;
    let mut b = builder(props);
    b.scope.register_type::<F>(elem);
    let u = arg!(b, in F);
    let delta = arg!(b, in F);
    let a = arg!(b, in F);
    let bm = arg!(b, in F);
    let cm = arg!(b, in F);
    let dskip = arg!(b, in F);
    let dy = arg!(b, in F);
    let du = arg!(b, out F);
    let ddelta = arg!(b, out F);
    let da_part = arg!(b, out f32);
    let dd_part = arg!(b, out f32);
    let db_part = arg!(b, out f32);
    let dc_part = arg!(b, out f32);
    let bounds = arg!(b, out f32);
    scan_backward_kernel::expand::<F>(
        &mut b.scope,
        u,
        delta,
        a,
        bm,
        cm,
        dskip,
        dy,
        du,
        ddelta,
        da_part,
        dd_part,
        db_part,
        dc_part,
        bounds,
        n,
        per_channel::CHUNK,
        elem,
    );
    b.build(settings(
        "scan_backward_kernel",
        elem,
        per_channel::cube_dim(),
    ))
}

fn sum_groups(props: &DeviceProperties, elem: StorageType) -> KernelDefinition {
    type F = sum_groups_kernel::F;
    let mut b = builder(props);
    b.scope.register_type::<F>(elem);
    let parts = arg!(b, in f32);
    let out = arg!(b, out F);
    sum_groups_kernel::expand::<F>(&mut b.scope, parts, out, elem);
    b.build(settings(
        "sum_groups_kernel",
        elem,
        CubeDim::new_1d(reduce::SUM_CUBE),
    ))
}
