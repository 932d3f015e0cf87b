//! CUDA graphs of the whole K-iteration refinement, autocast's dtype and CUDA's sync debug mode:
//! the parts of libtorch's C++ API tch does not expose, through a small C shim
//! (`src/model/cuda_shim.cpp`, built by `build.rs` with the `cc` crate against the same libtorch).
//!
//! **Why graphs.** At batch 1 on a GPU the refinement is launch-bound: every tensor op is a
//! kernel launch of a few microseconds of CPU time, and one refinement is thousands of them
//! (docs/gpu.md: 15 transformer-block calls, ~4-6 ms eager, 0.56 ms replayed as a graph on an
//! H200). A graph records the launches once and replays them with one.
//!
//! **Protocol** (PyTorch's `torch.cuda.graph`, torch/cuda/graphs.py): static input tensors on the
//! device; warm-up passes on a side stream (cuBLAS handles, allocator blocks, lazy
//! initialisation happen outside the capture); capture one pass on the side stream into a
//! private memory pool; afterwards each call copies its inputs into the static inputs, replays,
//! and reads the static outputs. A capture fails where the pass synchronises with the host
//! (reading a value back, a copy from pageable host memory): [`GraphedRefinement::capture`]
//! then returns the error and callers run eagerly ([`crate::control::TrcPolicy`] logs it once).
//! On the descent model the pass is free of host synchronisations on an accelerator: the
//! in-loop rollout and the terminal Jacobian have batched device forms
//! ([`crate::problems::PoweredDescent::rollout_accel_hold_fused`],
//! [`crate::problems::PoweredDescent::terminal_jacobian_accel_hold`]) and constants live on the
//! device ([`crate::tensor::ConstCache`]). The quadratic-cost problems' Gauss-Newton step (Van der
//! Pol, double integrator) is computed per sample on the CPU, so their capture fails and they run
//! eagerly; so does a model with `joint_monotone` (its fallback reads which samples need it).

use std::ffi::{c_char, c_int, CStr};
use std::ptr::NonNull;

use tch::{Device, Tensor};

use super::Trc;

#[repr(C)]
struct RawGraph {
    _private: [u8; 0],
}

extern "C" {
    fn trc_shim_has_cuda() -> c_int;
    fn trc_autocast(device_type: c_int, enabled: c_int, dtype: c_int, err: *mut c_char, len: usize) -> c_int;
    fn trc_graph_new(device: c_int, err: *mut c_char, len: usize) -> *mut RawGraph;
    fn trc_graph_side_stream(g: *mut RawGraph, enter: c_int, err: *mut c_char, len: usize) -> c_int;
    fn trc_graph_capture_begin(g: *mut RawGraph, err: *mut c_char, len: usize) -> c_int;
    fn trc_graph_capture_end(g: *mut RawGraph, err: *mut c_char, len: usize) -> c_int;
    fn trc_graph_replay(g: *mut RawGraph, err: *mut c_char, len: usize) -> c_int;
    fn trc_graph_free(g: *mut RawGraph);
    fn trc_cuda_sync_debug(mode: c_int, err: *mut c_char, len: usize) -> c_int;
    fn trc_op_count_begin(err: *mut c_char, len: usize) -> c_int;
    fn trc_op_count_end() -> i64;
    fn trc_op_names(buf: *mut c_char, len: usize) -> usize;
}

/// What went wrong in the CUDA shim.
#[derive(Debug, thiserror::Error)]
pub enum CudaShimError {
    /// No CUDA graph is possible here (no CUDA device, or a build without the CUDA headers).
    #[error("CUDA graphs unavailable: {0} (the refinement runs eagerly)")]
    Unavailable(String),
    /// The capture failed: the pass synchronised with the host or ran an op a graph cannot hold.
    #[error("CUDA graph capture failed: {0} (the refinement runs eagerly; docs/gpu.md lists what a capture cannot hold)")]
    Capture(String),
    /// A replay failed (the CUDA context is likely broken: restart the process).
    #[error("CUDA graph replay failed: {0} (restart the process; set node.cuda_graph: false to run eagerly)")]
    Replay(String),
    /// A static input did not match the captured shape.
    #[error("CUDA graph input `{what}`: captured for shape {captured:?}, got {got:?} (a new batch size or warm-start mode needs its own capture)")]
    Shape {
        /// Which input.
        what: &'static str,
        /// Shape at capture.
        captured: Vec<i64>,
        /// Shape given.
        got: Vec<i64>,
    },
    /// Setting autocast or the sync debug mode failed.
    #[error("{0}")]
    Setting(String),
}

