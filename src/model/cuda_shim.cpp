// A small C shim over the parts of libtorch's C++ API that tch does not expose (built by build.rs
// with the `cc` crate against the same libtorch as tch; Rust side: src/model/cuda_graph.rs):
//
// * CUDA graphs (at::cuda::CUDAGraph): capture the work the caller enqueues between
//   `trc_graph_capture_begin` and `trc_graph_capture_end` on a side stream, replay it with one
//   launch. The protocol is PyTorch's `torch.cuda.graph` (torch/cuda/graphs.py): synchronise,
//   make a pool stream current, capture_begin, run, capture_end, restore the stream.
// * Autocast's dtype (at::autocast::set_autocast_dtype): tch can switch CUDA autocast on but
//   not choose bf16 over its fp16 default.
// * CUDA's sync debug mode (c10::cuda::warning_state): makes a host synchronisation an error,
//   which proves a code path free of them (a graph capture needs that).
// * An op counter (at::RecordFunction): the top-level ATen ops a piece of code runs on the
//   calling thread, any device, in all and by name: what a GPU launches per refinement,
//   measured on the CPU.
//
// Every function catches C++ exceptions and returns a nonzero status with the message in `err`
// (`len` bytes, NUL-terminated): no exception crosses into Rust. Without the CUDA headers (a
// CPU-only libtorch) build.rs defines TRC_NO_CUDA and the graph and sync functions report that.
// Only exported libtorch / c10 functions are called (no CUDA runtime symbol of our own), so the
// binary needs no libcudart of its own: torch's libraries bring theirs.

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>

#include <ATen/autocast_mode.h>
#include <ATen/record_function.h>
#include <c10/core/ScalarType.h>

#ifndef TRC_NO_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace {
void put(char* err, size_t len, const char* msg) {
  if (err == nullptr || len == 0) return;
  std::snprintf(err, len, "%s", msg);
}

template <typename F>
int guarded(char* err, size_t len, F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    put(err, len, e.what());
  } catch (...) {
    put(err, len, "unknown C++ exception");
  }
  return 1;
}
}  // namespace

