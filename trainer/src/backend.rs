//! The backends a command runs on — CPU (ndarray, f32), CUDA and wgpu, all in one binary — and
//! how `--device` / `[train] device` picks one at run time.
//!
//! Requests: `auto` (CUDA device 0 when a driver, a device, NVRTC and the CUDA headers are
//! found, else CPU), `cpu`, `cpu:N` (N data-parallel workers sharing the CPU: the multi-device
//! path without GPUs), `cuda`, `cuda:N`, `cuda:0,1,2,3` (data parallel), `wgpu`, `wgpu:N` (the
//! N-th adapter, as `trainer devices` lists them). [`select`] probes what the request needs
//! (the CUDA driver, NVRTC, the headers CubeCL compiles kernels against and, for several GPUs,
//! NCCL; or a wgpu adapter) before anything is computed or written, so a device that cannot be
//! opened is an error naming it and what is missing. [`run_on`] then runs one generic computation (a
//! [`Job`]) on the backend chosen.

use std::fmt;
#[cfg(feature = "cuda")]
use std::path::Path;
use std::str::FromStr;

use anyhow::{Result, bail};
use burn::tensor::backend::AutodiffBackend;

use crate::model::scan::ScanBackend;

/// CPU backend (f32 ndarray).
pub type Cpu = burn::backend::NdArray<f32>;
/// CPU backend with autodiff (training).
pub type AutodiffCpu = burn::backend::Autodiff<Cpu>;
/// CUDA backend: f32 parameters (bf16 products come from `precision`).
#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda<f32, i32>;
/// wgpu backend (Vulkan, Metal, DX12; Mesa's lavapipe on a CPU-only machine).
#[cfg(feature = "wgpu")]
pub type Wgpu = burn::backend::Wgpu<f32, i32, u32>;

/// A backend every command can run on: autodiff for training, the selective scan on it and on
/// its inner backend (inference).
pub trait TrainBackend: AutodiffBackend<InnerBackend: ScanBackend> + ScanBackend {}
impl<B> TrainBackend for B where B: AutodiffBackend<InnerBackend: ScanBackend> + ScanBackend {}

/// What `--device` or `[train] device` asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum DeviceRequest {
    #[default]
    Auto,
    Cpu,
    /// N data-parallel workers on the CPU.
    CpuWorkers(usize),
    /// CUDA ordinals (one = one device; several = data parallel).
    Cuda(Vec<usize>),
    /// The N-th wgpu adapter, or the default one.
    Wgpu(Option<usize>),
}

impl FromStr for DeviceRequest {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let ordinal = |n: &str| {
            n.trim().parse::<usize>().map_err(|_| {
                anyhow::anyhow!("device {s:?}: {n:?} is not a device number (0, 1, …)")
            })
        };
        Ok(match s.trim() {
            "auto" => Self::Auto,
            "cpu" => Self::Cpu,
            "cuda" => Self::Cuda(vec![0]),
            "wgpu" => Self::Wgpu(None),
            other => match other.split_once(':') {
                Some(("cpu", n)) => match ordinal(n)? {
                    0 => bail!("device {s:?}: at least one CPU worker"),
                    1 => Self::Cpu,
                    n => Self::CpuWorkers(n),
                },
                Some(("cuda", list)) => {
                    let ids = list.split(',').map(ordinal).collect::<Result<Vec<_>>>()?;
                    let mut seen = ids.clone();
                    seen.sort_unstable();
                    seen.dedup();
                    if seen.len() != ids.len() {
                        bail!("device {s:?} names a CUDA device twice");
                    }
                    Self::Cuda(ids)
                }
                Some(("wgpu", n)) => Self::Wgpu(Some(ordinal(n)?)),
                _ => bail!(
                    "unknown device {s:?}: expected auto, cpu, cpu:N, cuda, cuda:N, cuda:0,1,…, wgpu or wgpu:N"
                ),
            },
        })
    }
}