const ERR_LEN: usize = 1024;

/// Runs a shim call with an error buffer; `Err(message)` on a nonzero status.
fn call(f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), String> {
    let mut buf = vec![0 as c_char; ERR_LEN];
    let rc = f(buf.as_mut_ptr(), ERR_LEN);
    if rc == 0 {
        Ok(())
    } else {
        // SAFETY: the shim writes a NUL-terminated string of at most ERR_LEN bytes (snprintf)
        Err(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned())
    }
}

/// Whether this build can make CUDA graphs at all (compiled against the CUDA headers); a CUDA
/// device is needed too ([`tch::Cuda::is_available`]).
pub fn shim_has_cuda() -> bool {
    // SAFETY: no arguments, no state
    unsafe { trc_shim_has_cuda() != 0 }
}

/// Mixed precision of autocast: the dtype of the ops autocast lowers (matmuls, linear layers;
/// reductions and normalisation stay in f32; f64 tensors are never touched, so the Gauss-Newton
/// features keep their precision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutocastDtype {
    /// IEEE half precision (tch's default on CUDA).
    F16,
    /// bfloat16: f32's exponent range with 8 mantissa bits (no loss scaling needed).
    Bf16,
}

/// Switches autocast on `device` (CPU or CUDA) on in `dtype`, or off (`None`, clearing its
/// cache and leaving the thread's dtype as it was). Thread-local (libtorch keeps autocast's
/// state per thread); pair every `Some` with a `None` ([`with_autocast`] does).
///
/// # Errors
/// [`CudaShimError::Setting`] with libtorch's message.
pub fn set_autocast(device: Device, dtype: Option<AutocastDtype>) -> Result<(), CudaShimError> {
    let dev = if device.is_cuda() { 1 } else { 0 };
    let (on, dt) = match dtype {
        Some(AutocastDtype::F16) => (1, 0),
        Some(AutocastDtype::Bf16) => (1, 1),
        None => (0, 1),
    };
    // SAFETY: plain values and an error buffer owned by `call`
    call(|e, l| unsafe { trc_autocast(dev, on, dt, e, l) }).map_err(|m| CudaShimError::Setting(format!("autocast: {m}")))
}

/// Runs `f` with autocast in `dtype` on `device` (nothing changed for `None`), switching it off
/// afterwards, also when `f` panics.
///
/// # Errors
/// [`CudaShimError::Setting`] if autocast cannot be set.
pub fn with_autocast<T>(device: Device, dtype: Option<AutocastDtype>, f: impl FnOnce() -> T) -> Result<T, CudaShimError> {
    let Some(dt) = dtype else { return Ok(f()) };
    struct Off(Device);
    impl Drop for Off {
        fn drop(&mut self) {
            let _ = set_autocast(self.0, None);
        }
    }
    set_autocast(device, Some(dt))?;
    let _off = Off(device);
    Ok(f())
}

/// CUDA's sync debug mode (`torch.cuda.set_sync_debug_mode`): 0 off, 1 warn, 2 error on every
/// host synchronisation a CUDA op makes. `scripts/gpu_check.sh` runs the refinement under 2 to
/// prove it free of them.
///
/// # Errors
/// [`CudaShimError::Setting`] in a build without the CUDA headers.
pub fn set_sync_debug_mode(mode: u8) -> Result<(), CudaShimError> {
    // SAFETY: a plain value and an error buffer owned by `call`
    call(|e, l| unsafe { trc_cuda_sync_debug(i32::from(mode.min(2)), e, l) }).map_err(|m| CudaShimError::Setting(format!("sync debug mode: {m}")))
}

