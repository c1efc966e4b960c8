// The `cudnn` backend: cuDNN's fused flash attention (SDPA forward and backward)
// through the header-only cudnn-frontend graph API, and its FP8 forward (sdpa_fp8). q, k,
// v keep the case's memory layout: the graph is given their strides, so nothing is copied.
//
// peak_bytes: the workspace the graphs ask for (allocated here), plus whatever the
// memory probe of gpu_common.h sees cuDNN take on its own during one execution.
#include <cudnn.h>

#include <cmath>
#include <cudnn_frontend.h>
#include <iterator>
#include <unordered_map>

#include "bench.h"
#include "gpu_common.h"
#include "tileflash/error.h"

namespace tileflash::bench {
namespace {

namespace fe = cudnn_frontend;
using gpu::DeviceBuffer;

enum Uid : std::int64_t {
  kQ = 1, kK, kV, kO, kStats, kDout, kDq, kDk, kDv,
  // The FP8 forward's float32 scalars: per-tensor scales in, absolute maxima out.
  kDescaleQ, kDescaleK, kDescaleV, kDescaleS, kScaleS, kScaleO, kAmaxS, kAmaxO
};
constexpr Uid kFp8Scalars[] = {kDescaleQ, kDescaleK, kDescaleV, kDescaleS, kScaleS, kScaleO, kAmaxS, kAmaxO};

void check_fe(fe::error_t status, const char* what) {
  if (!status.is_good()) throw RuntimeError(std::string("cudnn-frontend ") + what + ": " + status.get_message());
}

fe::DataType_t fe_type(DType dtype) {
  switch (dtype) {
    case DType::float16: return fe::DataType_t::HALF;
    case DType::float8_e4m3: return fe::DataType_t::FP8_E4M3;
    default: return fe::DataType_t::BFLOAT16;
  }
}

// cuDNN indexes attention tensors as (batch, heads, seq, dim).
std::vector<std::int64_t> bhsd_dims(const Shape4& s) { return {s.batch, s.heads, s.seq, s.dim}; }
std::vector<std::int64_t> bhsd_strides(const Shape4& s, Layout layout) {
  if (layout == Layout::bshd) return {s.seq * s.heads * s.dim, s.dim, s.heads * s.dim, 1};
  return {s.heads * s.seq * s.dim, s.seq * s.dim, s.dim, 1};
}

std::shared_ptr<fe::graph::Tensor_attributes> add_tensor(fe::graph::Graph& graph, const char* name, Uid uid,
                                                        const Shape4& shape, Layout layout) {
  return graph.tensor(fe::graph::Tensor_attributes()
                          .set_name(name)
                          .set_uid(uid)
                          .set_dim(bhsd_dims(shape))
                          .set_stride(bhsd_strides(shape, layout)));
}

void set_output(fe::graph::Tensor_attributes& t, Uid uid, const Shape4& shape, Layout layout) {
  t.set_output(true).set_uid(uid).set_dim(bhsd_dims(shape)).set_stride(bhsd_strides(shape, layout));
}

std::shared_ptr<fe::graph::Graph> new_graph(DType dtype) {
  auto graph = std::make_shared<fe::graph::Graph>();
  graph->set_io_data_type(fe_type(dtype))
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  return graph;
}

std::shared_ptr<fe::graph::Tensor_attributes> stats_tensor(fe::graph::Graph& graph, const Case& c) {
  return graph.tensor(fe::graph::Tensor_attributes()
                          .set_name("stats")
                          .set_uid(kStats)
                          .set_dim({c.batch, c.heads_q, c.seq_q, 1})
                          .set_stride({c.heads_q * c.seq_q, c.seq_q, 1, 1})
                          .set_data_type(fe::DataType_t::FLOAT));
}

// For seq_q == seq_k the top-left and bottom-right causal masks are the same mask;
// cuDNN's backward is much faster with the top-left form (on an H200, d = 128,
// seq 2048: 250 TFLOP/s bottom-right against about 415 through PyTorch's top-left),
// so the baseline uses it wherever it means the same thing.
template <class Attributes>
void set_causal(Attributes& options, const Case& c) {
  if (!c.causal) return;
  if (c.seq_q == c.seq_k) options.set_causal_mask(true);
  else options.set_causal_mask_bottom_right(true);
}

std::shared_ptr<fe::graph::Graph> forward_graph(const Case& c, float scale) {
  auto graph = new_graph(c.dtype);
  auto q = add_tensor(*graph, "q", kQ, q_shape(c), c.layout);
  auto k = add_tensor(*graph, "k", kK, kv_shape(c), c.layout);
  auto v = add_tensor(*graph, "v", kV, kv_shape(c), c.layout);
  auto options = fe::graph::SDPA_attributes().set_name("sdpa").set_generate_stats(true).set_attn_scale(scale);
  set_causal(options, c);
  auto [o, stats] = graph->sdpa(q, k, v, options);
  set_output(*o, kO, q_shape(c), c.layout);
  stats->set_output(true).set_uid(kStats).set_data_type(fe::DataType_t::FLOAT);
  return graph;
}

// A float32 scalar of the FP8 graph (a scale in, or an amax out).
fe::graph::Tensor_attributes& as_fp8_scalar(fe::graph::Tensor_attributes& t, Uid uid) {
  return t.set_uid(uid).set_dim({1, 1, 1, 1}).set_stride({1, 1, 1, 1}).set_data_type(fe::DataType_t::FLOAT);
}

// The FP8 forward with per-tensor scaling. q, k, v are plain e4m3 values (descales 1, as
// tileflash runs without descales). cuDNN quantises the softmax probabilities, which lie
// in [0, 1], as P * scale_s: scale_s = 448 (e4m3's largest value) and descale_s = 1/448
// keep small probabilities out of the subnormals, as an FP8 training recipe's amax history
// would. scale_o = 1 quantises an FP8 O. The graph must produce both amax outputs; nothing
// reads them.
std::shared_ptr<fe::graph::Graph> fp8_forward_graph(const Case& c, float scale, DType out_dtype) {
  auto graph = new_graph(c.dtype);
  auto q = add_tensor(*graph, "q", kQ, q_shape(c), c.layout);
  auto k = add_tensor(*graph, "k", kK, kv_shape(c), c.layout);
  auto v = add_tensor(*graph, "v", kV, kv_shape(c), c.layout);
  auto scale_input = [&](const char* name, Uid uid) {
    return graph->tensor(as_fp8_scalar(fe::graph::Tensor_attributes().set_name(name), uid));
  };
  auto options = fe::graph::SDPA_fp8_attributes().set_name("sdpa_fp8").set_generate_stats(true).set_attn_scale(scale);
  set_causal(options, c);
  auto [o, stats, amax_s, amax_o] =
      graph->sdpa_fp8(q, k, v, scale_input("descale_q", kDescaleQ), scale_input("descale_k", kDescaleK),
                      scale_input("descale_v", kDescaleV), scale_input("descale_s", kDescaleS),
                      scale_input("scale_s", kScaleS), scale_input("scale_o", kScaleO), options);
  set_output(*o, kO, q_shape(c), c.layout);
  o->set_data_type(fe_type(out_dtype));
  stats->set_output(true).set_uid(kStats).set_data_type(fe::DataType_t::FLOAT);
  as_fp8_scalar(amax_s->set_output(true), kAmaxS);
  as_fp8_scalar(amax_o->set_output(true), kAmaxO);
  return graph;
}

// The dtype cuDNN writes O in. FP8: bf16 like tileflash where cuDNN can (Blackwell with
// cuDNN 9.13 or newer, per cudnn-frontend's sdpa_support_surface.h); elsewhere, Hopper
// included, it requires an FP8 E4M3 O, coarser than tileflash's bf16 (the cross-check's
// FP8 tolerance allows for it).
DType output_dtype_of_graph(const Case& c, float scale) {
  if (c.dtype != DType::float8_e4m3) return c.dtype;
  return fp8_forward_graph(c, scale, DType::bfloat16)->validate().is_good() ? DType::bfloat16 : DType::float8_e4m3;
}

// The case's forward: fp8_forward_graph for FP8 inputs, else forward_graph (O in the inputs' dtype).
std::shared_ptr<fe::graph::Graph> any_forward_graph(const Case& c, float scale, DType out_dtype) {
  return c.dtype == DType::float8_e4m3 ? fp8_forward_graph(c, scale, out_dtype) : forward_graph(c, scale);
}

std::shared_ptr<fe::graph::Graph> backward_graph(const Case& c, float scale) {
  auto graph = new_graph(c.dtype);
  auto q = add_tensor(*graph, "q", kQ, q_shape(c), c.layout);
  auto k = add_tensor(*graph, "k", kK, kv_shape(c), c.layout);
  auto v = add_tensor(*graph, "v", kV, kv_shape(c), c.layout);
  auto o = add_tensor(*graph, "o", kO, q_shape(c), c.layout);
  auto dout = add_tensor(*graph, "dout", kDout, q_shape(c), c.layout);
  auto stats = stats_tensor(*graph, c);
  auto options = fe::graph::SDPA_backward_attributes().set_name("sdpa_backward").set_attn_scale(scale);
  set_causal(options, c);
  auto [dq, dk, dv] = graph->sdpa_backward(q, k, v, o, dout, stats, options);
  set_output(*dq, kDq, q_shape(c), c.layout);
  set_output(*dk, kDk, kv_shape(c), c.layout);
  set_output(*dv, kDv, kv_shape(c), c.layout);
  return graph;
}

class CudnnRunner final : public Runner {
 public:
  CudnnRunner() : device_(gpu::device_name()) {
    if (cudnnCreate(&handle_) != CUDNN_STATUS_SUCCESS) throw RuntimeError("cudnnCreate failed");
    cudnnSetStream(handle_, stream_.get());
  }
  ~CudnnRunner() override { cudnnDestroy(handle_); }