impl TryFrom<String> for DeviceRequest {
    type Error = anyhow::Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => write!(f, "auto"),
            Self::Cpu => write!(f, "cpu"),
            Self::CpuWorkers(n) => write!(f, "cpu:{n}"),
            Self::Cuda(ids) => {
                let ids: Vec<String> = ids.iter().map(usize::to_string).collect();
                write!(f, "cuda:{}", ids.join(","))
            }
            Self::Wgpu(None) => write!(f, "wgpu"),
            Self::Wgpu(Some(n)) => write!(f, "wgpu:{n}"),
        }
    }
}

/// The backend a command runs on, after probing.
#[derive(Clone, Debug)]
pub enum Selected {
    /// The CPU, as this many data-parallel workers (1 = plain CPU training).
    Cpu(usize),
    #[cfg(feature = "cuda")]
    Cuda(Vec<usize>),
    #[cfg(feature = "wgpu")]
    Wgpu(burn::backend::wgpu::WgpuDevice),
}

/// The chosen backend and device(s), in words for the first log line.
#[derive(Clone, Debug)]
pub struct Selection {
    pub selected: Selected,
    /// Short backend name recorded in checkpoints (`cpu`, `cuda`, `wgpu`).
    pub backend: &'static str,
    /// The device(s), e.g. `cuda:0 (NVIDIA H200)`.
    pub description: String,
    /// Why this one, e.g. `auto: no CUDA driver (libcuda not found)`.
    pub reason: String,
}

impl Selection {
    fn cpu(reason: String) -> Self {
        Self::cpu_workers(1, reason)
    }

    fn cpu_workers(n: usize, reason: String) -> Self {
        let threads = rayon::current_num_threads();
        Self {
            selected: Selected::Cpu(n),
            backend: "cpu",
            description: if n == 1 {
                format!("cpu (ndarray f32, {threads} threads)")
            } else {
                format!("cpu x{n} data-parallel workers (ndarray f32, {threads} threads shared)")
            },
            reason,
        }
    }
}

/// Probe what `request` needs and choose the backend; an error names the device and what is
/// missing.
pub fn select(request: &DeviceRequest) -> Result<Selection> {
    match request {
        DeviceRequest::Cpu => Ok(Selection::cpu("requested".into())),
        DeviceRequest::CpuWorkers(n) => Ok(Selection::cpu_workers(*n, "requested".into())),
        DeviceRequest::Auto => Ok(match cuda::probe() {
            Ok(found) => cuda::selection(&found, &[0], format!("auto: {}", found.summary()))?,
            Err(why) => Selection::cpu(format!("auto: no CUDA ({why:#})")),
        }),
        DeviceRequest::Cuda(ids) => {
            let found = cuda::probe().map_err(|e| anyhow::anyhow!("--device {request}: {e:#}"))?;
            cuda::selection(&found, ids, "requested".into())
        }
        DeviceRequest::Wgpu(n) => wgpu::select(*n),
    }
}

/// A computation generic over the backend, run on the one chosen at run time by [`run_on`] (a
/// trait because Rust closures cannot be generic).
pub trait Job {
    type Output;
    fn run<B: TrainBackend>(self, devices: Vec<B::Device>) -> Result<Self::Output>;
}