/// Runs `f` and counts the top-level ATen ops it runs on the calling thread (an op called by
/// another op is not counted again), on any device (`at::RecordFunction`). [`count_ops_detailed`]
/// also gives them by name, from which [`OpCount::kernels`] estimates the GPU's launches.
///
/// # Errors
/// [`CudaShimError::Setting`] if libtorch refuses the callback.
pub fn count_ops<T>(f: impl FnOnce() -> T) -> Result<(T, u64), CudaShimError> {
    count_ops_detailed(f).map(|(v, c)| (v, c.top))
}

/// What [`count_ops_detailed`] counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpCount {
    /// Top-level ATen ops: the calls the code made (an op called by another op not counted again).
    pub top: u64,
    /// The top-level ops by name (`aten::add`, ...); they sum to `top`.
    pub by_name: std::collections::BTreeMap<String, u64>,
    /// Of those, by name, the calls under which an `aten::copy_` ran (a `contiguous` or
    /// `reshape` of a strided view, a `to` that converts): these launch a kernel although their
    /// name is in [`NO_KERNEL_OPS`].
    pub copying: std::collections::BTreeMap<String, u64>,
    /// Of those, by name, the calls under which an `aten::scalar_tensor` ran: a scalar operand
    /// made into a tensor on the op's device (`where` with a scalar branch), one more fill kernel
    /// on CUDA (on the CPU it is made without one).
    pub scalars: std::collections::BTreeMap<String, u64>,
}

/// Ops that launch no kernel on a GPU unless they copy ([`OpCount::copying`]): views and metadata
/// (a new tensor header over the same storage), allocation from the caching allocator, and
/// conversions that find the tensor already as asked. Source:
/// ATen's `native_functions.yaml` (ops tagged as views or implemented without a kernel).
pub const NO_KERNEL_OPS: &[&str] = &[
    "aten::_reshape_alias",
    "aten::_unsafe_view",
    "aten::alias",
    "aten::as_strided",
    "aten::chunk",
    "aten::contiguous",
    "aten::detach",
    "aten::diagonal",
    "aten::empty",
    "aten::empty_like",
    "aten::empty_strided",
    "aten::expand",
    "aten::expand_as",
    "aten::flatten",
    "aten::lift_fresh",
    "aten::movedim",
    "aten::narrow",
    "aten::permute",
    "aten::reshape",
    "aten::resize_",
    "aten::result_type",
    "aten::select",
    "aten::slice",
    "aten::split",
    "aten::split_with_sizes",
    "aten::squeeze",
    "aten::swapaxes",
    "aten::t",
    "aten::to",
    "aten::transpose",
    "aten::unbind",
    "aten::unflatten",
    "aten::unfold",
    "aten::unsqueeze",
    "aten::view",
    "aten::view_as",
];

impl OpCount {
    /// Kernels a GPU launches for these ops: one per op but [`NO_KERNEL_OPS`] (those count only
    /// where they copied), plus one per device scalar made ([`OpCount::scalars`]). An estimate
    /// of the kernels a refinement launches, eager or replayed from a CUDA graph: exact for
    /// elementwise ops, reductions, copies, fills and GEMMs (`linear` is one GEMM with its
    /// bias); a few composites launch more on CUDA (`layer_norm` one or two, a batched LU solve
    /// several), so it is low by those.
    #[must_use]
    pub fn kernels(&self) -> u64 {
        self.kernel_counts().map(|(_, n)| n).sum()
    }

    /// Kernel-launching calls by name ([`OpCount::kernels`]).
    fn kernel_counts(&self) -> impl Iterator<Item = (&String, u64)> {
        self.by_name.iter().filter_map(|(name, &n)| {
            let own = if NO_KERNEL_OPS.contains(&name.as_str()) { self.copying.get(name).copied().unwrap_or(0) } else { n };
            let k = own + self.scalars.get(name).copied().unwrap_or(0);
            (k > 0).then_some((name, k))
        })
    }

