//! CUDA compile check without a GPU: the CUDA C++ CubeCL generates for every scan kernel
//! (`trainer::model::scan::cubecl::cuda_source`), f32 and bf16 inputs, N = 16 and 4, compiled with NVRTC
//! for sm_80, sm_90 and sm_90a (what cubecl-cuda passes on Hopper). NVRTC is loaded with dlopen from
//! the PyPI wheel `nvidia-cuda-nvrtc-cu12` (it needs no GPU and no driver) and the bf16/fp16
//! headers come from `nvidia-cuda-runtime-cu12`; `.ci/run` installs both into
//! `$BIOMAMBA_NVRTC_DIR` (default `~/.cache/biomamba-nvrtc`, a `pip install --target` dir).
//! Without them the test prints SKIP, except under `CI=true`, where that is a failure.
//! Run with `cargo test -p trainer --test scan_nvrtc`; `BIOMAMBA_CUDA_DUMP=DIR`
//! also writes every generated source to `DIR/sm<arch>-<entry point>-<index>.cu`.
#![cfg(feature = "cubecl-kernels")]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};

use burn::tensor::DType;
use libloading::{Library, Symbol};
use trainer::model::scan::cubecl::cuda_source::{CudaKernelSource, cuda_sources};

type Program = *mut c_void;
type CreateProgram = unsafe extern "C" fn(
    *mut Program,
    *const c_char,
    *const c_char,
    c_int,
    *const *const c_char,
    *const *const c_char,
) -> c_int;
type CompileProgram = unsafe extern "C" fn(Program, c_int, *const *const c_char) -> c_int;
type GetSize = unsafe extern "C" fn(Program, *mut usize) -> c_int;
type GetLog = unsafe extern "C" fn(Program, *mut c_char) -> c_int;
type DestroyProgram = unsafe extern "C" fn(*mut Program) -> c_int;
type Version = unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int;

/// The wheel directories: `(lib dir with libnvrtc.so.*, include dir with cuda_bf16.h)`.
fn nvrtc_dirs() -> Option<(PathBuf, PathBuf)> {
    let root = std::env::var_os("BIOMAMBA_NVRTC_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/biomamba-nvrtc"))
        })?;
    let lib = root.join("nvidia/cuda_nvrtc/lib");
    let include = root.join("nvidia/cuda_runtime/include");
    (include.join("cuda_bf16.h").exists() && find_nvrtc(&lib).is_some()).then_some((lib, include))
}

/// `libnvrtc.so.<major>` (not the `.alt` build, not the builtins library).
fn find_nvrtc(lib: &Path) -> Option<PathBuf> {
    std::fs::read_dir(lib)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libnvrtc.so"))
        })
}

struct Nvrtc {
    lib: Library,
}

impl Nvrtc {
    fn load(path: &Path) -> Nvrtc {
        // SAFETY: loading NVRTC runs its initializers only; it needs no driver or device.
        let lib = unsafe { Library::new(path) }
            .unwrap_or_else(|e| panic!("dlopen {}: {e}", path.display()));
        Nvrtc { lib }
    }

    fn sym<T>(&self, name: &[u8]) -> Symbol<'_, T> {
        // SAFETY: the symbol types above are NVRTC's C API (nvrtc.h).
        unsafe { self.lib.get(name) }.unwrap_or_else(|e| {
            panic!(
                "NVRTC symbol {}: {e}",
                String::from_utf8_lossy(name).trim_end_matches('\0')
            )
        })
    }

    fn version(&self) -> (i32, i32) {
        let (mut major, mut minor) = (0, 0);
        // SAFETY: two valid out-pointers.
        let rc = unsafe { self.sym::<Version>(b"nvrtcVersion\0")(&mut major, &mut minor) };
        assert_eq!(rc, 0, "nvrtcVersion failed");
        (major, minor)
    }

    /// Compiles `source` with `options`; Ok(PTX size) or Err(NVRTC's log).
    fn compile(&self, source: &str, name: &str, options: &[String]) -> Result<usize, String> {
        let src = CString::new(source).expect("kernel source has a NUL byte");
        let name = CString::new(name).unwrap();
        let opts: Vec<CString> = options
            .iter()
            .map(|o| CString::new(o.as_str()).unwrap())
            .collect();
        let opt_ptrs: Vec<*const c_char> = opts.iter().map(|o| o.as_ptr()).collect();
        let mut prog: Program = std::ptr::null_mut();
        // SAFETY: NVRTC C API with NUL-terminated strings that outlive the calls, no headers
        // passed in memory (count 0, null arrays), the program destroyed before returning.
        unsafe {
            let rc = self.sym::<CreateProgram>(b"nvrtcCreateProgram\0")(
                &mut prog,
                src.as_ptr(),
                name.as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
            );
            assert_eq!(rc, 0, "nvrtcCreateProgram failed ({rc})");
            let rc = self.sym::<CompileProgram>(b"nvrtcCompileProgram\0")(
                prog,
                opt_ptrs.len() as c_int,
                opt_ptrs.as_ptr(),
            );
            let result = if rc == 0 {
                let mut size = 0usize;
                let rc = self.sym::<GetSize>(b"nvrtcGetPTXSize\0")(prog, &mut size);
                assert_eq!(rc, 0, "nvrtcGetPTXSize failed ({rc})");
                Ok(size)
            } else {
                let mut size = 0usize;
                self.sym::<GetSize>(b"nvrtcGetProgramLogSize\0")(prog, &mut size);
                let mut log = vec![0 as c_char; size.max(1)];
                self.sym::<GetLog>(b"nvrtcGetProgramLog\0")(prog, log.as_mut_ptr());
                Err(format!(
                    "NVRTC error {rc}:\n{}",
                    CStr::from_ptr(log.as_ptr()).to_string_lossy()
                ))
            };
            self.sym::<DestroyProgram>(b"nvrtcDestroyProgram\0")(&mut prog);
            result
        }
    }
}