  std::string name() const override { return "cudnn"; }
  std::string device() const override { return device_; }

  std::string unsupported_reason(const Case& c) const override {
    const std::string fp8_reason = fp8_direction_reason(c);
    if (!fp8_reason.empty()) return fp8_reason;
    if (c.dtype != DType::float16 && c.dtype != DType::bfloat16 && c.dtype != DType::float8_e4m3)
      return "cuDNN SDPA takes fp16, bf16 or fp8";
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    try {
      auto check_graph = [&](fe::graph::Graph& g) {
        check_fe(g.validate(), "validate");
        check_fe(g.build_operation_graph(handle_), "build_operation_graph");
        check_fe(g.create_execution_plans({fe::HeurMode_t::A}), "create_execution_plans");
        check_fe(g.check_support(handle_), "check_support");
      };
      check_graph(*any_forward_graph(c, scale, output_dtype_of_graph(c, scale)));
      if (c.direction != Direction::forward) check_graph(*backward_graph(c, scale));
    } catch (const std::exception& e) {
      return e.what();
    }
    return {};
  }

  Measurement run(const Case& c, const HostInputs& in, bool keep_outputs) override {
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    const bool backward = c.direction != Direction::forward;
    const DType out_dtype = output_dtype_of_graph(c, scale);

    auto forward = any_forward_graph(c, scale, out_dtype);
    check_fe(forward->build(handle_, {fe::HeurMode_t::A}), "build (forward)");
    std::shared_ptr<fe::graph::Graph> backward_g;
    if (backward) {
      backward_g = backward_graph(c, scale);
      check_fe(backward_g->build(handle_, {fe::HeurMode_t::A}), "build (backward)");
    }
    std::int64_t forward_workspace = 0, backward_workspace = 0;
    check_fe(forward->get_workspace_size(forward_workspace), "get_workspace_size");
    if (backward) check_fe(backward_g->get_workspace_size(backward_workspace), "get_workspace_size");
    DeviceBuffer workspace(static_cast<std::size_t>(std::max(forward_workspace, backward_workspace)));

    const gpu::AttentionTensors t(c, in, out_dtype);
    const DeviceBuffer &q = t.q, &k = t.k, &v = t.v, &out = t.out, &stats = t.lse, &dout = t.dout, &dq = t.dq,
                       &dk = t.dk, &dv = t.dv;
    std::unordered_map<std::int64_t, void*> forward_pack{
        {kQ, q.get()}, {kK, k.get()}, {kV, v.get()}, {kO, out.get()}, {kStats, stats.get()}};
    // FP8: one float per scalar in kFp8Scalars' order (see fp8_forward_graph), the amaxes
    // overwritten.
    DeviceBuffer fp8_scalars;
    if (c.dtype == DType::float8_e4m3) {
      constexpr auto count = static_cast<std::int64_t>(std::size(kFp8Scalars));
      std::vector<float> scalars(count, 1.0f);
      scalars[3] = 1.0f / 448.0f;  // descale_s
      scalars[4] = 448.0f;         // scale_s
      fp8_scalars = gpu::upload(scalars, {1, 1, 1, count}, DType::float32, Layout::bshd);
      auto* values = static_cast<float*>(fp8_scalars.get());
      for (std::int64_t i = 0; i < count; ++i) forward_pack[kFp8Scalars[i]] = values + i;
    }
    std::unordered_map<std::int64_t, void*> backward_pack{
        {kQ, q.get()},       {kK, k.get()},   {kV, v.get()},   {kO, out.get()}, {kStats, stats.get()},
        {kDout, dout.get()}, {kDq, dq.get()}, {kDk, dk.get()}, {kDv, dv.get()}};
    auto run_forward = [&] { check_fe(forward->execute(handle_, forward_pack, workspace.get()), "execute (forward)"); };
    auto run_backward = [&] {
      check_fe(backward_g->execute(handle_, backward_pack, workspace.get()), "execute (backward)");
    };

    const std::function<void()> operation = timed_operation(c.direction, run_forward, run_backward);
    Measurement m;
    m.kernel = out_dtype == DType::float8_e4m3 ? "sdpa-o-fp8" : "sdpa";
    m.ms_median = median(gpu::time_on_stream(stream_.get(), operation, c.reps, c.warmup));
    m.peak_bytes = static_cast<std::int64_t>(workspace.bytes()) + gpu::probe_extra_memory(stream_.get(), operation);

    if (keep_outputs) m.outputs = t.download(c);
    return m;
  }

 private:
  std::string device_;
  gpu::Stream stream_;
  cudnnHandle_t handle_ = nullptr;
};

}  // namespace

std::unique_ptr<Runner> make_cudnn_runner() { return std::make_unique<CudnnRunner>(); }

}  // namespace tileflash::bench