/// Run `job` on the selected backend and devices.
pub fn run_on<J: Job>(selection: &Selection, job: J) -> Result<J::Output> {
    match &selection.selected {
        Selected::Cpu(n) => job.run::<AutodiffCpu>(vec![Default::default(); *n]),
        #[cfg(feature = "cuda")]
        Selected::Cuda(ids) => job.run::<burn::backend::Autodiff<Cuda>>(
            ids.iter()
                .map(|&i| burn::backend::cuda::CudaDevice::new(i))
                .collect(),
        ),
        #[cfg(feature = "wgpu")]
        Selected::Wgpu(device) => job.run::<burn::backend::Autodiff<Wgpu>>(vec![device.clone()]),
    }
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

/// The CUDA driver and runtime compiler, found at run time (cudarc loads them dynamically, so
/// the binary needs neither to build or to start).
mod cuda {
    use super::*;

    /// The CUDA devices of this machine.
    pub struct Found {
        pub names: Vec<String>,
    }

    impl Found {
        pub fn summary(&self) -> String {
            format!("found {} CUDA device(s)", self.names.len())
        }
    }

    /// Where to get what is missing, for the errors.
    #[cfg(feature = "cuda")]
    const DRIVER_HELP: &str = "install the NVIDIA driver (it provides libcuda.so.1), or choose \
                               --device cpu or --device wgpu";
    #[cfg(feature = "cuda")]
    const NVRTC_HELP: &str = "CubeCL compiles its kernels with NVRTC when they are first \
                              launched: install a CUDA toolkit, or `pip install \
                              nvidia-cuda-nvrtc-cu12` and add its nvidia/cuda_nvrtc/lib \
                              directory to LD_LIBRARY_PATH";

    #[cfg(feature = "cuda")]
    pub fn probe() -> Result<Found> {
        use cudarc::driver::{result, sys};
        // SAFETY: only tries to dlopen the library under its usual names.
        if !unsafe { sys::is_culib_present() } {
            bail!("the CUDA driver library (libcuda) was not found; {DRIVER_HELP}");
        }
        result::init().map_err(|e| {
            anyhow::anyhow!("the CUDA driver did not initialise ({e:?}); is a GPU present?")
        })?;
        let count = result::device::get_count()
            .map_err(|e| anyhow::anyhow!("counting CUDA devices: {e:?}"))?;
        if count <= 0 {
            bail!("the CUDA driver found no device");
        }
        // SAFETY: as above, for NVRTC.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            bail!("NVRTC (libnvrtc) was not found; {NVRTC_HELP}");
        }
        super::cuda_headers::find(std::env::var_os("CUDA_PATH").as_deref(), Path::new("/"))?;
        let names = (0..count)
            .map(|i| {
                result::device::get(i)
                    .and_then(result::device::get_name)
                    .unwrap_or_else(|e| format!("device {i} ({e:?})"))
            })
            .collect();
        Ok(Found { names })
    }

    #[cfg(not(feature = "cuda"))]
    pub fn probe() -> Result<Found> {
        bail!(
            "this binary was built without CUDA (`--no-default-features`); rebuild with the \
             default features"
        )
    }

    #[cfg(feature = "cuda")]
    pub fn selection(found: &Found, ids: &[usize], reason: String) -> Result<Selection> {
        if let Some(&bad) = ids.iter().find(|&&i| i >= found.names.len()) {
            bail!(
                "--device cuda:{bad}: this machine has {} CUDA device(s) ({})",
                found.names.len(),
                found.names.join(", ")
            );
        }
        // SAFETY: only tries to dlopen the library under its usual names.
        super::nccl_check(ids, || unsafe { cudarc::nccl::sys::is_culib_present() })?;
        let description = ids
            .iter()
            .map(|&i| format!("cuda:{i} ({})", found.names[i]))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(Selection {
            selected: Selected::Cuda(ids.to_vec()),
            backend: "cuda",
            description,
            reason,
        })
    }

    #[cfg(not(feature = "cuda"))]
    pub fn selection(_: &Found, _: &[usize], _: String) -> Result<Selection> {
        unreachable!("probe() fails without the cuda feature")
    }
}

/// The CUDA headers cubecl-cuda compiles every kernel against, found where it looks for them.
///
/// cubecl-cuda 0.10 (`install::cuda_path`) takes `$CUDA_PATH` as it is, else the first of
/// `/usr/local/cuda`, `/opt/cuda` that exists, else `/usr` when `/usr/bin/nvcc` exists, and
/// panics on the device's thread at the first kernel when there is none; the kernels include
/// `cuda_runtime.h` and `mma.h`, the f16/bf16 ones `cuda_fp16.h` / `cuda_bf16.h`.
pub mod cuda_headers {
    use std::ffi::OsStr;
    use std::path::{Path, PathBuf};