    /// The `n` most frequent kernel-launching ops, most frequent first.
    #[must_use]
    pub fn top_kernels(&self, n: usize) -> Vec<(String, u64)> {
        let mut v: Vec<_> = self.kernel_counts().map(|(k, c)| (k.clone(), c)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }
}

/// Runs `f` and counts its top-level ATen ops on the calling thread, any device, in all and by
/// name ([`OpCount`]). On the CPU this measures what a refinement would launch on a GPU
/// (`trc bench inference` reports it; docs/gpu.md).
///
/// # Errors
/// [`CudaShimError::Setting`] if libtorch refuses the callback, or if this thread is already
/// counting (counts do not nest).
pub fn count_ops_detailed<T>(f: impl FnOnce() -> T) -> Result<(T, OpCount), CudaShimError> {
    // SAFETY: an error buffer owned by `call`; begin/end pair on this thread
    call(|e, l| unsafe { trc_op_count_begin(e, l) }).map_err(|m| CudaShimError::Setting(format!("op counter: {m}")))?;
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    // SAFETY: ends the count begun above on this thread
    let n = unsafe { trc_op_count_end() };
    let v = match out {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    };
    // SAFETY: a null buffer asks for the length only; then a buffer of that length plus the NUL
    let need = unsafe { trc_op_names(std::ptr::null_mut(), 0) };
    let mut buf = vec![0u8; need + 1];
    // SAFETY: `buf` holds `need + 1` bytes
    unsafe { trc_op_names(buf.as_mut_ptr().cast(), buf.len()) };
    let text = String::from_utf8_lossy(&buf[..need]);
    let mut c = OpCount { top: n.max(0) as u64, ..OpCount::default() };
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let [name, calls, copied, scalars] = f[..] else { continue };
        let (Ok(calls), Ok(copied), Ok(scalars)) = (calls.parse::<u64>(), copied.parse::<u64>(), scalars.parse::<u64>()) else { continue };
        c.by_name.insert(name.to_string(), calls);
        for (map, k) in [(&mut c.copying, copied), (&mut c.scalars, scalars)] {
            if k > 0 {
                map.insert(name.to_string(), k);
            }
        }
    }
    Ok((v, c))
}

/// The ATen ops of one refinement of `model` (K = `outer`, no warm start) on `x0`, `x_target`
/// `[B, n]`, `t_go` `[B]`, on the accelerator's code path (`device_path`, forced on any device
/// with [`Trc::set_device_path`]) or the CPU's: what a GPU launches per refinement, counted
/// anywhere ([`OpCount::kernels`]; `trc bench inference` and a CI budget in tests/batch.rs use
/// it). One uncounted refinement runs first, so constants cached on first use are not counted;
/// the model's path setting is restored after.
///
/// # Errors
/// As [`count_ops_detailed`].
pub fn count_refinement(model: &mut Trc, x0: &Tensor, x_target: &Tensor, t_go: &Tensor, outer: i64, device_path: bool) -> Result<OpCount, CudaShimError> {
    let _guard = tch::no_grad_guard();
    let was = model.device_path_forced();
    model.set_device_path(device_path);
    let _ = model.forward_t(x0, x_target, t_go, None, outer, false);
    let counted = count_ops_detailed(|| model.forward_t(x0, x_target, t_go, None, outer, false).u.len()).map(|(_, c)| c);
    model.set_device_path(was);
    counted
}

/// One CUDA graph (`at::cuda::CUDAGraph`) with its side stream.
#[derive(Debug)]
pub struct CudaGraph {
    raw: NonNull<RawGraph>,
    captured: bool,
}

// SAFETY: the graph is only used through `&mut self` (one thread at a time); libtorch's
// CUDAGraph has no thread affinity (capture and replay use the calling thread's current stream).
unsafe impl Send for CudaGraph {}

impl CudaGraph {
    /// A new, empty graph on CUDA device `index`.
    ///
    /// # Errors
    /// [`CudaShimError::Unavailable`] without a CUDA device or CUDA headers at build time.
    pub fn new(index: usize) -> Result<Self, CudaShimError> {
        if !shim_has_cuda() {
            return Err(CudaShimError::Unavailable("this build has no CUDA headers (a CPU-only libtorch)".into()));
        }
        if !tch::Cuda::is_available() {
            return Err(CudaShimError::Unavailable("no CUDA device".into()));
        }
        let mut raw = std::ptr::null_mut();
        // SAFETY: the shim returns a fresh heap object, or null with the reason in the buffer
        let made = call(|e, l| {
            raw = unsafe { trc_graph_new(index as c_int, e, l) };
            c_int::from(raw.is_null())
        });
        match (NonNull::new(raw), made) {
            (Some(raw), _) => Ok(Self { raw, captured: false }),
            (None, Err(why)) => Err(CudaShimError::Unavailable(why)),
            (None, Ok(())) => Err(CudaShimError::Unavailable("the shim returned no graph".into())),
        }
    }