extern "C" {

// 1 when built with the CUDA headers (graphs possible where a device exists), else 0.
int trc_shim_has_cuda() {
#ifdef TRC_NO_CUDA
  return 0;
#else
  return 1;
#endif
}

// Autocast on `device_type` (0 = CPU, 1 = CUDA): on in `dtype` (0 = float16, 1 = bfloat16),
// or off (`dtype` ignored, the thread's dtype left as it was; autocast's weight cache cleared).
// Thread-local, like all of autocast's state.
int trc_autocast(int device_type, int enabled, int dtype, char* err, size_t len) {
  return guarded(err, len, [&] {
    const at::DeviceType dev = device_type == 1 ? at::kCUDA : at::kCPU;
    if (enabled != 0) {
      at::autocast::set_autocast_dtype(dev, dtype == 1 ? at::kBFloat16 : at::kHalf);
      at::autocast::set_autocast_enabled(dev, true);
    } else {
      at::autocast::set_autocast_enabled(dev, false);
      at::autocast::clear_cache();
    }
  });
}

namespace {
thread_local int64_t t_ops = 0;
thread_local int t_depth = 0;
thread_local at::CallbackHandle t_handle = 0;
// The top-level ops of the current count by name: calls, calls under which an aten::copy_ ran,
// calls under which an aten::scalar_tensor ran (a scalar operand made a tensor on the op's
// device: one fill kernel on CUDA, e.g. `where` with a scalar branch).
struct NameCount {
  int64_t calls = 0, copying = 0, scalars = 0;
};
thread_local std::map<std::string, NameCount> t_names;
thread_local std::string t_top;
thread_local bool t_copied = false;
thread_local bool t_scalar = false;
std::unique_ptr<at::ObserverContext> op_start(const at::RecordFunction& fn) {
  if (t_depth++ == 0) {
    ++t_ops;
    t_top = fn.name();
    t_copied = false;
    t_scalar = false;
  } else if (std::strcmp(fn.name(), "aten::copy_") == 0) {
    t_copied = true;
  } else if (std::strcmp(fn.name(), "aten::scalar_tensor") == 0) {
    t_scalar = true;
  }
  return nullptr;
}
void op_end(const at::RecordFunction&, at::ObserverContext*) {
  if (--t_depth == 0) {
    auto& e = t_names[t_top];
    ++e.calls;
    if (t_copied) ++e.copying;
    if (t_scalar) ++e.scalars;
  }
}
}  // namespace

// Starts counting the top-level ATen ops (an op called by another op is not counted again) run
// by the calling thread, from zero, in all and by name. Counts do not nest: a begin while this
// thread counts is an error. Ops that libtorch runs on other threads are not counted.
int trc_op_count_begin(char* err, size_t len) {
  return guarded(err, len, [&] {
    if (t_handle != 0) throw std::runtime_error("the op counter is already counting on this thread (counts do not nest)");
    t_ops = 0;
    t_depth = 0;
    t_names.clear();
    t_handle = at::addThreadLocalCallback(at::RecordFunctionCallback(op_start, op_end).scopes({at::RecordScope::FUNCTION}));
  });
}

// Stops counting; the top-level count since trc_op_count_begin (-1 when it was not counting).
// The counts by name stay readable with trc_op_names until the next begin.
int64_t trc_op_count_end() {
  if (t_handle == 0) return -1;
  try {
    at::removeCallback(t_handle);
  } catch (...) {
  }
  t_handle = 0;
  return t_ops;
}

// The top-level ops of the last count by name, as lines "name calls copying scalars\n" (the
// fields of NameCount) into `buf` (`len` bytes, NUL-terminated); the length the whole text needs,
// without its NUL (call again with a larger buffer if it is not less than `len`); 0 if the text
// could not be made.
size_t trc_op_names(char* buf, size_t len) {
  try {
    std::string text;
    for (const auto& [name, n] : t_names) {
      text += name + " " + std::to_string(n.calls) + " " + std::to_string(n.copying) + " " + std::to_string(n.scalars) + "\n";
    }
    if (buf != nullptr && len > 0) std::snprintf(buf, len, "%s", text.c_str());
    return text.size();
  } catch (...) {
    if (buf != nullptr && len > 0) buf[0] = '\0';
    return 0;
  }
}

#ifdef TRC_NO_CUDA

struct TrcGraph {};
static const char* kNoCuda = "built without the CUDA headers (a CPU-only libtorch)";
TrcGraph* trc_graph_new(int, char* err, size_t len) {
  put(err, len, kNoCuda);
  return nullptr;
}
int trc_graph_side_stream(TrcGraph*, int, char* err, size_t len) {
  put(err, len, kNoCuda);
  return 1;
}
int trc_graph_capture_begin(TrcGraph*, char* err, size_t len) {
  put(err, len, kNoCuda);
  return 1;
}
int trc_graph_capture_end(TrcGraph*, char* err, size_t len) {
  put(err, len, kNoCuda);
  return 1;
}
int trc_graph_replay(TrcGraph*, char* err, size_t len) {
  put(err, len, kNoCuda);
  return 1;
}
void trc_graph_free(TrcGraph*) {}
int trc_cuda_sync_debug(int, char* err, size_t len) {
  put(err, len, kNoCuda);
  return 1;
}

#else

struct TrcGraph {
  explicit TrcGraph(c10::DeviceIndex d) : device(d), side(c10::cuda::getStreamFromPool(false, d)) {}
  c10::DeviceIndex device;
  at::cuda::CUDAGraph graph;
  std::optional<c10::cuda::CUDAStream> side;
  std::optional<c10::cuda::CUDAStream> saved;
  c10::DeviceIndex saved_device = -1;
  bool capturing = false;
  bool poisoned = false;  // a capture_end failed: libtorch 2.11 leaves its allocator pointing here
};

// Makes `g`'s device and side stream current (enter; after a device synchronisation, so the
// side stream sees all earlier work) or restores the device and stream that were current
// (leave: the stream first, so a failing synchronisation cannot leave the thread on the side
// stream; then a synchronisation, so later work on the caller's stream sees the side stream's).
// Warm-up passes run there before a capture (cuBLAS handles, allocator blocks and lazy
// initialisation must exist before it).
static void enter_side(TrcGraph* g) {
  if (g->saved) return;
  g->saved_device = c10::cuda::current_device();
  c10::cuda::set_device(g->device);
  c10::cuda::device_synchronize();
  g->saved = c10::cuda::getCurrentCUDAStream(g->device);
  c10::cuda::setCurrentCUDAStream(*g->side);
}

static void leave_side(TrcGraph* g) {
  if (!g->saved) return;
  c10::cuda::setCurrentCUDAStream(*g->saved);
  g->saved.reset();
  const c10::DeviceIndex back = g->saved_device;
  g->saved_device = -1;
  c10::cuda::device_synchronize();
  if (back >= 0 && back != g->device) c10::cuda::set_device(back);
}

// A new, empty graph for CUDA device `device`; nullptr (message in `err`) without one.
TrcGraph* trc_graph_new(int device, char* err, size_t len) {
  TrcGraph* out = nullptr;
  guarded(err, len, [&] {
    if (device < 0 || c10::cuda::device_count() <= device) throw std::runtime_error("no such CUDA device");
    out = new TrcGraph(static_cast<c10::DeviceIndex>(device));
  });
  return out;
}

int trc_graph_side_stream(TrcGraph* g, int enter, char* err, size_t len) {
  return guarded(err, len, [&] {
    if (enter != 0) {
      enter_side(g);
    } else {
      leave_side(g);
    }
  });
}

// Starts capturing on the side stream (thread-local capture mode: other threads of the process,
// e.g. the node's, may use CUDA meanwhile without invalidating it). On failure the caller's
// stream is current again.
int trc_graph_capture_begin(TrcGraph* g, char* err, size_t len) {
  int rc = guarded(err, len, [&] {
    enter_side(g);
    g->graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
    g->capturing = true;
  });
  if (rc != 0) {
    char ignored[64];
    guarded(ignored, sizeof ignored, [&] { leave_side(g); });
  }
  return rc;
}

// Ends the capture (an invalidated capture, e.g. by a host synchronisation inside it, fails
// here) and restores the caller's stream whatever happened. A failed end marks the graph
// poisoned: torch 2.11's capture_end throws before it releases the allocator's capture state
// (fixed upstream in pytorch#180395, torch 2.12), so the object must never be freed.
int trc_graph_capture_end(TrcGraph* g, char* err, size_t len) {
  int rc = guarded(err, len, [&] {
    g->capturing = false;
    g->graph.capture_end();
  });
  if (rc != 0) g->poisoned = true;
  char tail[256] = {0};
  int rc2 = guarded(tail, sizeof tail, [&] { leave_side(g); });
  if (rc == 0 && rc2 != 0) {
    put(err, len, tail);
    return rc2;
  }
  return rc;
}

// Replays the captured work on the current stream (asynchronous, like any CUDA launch).
int trc_graph_replay(TrcGraph* g, char* err, size_t len) {
  return guarded(err, len, [&] {
    const c10::DeviceIndex back = c10::cuda::current_device();
    if (back != g->device) c10::cuda::set_device(g->device);
    g->graph.replay();
    if (back != g->device) c10::cuda::set_device(back);
  });
}

// Frees the graph and its memory pool; a poisoned graph (failed capture_end) is deliberately
// leaked (see trc_graph_capture_end).
void trc_graph_free(TrcGraph* g) {
  if (g == nullptr) return;
  try {
    if (g->capturing) {
      g->capturing = false;
      g->graph.capture_end();
    }
  } catch (...) {
    g->poisoned = true;
  }
  try {
    leave_side(g);
  } catch (...) {
  }
  if (!g->poisoned) delete g;
}

// CUDA's sync debug mode: 0 off, 1 warn, 2 error on every host synchronisation.
int trc_cuda_sync_debug(int mode, char* err, size_t len) {
  return guarded(err, len, [&] {
    const auto m = mode == 2 ? c10::cuda::SyncDebugMode::L_ERROR
                   : mode == 1 ? c10::cuda::SyncDebugMode::L_WARN
                               : c10::cuda::SyncDebugMode::L_DISABLED;
    c10::cuda::warning_state().set_sync_debug_mode(m);
  });
}

#endif
}
