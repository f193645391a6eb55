//! The backends the commands run on, and what a process sets up before computing: the CPU
//! backend (ndarray, f32), CUDA behind `--features cuda`, and the compute thread pool.

/// CPU backend (f32 ndarray).
pub type Cpu = burn::backend::NdArray<f32>;
/// CPU backend with autodiff (training).
pub type AutodiffCpu = burn::backend::Autodiff<Cpu>;

/// The training backend on CUDA (`--features cuda`): f32 parameters with autodiff; bf16 products
/// come from `precision`.
#[cfg(feature = "cuda")]
pub type CudaTrain = burn::backend::Autodiff<burn::backend::Cuda<f32>>;

/// The CUDA devices of `--devices` ordinals.
#[cfg(feature = "cuda")]
pub fn cuda_devices(ordinals: &[usize]) -> Vec<burn::backend::cuda::CudaDevice> {
    ordinals
        .iter()
        .map(|&i| burn::backend::cuda::CudaDevice::new(i))
        .collect()
}

/// The error for `--devices` in a CPU-only build.
pub fn needs_gpu_build(ordinals: &[usize]) -> anyhow::Error {
    anyhow::anyhow!(
        "--devices {ordinals:?} needs a GPU build: cargo build -p trainer --release --features cuda"
    )
}

/// Pin the compute thread pool: results are bit-reproducible for a fixed thread count (0 = all
/// cores).
pub fn pin_threads(threads: usize) {
    let n = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    // Fails only if the pool was already built (then it is kept).
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
}