    /// Runs `f` with the graph's side stream current (warm-up passes before a capture).
    ///
    /// # Errors
    /// [`CudaShimError::Capture`] if the stream cannot be switched.
    pub fn on_side_stream<T>(&mut self, f: impl FnOnce() -> T) -> Result<T, CudaShimError> {
        let raw = self.raw.as_ptr();
        // SAFETY: `raw` is live for `self`'s lifetime
        call(|e, l| unsafe { trc_graph_side_stream(raw, 1, e, l) }).map_err(CudaShimError::Capture)?;
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        // SAFETY: as above
        let back = call(|e, l| unsafe { trc_graph_side_stream(raw, 0, e, l) }).map_err(CudaShimError::Capture);
        match out {
            Ok(v) => back.map(|()| v),
            Err(p) => Err(CudaShimError::Capture(format!("the pass panicked on the side stream: {}", panic_text(&*p)))),
        }
    }

    /// Captures the CUDA work `f` enqueues (on the calling thread) into the graph. A panic in
    /// `f` (tch panics on a libtorch error, e.g. an op a capture forbids) ends the capture and
    /// is returned as an error.
    ///
    /// # Errors
    /// [`CudaShimError::Capture`] with libtorch's or the panic's message.
    pub fn capture<T>(&mut self, f: impl FnOnce() -> T) -> Result<T, CudaShimError> {
        let raw = self.raw.as_ptr();
        // SAFETY: `raw` is live for `self`'s lifetime
        call(|e, l| unsafe { trc_graph_capture_begin(raw, e, l) }).map_err(CudaShimError::Capture)?;
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        // SAFETY: as above; always called, so a failed pass never leaves the stream capturing
        let end = call(|e, l| unsafe { trc_graph_capture_end(raw, e, l) });
        match (out, end) {
            (Ok(v), Ok(())) => {
                self.captured = true;
                Ok(v)
            }
            (Err(p), _) => Err(CudaShimError::Capture(format!("the pass panicked during capture: {}", panic_text(&*p)))),
            (Ok(_), Err(m)) => Err(CudaShimError::Capture(m)),
        }
    }

    /// Replays the captured work on the current stream (asynchronous: read the outputs, which
    /// synchronises, before the next replay overwrites them).
    ///
    /// # Errors
    /// [`CudaShimError::Replay`] before a successful capture or on a CUDA error.
    pub fn replay(&mut self) -> Result<(), CudaShimError> {
        if !self.captured {
            return Err(CudaShimError::Replay("nothing captured".into()));
        }
        let raw = self.raw.as_ptr();
        // SAFETY: `raw` is live and captured
        call(|e, l| unsafe { trc_graph_replay(raw, e, l) }).map_err(CudaShimError::Replay)
    }
}

impl Drop for CudaGraph {
    fn drop(&mut self) {
        // SAFETY: `raw` came from trc_graph_new and is freed once
        unsafe { trc_graph_free(self.raw.as_ptr()) }
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string())).unwrap_or_else(|| "a panic".into())
}

/// Warm-up passes on the side stream before a capture (PyTorch's recipe uses 3; 11 for DDP).
pub const GRAPH_WARMUP_PASSES: usize = 3;

/// The K-iteration refinement of a [`Trc`] captured as one CUDA graph for a fixed batch size B
/// and warm-start mode: static inputs `x0`, `x_target` `[B, n]`, `t_go` `[B]` and (warm mode)
/// `u_warm` `[B, N, m]`; static outputs u^(0..K) `[B, N, m]`. The same weights and K as the
/// eager [`Trc::forward_t`], and the same result to float rounding (`scripts/gpu_check.sh` checks
/// it on a GPU).
#[derive(Debug)]
pub struct GraphedRefinement {
    graph: CudaGraph,
    x0: Tensor,
    x_target: Tensor,
    t_go: Tensor,
    u_warm: Option<Tensor>,
    u: Vec<Tensor>,
    outer: i64,
}

