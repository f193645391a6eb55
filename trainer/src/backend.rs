//! The backends a command runs on — CPU (ndarray, f32), CUDA and wgpu, all in one binary — and
//! how `--device` / `[train] device` picks one at run time.
//!
//! Requests: `auto` (CUDA when a driver and a device are found, else CPU), `cpu`, `cuda`,
//! `cuda:N`, `cuda:0,1,2,3` (data parallel), `wgpu`, `wgpu:N` (the N-th adapter, as `trainer
//! devices` lists them). [`select`] probes what the request needs (the CUDA driver and NVRTC,
//! or a wgpu adapter) before anything is computed or written, so a device that cannot be opened
//! is an error naming it and what is missing. [`run_on`] then runs one generic computation (a
//! [`Job`]) on the backend chosen.

use std::fmt;
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
                    "unknown device {s:?}: expected auto, cpu, cuda, cuda:N, cuda:0,1,…, wgpu or wgpu:N"
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
    Cpu,
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
        Self {
            selected: Selected::Cpu,
            backend: "cpu",
            description: format!(
                "cpu (ndarray f32, {} threads)",
                rayon::current_num_threads()
            ),
            reason,
        }
    }
}

/// Probe what `request` needs and choose the backend; an error names the device and what is
/// missing.
pub fn select(request: &DeviceRequest) -> Result<Selection> {
    match request {
        DeviceRequest::Cpu => Ok(Selection::cpu("requested".into())),
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
        Selected::Cpu => job.run::<AutodiffCpu>(vec![Default::default()]),
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
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:0,0", "wgpu:-1", "tpu:0"] {
            let e = bad.parse::<DeviceRequest>().unwrap_err().to_string();
            assert!(e.contains(bad.split(':').next().unwrap()), "{bad}: {e}");
        }
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