/// Compiles `kernels` for `arch` (e.g. "sm_90"); failures as "label: log" lines.
fn compile_all(
    nvrtc: &Nvrtc,
    include: &Path,
    arch: &str,
    kernels: &[CudaKernelSource],
) -> Vec<String> {
    let options = [
        format!("--gpu-architecture={arch}"),
        format!("--include-path={}", include.display()),
        "-lineinfo".to_string(),
    ];
    let mut failures = Vec::new();
    for k in kernels {
        match nvrtc.compile(&k.source, &format!("{}.cu", k.entrypoint), &options) {
            Ok(ptx) => println!(
                "ok   {arch} {} ({} B source, {ptx} B PTX)",
                k.label,
                k.source.len()
            ),
            Err(log) => failures.push(format!(
                "{arch} {} ({}):\n{log}\n--- source ---\n{}",
                k.label, k.entrypoint, k.source
            )),
        }
    }
    failures
}

/// NVRTC and the directories it came from; None (SKIP printed) when absent outside CI.
fn nvrtc_or_skip() -> Option<(Nvrtc, PathBuf, PathBuf)> {
    let Some((lib, include)) = nvrtc_dirs() else {
        let msg = "NVRTC not found (pip install --target ~/.cache/biomamba-nvrtc \
                   nvidia-cuda-nvrtc-cu12 nvidia-cuda-runtime-cu12, or set BIOMAMBA_NVRTC_DIR)";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{msg}; CI must run this check"
        );
        println!("SKIP: {msg}");
        return None;
    };
    let nvrtc = Nvrtc::load(&find_nvrtc(&lib).unwrap());
    Some((nvrtc, lib, include))
}

#[test]
fn generated_cuda_compiles_with_nvrtc() {
    let Some((nvrtc, lib, include)) = nvrtc_or_skip() else {
        return;
    };
    let (major, minor) = nvrtc.version();
    println!("NVRTC {major}.{minor} from {}", lib.display());
    let mut failures = Vec::new();
    let mut compiled = 0;
    for (arch_num, archs) in [(80, &["sm_80"][..]), (90, &["sm_90", "sm_90a"][..])] {
        for dtype in [DType::F32, DType::BF16] {
            for n in [16, 4] {
                let kernels = cuda_sources(arch_num, dtype, n)
                    .unwrap_or_else(|e| panic!("code generation, {dtype:?} N={n}: {e}"));
                assert!(
                    kernels.len() >= 11,
                    "expected every kernel, got {}",
                    kernels.len()
                );
                for k in &kernels {
                    // The source must be the kernel asked for, in the element type asked for.
                    assert!(
                        k.source.contains(&k.entrypoint),
                        "{}: entry point {} not in the source",
                        k.label,
                        k.entrypoint
                    );
                    if dtype == DType::BF16 && !k.label.starts_with("sum_groups") {
                        assert!(
                            k.source.contains("bfloat16"),
                            "{}: no bf16 in the source",
                            k.label
                        );
                    }
                }
                if let Some(dir) = std::env::var_os("BIOMAMBA_CUDA_DUMP") {
                    std::fs::create_dir_all(&dir).unwrap();
                    for (i, k) in kernels.iter().enumerate() {
                        let name = format!("sm{arch_num}-{}-{i}.cu", k.entrypoint);
                        std::fs::write(Path::new(&dir).join(name), &k.source).unwrap();
                    }
                }
                for arch in archs {
                    failures.extend(compile_all(&nvrtc, &include, arch, &kernels));
                    compiled += kernels.len();
                }
            }
        }
    }
    println!("{compiled} kernel compilations, {} failed", failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// NVRTC really rejects bad code (so the check above can fail): a kernel calling an undeclared
/// function.
#[test]
fn nvrtc_reports_compile_errors() {
    let Some((nvrtc, _, include)) = nvrtc_or_skip() else {
        return;
    };
    let bad = CudaKernelSource {
        label: "deliberately broken".into(),
        entrypoint: "broken".into(),
        source: "extern \"C\" __global__ void broken(float* x) { x[0] = no_such_function(); }"
            .into(),
    };
    let failures = compile_all(&nvrtc, &include, "sm_80", &[bad]);
    assert_eq!(failures.len(), 1);
    assert!(failures[0].contains("no_such_function"), "{}", failures[0]);
}