impl GraphedRefinement {
    /// Captures `model`'s K = `outer` refinement for the example inputs (`x0`, `x_target` `[B, n]`,
    /// `t_go` `[B]`, optional `u_warm` `[B, N, m]`; their values seed the warm-up passes, their
    /// shapes fix B and the mode). The model must live on a CUDA device.
    ///
    /// # Errors
    /// [`CudaShimError::Unavailable`] off CUDA; [`CudaShimError::Capture`] where the pass cannot
    /// be captured (the caller runs eagerly).
    pub fn capture(model: &Trc, x0: &Tensor, x_target: &Tensor, t_go: &Tensor, u_warm: Option<&Tensor>, outer: i64) -> Result<Self, CudaShimError> {
        let Device::Cuda(index) = model.device() else {
            return Err(CudaShimError::Unavailable(format!("the model is on {:?}", model.device())));
        };
        // a capture known to fail is not attempted: torch 2.11 leaves its allocator in capture
        // state after a failed capture_end (fixed upstream in torch 2.12, pytorch#180395)
        if !matches!(model.simulator(), crate::problems::Simulator::AccelHold(_)) {
            return Err(CudaShimError::Unavailable(
                "this problem's cost Gauss-Newton step runs per sample on the CPU (only descent's refinement is free of host synchronisations)".into(),
            ));
        }
        if model.config().joint_monotone {
            return Err(CudaShimError::Unavailable("joint_monotone reads back which samples need its fallback (a host synchronisation)".into()));
        }
        let mut graph = CudaGraph::new(index)?;
        let _no_grad = tch::no_grad_guard();
        let dev = model.device();
        let kind = model.kind();
        let st = |t: &Tensor| t.to_device(dev).to_kind(kind).contiguous().copy();
        let (x0, x_target, t_go) = (st(x0), st(x_target), st(t_go));
        let u_warm = u_warm.map(st);
        let pass = |x0: &Tensor, xt: &Tensor, tg: &Tensor, uw: Option<&Tensor>| model.forward_t(x0, xt, tg, uw, outer, false).u;
        graph.on_side_stream(|| {
            for _ in 0..GRAPH_WARMUP_PASSES {
                let _ = pass(&x0, &x_target, &t_go, u_warm.as_ref());
            }
        })?;
        // one more pass with CUDA's sync debug mode at `error`: a host synchronisation fails it
        // here, before a capture could (see above); process-wide while it runs, and only around
        // the pass (the side stream's own entry and exit synchronise on purpose)
        let checked = graph.on_side_stream(|| -> Result<(), CudaShimError> {
            set_sync_debug_mode(2)?;
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pass(&x0, &x_target, &t_go, u_warm.as_ref()).len()));
            set_sync_debug_mode(0)?;
            r.map(|_| ()).map_err(|p| CudaShimError::Capture(panic_text(&*p)))
        })?;
        if let Err(e) = checked {
            return Err(CudaShimError::Capture(format!("not attempted: the pass synchronises with the host ({e})")));
        }
        let u = graph.capture(|| pass(&x0, &x_target, &t_go, u_warm.as_ref()))?;
        Ok(Self { graph, x0, x_target, t_go, u_warm, u, outer })
    }

    /// Whether this capture serves a batch of `b` with (`warm`) or without a warm start.
    pub fn serves(&self, b: i64, warm: bool) -> bool {
        self.x0.size()[0] == b && self.u_warm.is_some() == warm
    }

    /// K of the capture.
    pub fn outer(&self) -> i64 {
        self.outer
    }

    /// Copies the inputs into the static ones and replays: returns u^(0..K) `[B, N, m]` on the
    /// device (views of the static outputs: copy them before the next call).
    ///
    /// # Errors
    /// [`CudaShimError::Shape`] for inputs of another shape or warm-start mode;
    /// [`CudaShimError::Replay`] on a CUDA error.
    pub fn run(&mut self, x0: &Tensor, x_target: &Tensor, t_go: &Tensor, u_warm: Option<&Tensor>) -> Result<&[Tensor], CudaShimError> {
        let check = |what: &'static str, stat: &Tensor, given: &Tensor| {
            if stat.size() == given.size() {
                Ok(())
            } else {
                Err(CudaShimError::Shape { what, captured: stat.size(), got: given.size() })
            }
        };
        check("x0", &self.x0, x0)?;
        check("x_target", &self.x_target, x_target)?;
        check("t_go", &self.t_go, t_go)?;
        match (&mut self.u_warm, u_warm) {
            (Some(s), Some(g)) => {
                check("u_warm", s, g)?;
                s.copy_(g);
            }
            (None, None) => {}
            (s, g) => {
                return Err(CudaShimError::Shape {
                    what: "u_warm",
                    captured: s.as_ref().map(Tensor::size).unwrap_or_default(),
                    got: g.map(Tensor::size).unwrap_or_default(),
                })
            }
        }
        self.x0.copy_(x0);
        self.x_target.copy_(x_target);
        self.t_go.copy_(t_go);
        self.graph.replay()?;
        Ok(&self.u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn a_graph_without_a_cuda_device_is_refused_with_a_reason() {
        if tch::Cuda::is_available() {
            return; // the GPU check covers this machine
        }
        match CudaGraph::new(0) {
            Err(CudaShimError::Unavailable(why)) => assert!(!why.is_empty()),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[test]
    fn the_op_counter_counts_top_level_ops_once() {
        let a = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
        let (_, n) = count_ops(|| {
            let b = &a + 1.0;
            let c = b.matmul(&a);
            c.sum(Kind::Float)
        })
        .unwrap();
        assert_eq!(n, 3, "add, matmul, sum (matmul's inner mm not counted again)");
        let (_, none) = count_ops(|| 0).unwrap();
        assert_eq!(none, 0);
    }

    #[test]
    fn the_op_count_by_name_sums_to_the_total_and_skips_views_as_kernels() {
        let a = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
        let lin = tch::nn::linear(tch::nn::VarStore::new(Device::Cpu).root(), 4, 4, Default::default());
        let (_, c) = count_ops_detailed(|| {
            let y = a.apply(&lin); // one linear (a GEMM with its bias)
            let z = y.view([16]); // a view: no kernel
            let w = y.transpose(0, 1).contiguous(); // a copy of a strided view: one kernel
            (&z * 2.0).sum(Kind::Float) + w.sum(Kind::Float)
        })
        .unwrap();
        assert_eq!(c.top, 8, "{c:?}");
        assert_eq!(c.by_name.values().sum::<u64>(), c.top, "{c:?}");
        assert_eq!(c.by_name.get("aten::linear"), Some(&1), "{c:?}");
        assert_eq!(c.copying.get("aten::contiguous"), Some(&1), "{c:?}");
        assert_eq!(c.kernels(), 6, "linear, mul, contiguous (copies), sum, sum, add launch; view and transpose do not: {c:?}");
        assert_eq!(c.top_kernels(1), vec![("aten::sum".to_string(), 2)]);
        // a scalar branch of `where` is made a tensor on the device: a fill kernel on CUDA
        let (_, w) = count_ops_detailed(|| a.where_scalarother(&a.gt(0.5), 1.0)).unwrap();
        assert_eq!(w.scalars.get("aten::where"), Some(&1), "{w:?}");
        assert_eq!(w.kernels(), 3, "gt, the scalar's fill, where: {w:?}");
        // nested counts are refused
        let nested = count_ops_detailed(|| count_ops(|| 0).is_err()).unwrap().0;
        assert!(nested, "a count inside a count is an error");
    }

    #[test]
    fn cpu_autocast_switches_matmuls_to_bf16_and_back() {
        let a = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
        let inside = with_autocast(Device::Cpu, Some(AutocastDtype::Bf16), || a.matmul(&a).kind()).unwrap();
        assert_eq!(inside, Kind::BFloat16, "autocast lowers a matmul to bf16");
        assert_eq!(a.matmul(&a).kind(), Kind::Float, "and is off again afterwards");
        let off = with_autocast(Device::Cpu, None, || a.matmul(&a).kind()).unwrap();
        assert_eq!(off, Kind::Float);
    }
}
