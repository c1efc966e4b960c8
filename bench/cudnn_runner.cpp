// The `cudnn` backend: cuDNN's fused flash attention (SDPA forward and backward)
// through the header-only cudnn-frontend graph API. q, k, v keep the case's memory
// layout: the graph is given their strides, so nothing is copied.
//
// peak_bytes: the workspace the graphs ask for (allocated here), plus whatever the
// memory probe of gpu_common.h sees cuDNN take on its own during one execution.
#include <cudnn.h>

#include <cmath>
#include <cudnn_frontend.h>
#include <unordered_map>

#include "bench.h"
#include "gpu_common.h"
#include "tileflash/error.h"

namespace tileflash::bench {
namespace {

namespace fe = cudnn_frontend;
using gpu::DeviceBuffer;

enum Uid : std::int64_t { kQ = 1, kK, kV, kO, kStats, kDout, kDq, kDk, kDv };

void check_fe(fe::error_t status, const char* what) {
  if (!status.is_good()) throw RuntimeError(std::string("cudnn-frontend ") + what + ": " + status.get_message());
}

fe::DataType_t fe_type(DType dtype) {
  return dtype == DType::float16 ? fe::DataType_t::HALF : fe::DataType_t::BFLOAT16;
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
    if (c.dtype != DType::float16 && c.dtype != DType::bfloat16) return "cuDNN SDPA takes fp16 or bf16";
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    try {
      auto check_graph = [&](fe::graph::Graph& g) {
        check_fe(g.validate(), "validate");
        check_fe(g.build_operation_graph(handle_), "build_operation_graph");
        check_fe(g.create_execution_plans({fe::HeurMode_t::A}), "create_execution_plans");
        check_fe(g.check_support(handle_), "check_support");
      };
      check_graph(*forward_graph(c, scale));
      if (c.direction != Direction::forward) check_graph(*backward_graph(c, scale));
    } catch (const std::exception& e) {
      return e.what();
    }
    return {};
  }

  Measurement run(const Case& c, const HostInputs& in, bool keep_outputs) override {
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    const bool backward = c.direction != Direction::forward;

    auto forward = forward_graph(c, scale);
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

    const gpu::AttentionTensors t(c, in);
    const DeviceBuffer &q = t.q, &k = t.k, &v = t.v, &out = t.out, &stats = t.lse, &dout = t.dout, &dq = t.dq,
                       &dk = t.dk, &dv = t.dv;
    std::unordered_map<std::int64_t, void*> forward_pack{
        {kQ, q.get()}, {kK, k.get()}, {kV, v.get()}, {kO, out.get()}, {kStats, stats.get()}};
    std::unordered_map<std::int64_t, void*> backward_pack{
        {kQ, q.get()},       {kK, k.get()},   {kV, v.get()},   {kO, out.get()}, {kStats, stats.get()},
        {kDout, dout.get()}, {kDq, dq.get()}, {kDk, dk.get()}, {kDv, dv.get()}};
    auto run_forward = [&] { check_fe(forward->execute(handle_, forward_pack, workspace.get()), "execute (forward)"); };
    auto run_backward = [&] {
      check_fe(backward_g->execute(handle_, backward_pack, workspace.get()), "execute (backward)");
    };

    const std::function<void()> operation = timed_operation(c.direction, run_forward, run_backward);
    Measurement m;
    m.kernel = "sdpa";
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