    use anyhow::{Result, bail};

    /// The headers the generated kernels include.
    pub const NEEDED: [&str; 4] = ["cuda_runtime.h", "mma.h", "cuda_fp16.h", "cuda_bf16.h"];

    const HELP: &str = "install the CUDA toolkit's headers (e.g. Debian/Ubuntu: the \
                        cuda-cudart-dev and cuda-nvrtc-dev packages of NVIDIA's repository), \
                        or `pip install nvidia-cuda-runtime-cu12` and set CUDA_PATH to its \
                        site-packages/nvidia/cuda_runtime directory";

    /// The directory cubecl-cuda will take, with `root` standing for `/` (tests).
    pub fn cuda_path(cuda_path_env: Option<&OsStr>, root: &Path) -> Option<PathBuf> {
        if let Some(p) = cuda_path_env {
            return Some(PathBuf::from(p));
        }
        let under = |p: &str| root.join(p.trim_start_matches('/'));
        ["/usr/local/cuda", "/opt/cuda"]
            .into_iter()
            .map(under)
            .find(|p| p.exists())
            .or_else(|| under("/usr/bin/nvcc").exists().then(|| under("/usr")))
    }

    /// The include directory with every header in [`NEEDED`], or an error naming what is
    /// missing, where it was looked for, and what to install.
    pub fn find(cuda_path_env: Option<&OsStr>, root: &Path) -> Result<PathBuf> {
        let Some(dir) = cuda_path(cuda_path_env, root) else {
            bail!(
                "the CUDA headers were not found: CubeCL compiles each kernel against them and \
                 looks in $CUDA_PATH (unset), /usr/local/cuda, /opt/cuda and beside \
                 /usr/bin/nvcc; {HELP}"
            );
        };
        let include = dir.join("include");
        let missing: Vec<&str> = NEEDED
            .into_iter()
            .filter(|h| !include.join(h).is_file())
            .collect();
        if !missing.is_empty() {
            let from = if cuda_path_env.is_some() {
                "$CUDA_PATH"
            } else {
                "the CUDA installation"
            };
            bail!(
                "{} (from {from}) lacks {}, which CubeCL's CUDA kernels include; {HELP}",
                include.display(),
                missing.join(", ")
            );
        }
        Ok(include)
    }
}

/// Several CUDA devices copy between each other through NCCL (`libnccl.so.2`, loaded by cudarc
/// at the first copy, where a missing library panics a device's thread).
pub fn nccl_check(ids: &[usize], nccl_present: impl FnOnce() -> bool) -> Result<()> {
    if ids.len() > 1 && !nccl_present() {
        bail!(
            "--device cuda:{}: data parallel over {} GPUs needs NCCL (libnccl.so.2), which was \
             not found; install it (NVIDIA's libnccl2 package, or `pip install \
             nvidia-nccl-cu12` and add its nvidia/nccl/lib directory to LD_LIBRARY_PATH), or \
             train on one GPU",
            ids.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(","),
            ids.len()
        );
    }
    Ok(())
}

/// wgpu adapters, enumerated the way CubeCL selects them.
mod wgpu {
    use super::*;

