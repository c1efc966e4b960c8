// tileflash._C: the bridge between DLPack arrays (torch, numpy, anything with
// __dlpack__ or the buffer protocol) and tileflash::forward / tileflash::backward.
// The caller allocates every output; this layer only describes memory, so it
// links against no framework. tileflash::Error reaches Python as ValueError with
// the same message; an array of a dtype tileflash has no name for is a TypeError.
// FP8 (e4m3) inputs arrive as DLPack 1.1's float8_e4m3fn, or as one-byte integers
// with Options.float8_inputs, for frameworks whose DLPack export has no FP8 code.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "tileflash/tileflash.h"

namespace nb = nanobind;

namespace {

using InputArray = nb::ndarray<nb::ro>;
using OutputArray = nb::ndarray<>;
using OptionalInput = std::optional<InputArray>;

// DLPack 1.1's kDLFloat8_e4m3fn (OCP E4M3, no infinities: torch.float8_e4m3fn).
constexpr std::uint8_t kDLPackFloat8E4M3FN = 10;

const char* dlpack_code_name(std::uint8_t code) {
  if (code == kDLPackFloat8E4M3FN) return "float8_e4m3fn";
  switch (static_cast<nb::dlpack::dtype_code>(code)) {
    case nb::dlpack::dtype_code::Int: return "int";
    case nb::dlpack::dtype_code::UInt: return "uint";
    case nb::dlpack::dtype_code::Float: return "float";
    case nb::dlpack::dtype_code::Bfloat: return "bfloat";
    case nb::dlpack::dtype_code::Complex: return "complex";
    case nb::dlpack::dtype_code::Bool: return "bool";
  }
  return "unknown";
}

tileflash::DType to_dtype(nb::dlpack::dtype t, const char* name) {
  using Code = nb::dlpack::dtype_code;
  const auto code = static_cast<Code>(t.code);
  if (t.lanes == 1) {
    if (code == Code::Float && t.bits == 32) return tileflash::DType::float32;
    if (code == Code::Float && t.bits == 16) return tileflash::DType::float16;
    if (code == Code::Bfloat && t.bits == 16) return tileflash::DType::bfloat16;
    if (code == Code::Float && t.bits == 64) return tileflash::DType::float64;
    if (code == Code::Int && t.bits == 32) return tileflash::DType::int32;
    if (t.code == kDLPackFloat8E4M3FN && t.bits == 8) return tileflash::DType::float8_e4m3;
  }
  throw nb::type_error((std::string("tileflash: ") + name + ": unsupported dtype " + dlpack_code_name(t.code) +
                        std::to_string(t.bits) + (t.lanes == 1 ? "" : "x" + std::to_string(t.lanes)) +
                        " (tileflash takes float16, bfloat16, float32, float64, float8_e4m3fn inputs and int32 "
                        "offsets)")
                           .c_str());
}

// q, k or v under Options.float8_inputs: one-byte data read as float8_e4m3.
tileflash::DType to_float8_dtype(nb::dlpack::dtype t, const char* name) {
  using Code = nb::dlpack::dtype_code;
  const auto code = static_cast<Code>(t.code);
  const bool one_byte = t.bits == 8 && t.lanes == 1 &&
                        (code == Code::UInt || code == Code::Int || t.code == kDLPackFloat8E4M3FN);
  if (!one_byte)
    throw tileflash::Error(name, std::string("with float8_inputs must hold one-byte data (uint8, int8 or "
                                             "float8_e4m3fn), got ") +
                                     dlpack_code_name(t.code) + std::to_string(t.bits));
  return tileflash::DType::float8_e4m3;
}

template <class Array>
tileflash::TensorView to_view(const Array& a, const char* name, bool bytes_as_float8 = false) {
  const auto rank = static_cast<int>(a.ndim());
  if (rank < 1 || rank > tileflash::TensorView::kMaxRank)
    throw tileflash::Error(name, "rank must be between 1 and 4, got " + std::to_string(rank));
  tileflash::TensorView view;
  view.dtype = bytes_as_float8 ? to_float8_dtype(a.dtype(), name) : to_dtype(a.dtype(), name);
  if (a.device_type() == nb::device::cpu::value) {
    view.device = tileflash::DeviceType::cpu;
  } else if (a.device_type() == nb::device::cuda::value) {
    view.device = tileflash::DeviceType::cuda;
    view.device_index = a.device_id();
  } else {
    throw tileflash::Error(name, "must be in cpu or cuda memory, got DLPack device type " + std::to_string(a.device_type()));
  }
  view.rank = rank;
  for (int i = 0; i < rank; ++i) {
    view.shape[i] = static_cast<std::int64_t>(a.shape(i));
    view.stride[i] = a.stride(i);
  }
  view.data = const_cast<void*>(static_cast<const void*>(a.data()));
  return view;
}

tileflash::TensorView to_view(const OptionalInput& a, const char* name) {
  return a ? to_view(*a, name) : tileflash::TensorView{};
}

tileflash::Backend to_backend(const std::string& name) {
  if (name == "auto") return tileflash::Backend::automatic;
  if (name == "reference") return tileflash::Backend::reference;
  if (name == "cpu") return tileflash::Backend::cpu;
  if (name == "cuda") return tileflash::Backend::cuda;
  throw tileflash::Error("backend", "must be one of 'auto', 'reference', 'cpu', 'cuda', got '" + name + "'");
}

// The arguments forward and backward share, in the order of ForwardParams.
struct Options {
  OptionalInput cu_seqlens_q, cu_seqlens_k;
  std::int64_t max_seqlen_q = 0, max_seqlen_k = 0;
  std::optional<float> softmax_scale;
  bool causal = false;
  std::int64_t window_left = -1, window_right = -1;
  float softcap = 0.0f;
  OptionalInput bias, alibi_slopes;
  OptionalInput q_descale, k_descale, v_descale;
  bool float8_inputs = false;  // q, k, v are one-byte arrays holding float8_e4m3 values
  float dropout_p = 0.0f;
  std::uint64_t dropout_seed = 0, dropout_offset = 0;
  std::string backend = "auto";
  int num_threads = 0;
  std::uintptr_t cuda_stream = 0;
};

void fill(tileflash::ForwardParams& p, const Options& o) {
  p.cu_seqlens_q = to_view(o.cu_seqlens_q, "cu_seqlens_q");
  p.cu_seqlens_k = to_view(o.cu_seqlens_k, "cu_seqlens_k");
  p.max_seqlen_q = o.max_seqlen_q;
  p.max_seqlen_k = o.max_seqlen_k;
  p.softmax_scale = o.softmax_scale;
  p.causal = o.causal;
  p.window_left = o.window_left;
  p.window_right = o.window_right;
  p.softcap = o.softcap;
  p.bias = to_view(o.bias, "bias");
  p.alibi_slopes = to_view(o.alibi_slopes, "alibi_slopes");
  p.q_descale = to_view(o.q_descale, "q_descale");
  p.k_descale = to_view(o.k_descale, "k_descale");
  p.v_descale = to_view(o.v_descale, "v_descale");
  p.dropout_p = o.dropout_p;
  p.dropout_seed = o.dropout_seed;
  p.dropout_offset = o.dropout_offset;
  p.backend = to_backend(o.backend);
  p.num_threads = o.num_threads;
  p.cuda_stream = reinterpret_cast<void*>(o.cuda_stream);
}

std::pair<std::string, std::string> describe(const tileflash::KernelChoice& choice) {
  return {tileflash::backend_name(choice.backend), choice.kernel};
}

std::pair<std::string, std::string> forward(const InputArray& q, const InputArray& k, const InputArray& v,
                                            const OutputArray& out, const std::optional<OutputArray>& lse,
                                            const Options& options) {
  tileflash::ForwardParams p;
  p.q = to_view(q, "q", options.float8_inputs);
  p.k = to_view(k, "k", options.float8_inputs);
  p.v = to_view(v, "v", options.float8_inputs);
  p.out = to_view(out, "out");
  if (lse) p.lse = to_view(*lse, "lse");
  fill(p, options);
  tileflash::KernelChoice choice;
  {
    nb::gil_scoped_release release;
    choice = tileflash::forward(p);
  }
  return describe(choice);
}

std::pair<std::string, std::string> backward(const InputArray& dout, const InputArray& q, const InputArray& k,
                                             const InputArray& v, const InputArray& out, const InputArray& lse,
                                             const OutputArray& dq, const OutputArray& dk, const OutputArray& dv,
                                             bool deterministic, const Options& options) {
  tileflash::BackwardParams p;
  p.dout = to_view(dout, "dout");
  p.q = to_view(q, "q", options.float8_inputs);
  p.k = to_view(k, "k", options.float8_inputs);
  p.v = to_view(v, "v", options.float8_inputs);
  p.out = to_view(out, "out");
  p.lse = to_view(lse, "lse");
  p.dq = to_view(dq, "dq");
  p.dk = to_view(dk, "dk");
  p.dv = to_view(dv, "dv");
  p.deterministic = deterministic;
  fill(p, options);
  tileflash::KernelChoice choice;
  {
    nb::gil_scoped_release release;
    choice = tileflash::backward(p);
  }
  return describe(choice);
}

}  // namespace

NB_MODULE(_C, m) {
  m.doc() = "tileflash native extension: attention forward and backward over DLPack arrays";
  m.attr("__version__") = TILEFLASH_VERSION_STRING;

  nb::register_exception_translator([](const std::exception_ptr& error, void*) {
    try {
      std::rethrow_exception(error);
    } catch (const tileflash::Error& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const tileflash::RuntimeError& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });

  nb::class_<Options>(m, "Options",
                      "The settings forward and backward share; the names and meanings of tileflash::ForwardParams.")
      .def(nb::init<>())
      .def_rw("cu_seqlens_q", &Options::cu_seqlens_q)
      .def_rw("cu_seqlens_k", &Options::cu_seqlens_k)
      .def_rw("max_seqlen_q", &Options::max_seqlen_q)
      .def_rw("max_seqlen_k", &Options::max_seqlen_k)
      .def_rw("softmax_scale", &Options::softmax_scale)
      .def_rw("causal", &Options::causal)
      .def_rw("window_left", &Options::window_left)
      .def_rw("window_right", &Options::window_right)
      .def_rw("softcap", &Options::softcap)
      .def_rw("bias", &Options::bias)
      .def_rw("alibi_slopes", &Options::alibi_slopes)
      .def_rw("q_descale", &Options::q_descale)
      .def_rw("k_descale", &Options::k_descale)
      .def_rw("v_descale", &Options::v_descale)
      .def_rw("float8_inputs", &Options::float8_inputs)
      .def_rw("dropout_p", &Options::dropout_p)
      .def_rw("dropout_seed", &Options::dropout_seed)
      .def_rw("dropout_offset", &Options::dropout_offset)
      .def_rw("backend", &Options::backend)
      .def_rw("num_threads", &Options::num_threads)
      .def_rw("cuda_stream", &Options::cuda_stream);

  m.def("forward", &forward, nb::arg("q"), nb::arg("k"), nb::arg("v"), nb::arg("out"), nb::arg("lse").none(),
        nb::arg("options"),
        "Attention forward into `out` (and `lse` when given). Returns (backend, kernel) that ran.");
  m.def("backward", &backward, nb::arg("dout"), nb::arg("q"), nb::arg("k"), nb::arg("v"), nb::arg("out"),
        nb::arg("lse"), nb::arg("dq"), nb::arg("dk"), nb::arg("dv"), nb::arg("deterministic"), nb::arg("options"),
        "Attention backward into dq, dk, dv. Returns (backend, kernel) that ran.");
  m.def("cuda_available", &tileflash::cuda_available, "Whether this build has the CUDA backend.");
  m.def("cuda_device_count", &tileflash::cuda_device_count, "How many CUDA devices the backend sees.");
}