    #[cfg(feature = "wgpu")]
    pub fn select(n: Option<usize>) -> Result<Selection> {
        use ::wgpu::DeviceType;
        use burn::backend::wgpu::WgpuDevice;
        use burn::backend::wgpu::graphics::{AutoGraphicsApi, GraphicsApi};

        let backend = AutoGraphicsApi::backend();
        let instance = ::wgpu::Instance::new(::wgpu::InstanceDescriptor {
            backends: backend.into(),
            ..::wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let adapters = cubecl_common::future::block_on(instance.enumerate_adapters(backend.into()));
        let infos: Vec<::wgpu::AdapterInfo> = adapters.iter().map(|a| a.get_info()).collect();
        if infos.is_empty() {
            bail!(
                "--device wgpu: no {backend:?} adapter found; install a GPU driver, or Mesa's \
                 software Vulkan driver lavapipe (Debian: apt-get install mesa-vulkan-drivers)"
            );
        }
        let describe =
            |i: &::wgpu::AdapterInfo| format!("{} ({:?}, {:?})", i.name, i.device_type, i.backend);
        let (device, info) = match n {
            None => (
                WgpuDevice::DefaultDevice,
                default_adapter(&instance, &infos),
            ),
            Some(n) => {
                let Some(info) = infos.get(n) else {
                    bail!(
                        "--device wgpu:{n}: this machine has {} wgpu adapter(s): {}",
                        infos.len(),
                        infos
                            .iter()
                            .enumerate()
                            .map(|(k, i)| format!("{k}: {}", describe(i)))
                            .collect::<Vec<_>>()
                            .join("; ")
                    );
                };
                // CubeCL numbers adapters within their type.
                let k = infos[..n]
                    .iter()
                    .filter(|i| i.device_type == info.device_type)
                    .count();
                let device = match info.device_type {
                    DeviceType::DiscreteGpu => WgpuDevice::DiscreteGpu(k),
                    DeviceType::IntegratedGpu => WgpuDevice::IntegratedGpu(k),
                    DeviceType::VirtualGpu => WgpuDevice::VirtualGpu(k),
                    DeviceType::Cpu => WgpuDevice::Cpu,
                    DeviceType::Other => bail!(
                        "--device wgpu:{n}: adapter {} has no device type CubeCL can select",
                        describe(info)
                    ),
                };
                (device, Some(info.clone()))
            }
        };
        let name = n.map_or("wgpu".to_string(), |n| format!("wgpu:{n}"));
        Ok(Selection {
            selected: Selected::Wgpu(device),
            backend: "wgpu",
            description: match info {
                Some(i) => format!("{name} ({})", describe(&i)),
                None => name,
            },
            reason: "requested".into(),
        })
    }

    /// The adapter CubeCL's default device takes: wgpu's high-performance choice.
    #[cfg(feature = "wgpu")]
    fn default_adapter(
        instance: &::wgpu::Instance,
        infos: &[::wgpu::AdapterInfo],
    ) -> Option<::wgpu::AdapterInfo> {
        let options = ::wgpu::RequestAdapterOptions {
            power_preference: ::wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
        };
        cubecl_common::future::block_on(instance.request_adapter(&options))
            .ok()
            .map(|a| a.get_info())
            .or_else(|| infos.first().cloned())
    }

    #[cfg(not(feature = "wgpu"))]
    pub fn select(_: Option<usize>) -> Result<Selection> {
        bail!(
            "--device wgpu: this binary was built without wgpu (`--no-default-features`); rebuild \
             with the default features"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_requests_parse_and_print_back() {
        for (text, want) in [
            ("auto", DeviceRequest::Auto),
            ("cpu", DeviceRequest::Cpu),
            ("cpu:1", DeviceRequest::Cpu),
            ("cpu:2", DeviceRequest::CpuWorkers(2)),
            ("cuda", DeviceRequest::Cuda(vec![0])),
            ("cuda:1", DeviceRequest::Cuda(vec![1])),
            ("cuda:0,1,2,3", DeviceRequest::Cuda(vec![0, 1, 2, 3])),
            ("wgpu", DeviceRequest::Wgpu(None)),
            ("wgpu:2", DeviceRequest::Wgpu(Some(2))),
        ] {
            let got: DeviceRequest = text.parse().unwrap();
            assert_eq!(got, want, "{text}");
            let back: DeviceRequest = got.to_string().parse().unwrap();
            assert_eq!(back, want);
        }
        for bad in [
            "gpu", "cuda:", "cuda:x", "cuda:0,0", "wgpu:-1", "tpu:0", "cpu:0",
        ] {
            let e = bad.parse::<DeviceRequest>().unwrap_err().to_string();
            assert!(e.contains(bad.split(':').next().unwrap()), "{bad}: {e}");
        }
    }

    /// The probe looks where cubecl-cuda looks, in its order, and refuses an installation
    /// without the headers the kernels include (the bf16 one among them), naming them.
    #[test]
    fn cuda_headers_are_found_where_cubecl_looks() {
        use std::ffi::OsStr;
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let put = |dir: &str, headers: &[&str]| {
            let inc = r.join(dir).join("include");
            std::fs::create_dir_all(&inc).unwrap();
            for h in headers {
                std::fs::write(inc.join(h), "").unwrap();
            }
        };
        let e = cuda_headers::find(None, r).unwrap_err().to_string();
        assert!(
            e.contains("CUDA headers were not found") && e.contains("CUDA_PATH"),
            "{e}"
        );
        // nvcc in /usr/bin: /usr/include is where the headers must be.
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::write(r.join("usr/bin/nvcc"), "").unwrap();
        put("usr", &["cuda_runtime.h", "mma.h", "cuda_fp16.h"]);
        let e = cuda_headers::find(None, r).unwrap_err().to_string();
        assert!(
            e.contains("cuda_bf16.h") && e.contains("usr/include"),
            "{e}"
        );
        put("usr", &cuda_headers::NEEDED);
        assert_eq!(cuda_headers::find(None, r).unwrap(), r.join("usr/include"));
        // /opt/cuda wins over nvcc, /usr/local/cuda over both, even when incomplete.
        put("opt/cuda", &cuda_headers::NEEDED);
        assert_eq!(
            cuda_headers::find(None, r).unwrap(),
            r.join("opt/cuda/include")
        );
        put("usr/local/cuda", &["cuda_runtime.h"]);
        let e = cuda_headers::find(None, r).unwrap_err().to_string();
        assert!(
            e.contains("usr/local/cuda/include") && e.contains("mma.h"),
            "{e}"
        );
        // $CUDA_PATH is taken as it is, like cubecl-cuda does (e.g. the pip wheel's headers).
        put("wheel/nvidia/cuda_runtime", &cuda_headers::NEEDED);
        let wheel = r.join("wheel/nvidia/cuda_runtime");
        assert_eq!(
            cuda_headers::find(Some(wheel.as_os_str()), r).unwrap(),
            wheel.join("include")
        );
        let e = cuda_headers::find(Some(OsStr::new("/nonexistent/cuda")), r)
            .unwrap_err()
            .to_string();
        assert!(e.contains("$CUDA_PATH") && e.contains("cuda_bf16.h"), "{e}");
    }

    /// Several GPUs without NCCL: refused before anything runs; one GPU never asks for it.
    #[test]
    fn several_gpus_need_nccl() {
        let e = nccl_check(&[0, 1], || false).unwrap_err().to_string();
        assert!(
            e.contains("cuda:0,1") && e.contains("libnccl.so.2") && e.contains("one GPU"),
            "{e}"
        );
        assert!(nccl_check(&[0, 1], || true).is_ok());
        assert!(nccl_check(&[3], || panic!("one GPU must not probe NCCL")).is_ok());
    }

    /// `cpu` never probes anything; `auto` always ends on some backend (CPU without CUDA).
    #[test]
    fn cpu_and_auto_select_a_backend() {
        let cpu = select(&DeviceRequest::Cpu).unwrap();
        assert_eq!(cpu.backend, "cpu");
        let auto = select(&DeviceRequest::Auto).unwrap();
        assert!(auto.reason.starts_with("auto"), "{}", auto.reason);
        if auto.backend == "cpu" {
            assert!(auto.reason.contains("no CUDA"), "{}", auto.reason);
        }
    }
}
