// The `cuda` backend: tileflash::forward/backward on device tensors.
#include <algorithm>

#include "bench.h"
#include "gpu_common.h"
#include "tileflash/attention.h"

namespace tileflash::bench {
namespace {

using gpu::DeviceBuffer;

class CudaRunner final : public Runner {
 public:
  CudaRunner() : device_(gpu::device_name()) {}

  std::string name() const override { return "cuda"; }
  std::string device() const override { return device_; }

  std::string unsupported_reason(const Case& c) const override {
    std::string reason = fp8_direction_reason(c);
    if (!reason.empty()) return reason;
    const BackwardParams params = make_params(c, nullptr);
    const bool ok = c.direction == Direction::forward ? is_supported(static_cast<const ForwardParams&>(params), &reason)
                                                      : is_supported(params, &reason);
    return ok ? std::string() : reason;
  }

  Measurement run(const Case& c, const HostInputs& in, bool keep_outputs) override {
    const gpu::AttentionTensors t(c, in);
    BackwardParams params = make_params(c, &t);
    params.cuda_stream = stream_.get();

    Measurement m;
    auto operation = [&] { m.kernel = run_library_operation(params, c.direction); };
    if (c.direction == Direction::backward) tileflash::forward(params);
    m.ms_median = median(gpu::time_on_stream(stream_.get(), operation, c.reps, c.warmup));
    m.peak_bytes = gpu::probe_extra_memory(stream_.get(), operation);

    if (keep_outputs) m.outputs = t.download(c);
    return m;
  }

 private:
  // Views over `t`'s buffers; without buffers, over a placeholder address, enough
  // for the selector, which reads only shapes, strides and dtypes.
  BackwardParams make_params(const Case& c, const gpu::AttentionTensors* t) const {
    static std::byte placeholder[64];
    auto data = [&](const DeviceBuffer& b) -> void* { return t ? b.get() : placeholder; };
    const gpu::AttentionTensors none;
    const gpu::AttentionTensors& s = t ? *t : none;
    const DeviceType cuda = DeviceType::cuda;
    BackwardParams p;
    p.q = make_view(data(s.q), q_shape(c), c.dtype, c.layout, cuda);
    p.k = make_view(data(s.k), kv_shape(c), c.dtype, c.layout, cuda);
    p.v = make_view(data(s.v), kv_shape(c), c.dtype, c.layout, cuda);
    p.out = make_view(data(s.out), q_shape(c), output_dtype(c), c.layout, cuda);
    p.lse = TensorView::contiguous(data(s.lse), DType::float32, {c.batch, c.heads_q, c.seq_q}, cuda);
    p.causal = c.causal;
    p.backend = tileflash::Backend::cuda;
    if (c.direction != Direction::forward) {
      p.dout = make_view(data(s.dout), q_shape(c), c.dtype, c.layout, cuda);
      p.dq = make_view(data(s.dq), q_shape(c), c.dtype, c.layout, cuda);
      p.dk = make_view(data(s.dk), kv_shape(c), c.dtype, c.layout, cuda);
      p.dv = make_view(data(s.dv), kv_shape(c), c.dtype, c.layout, cuda);
    }
    return p;
  }

  std::string device_;
  gpu::Stream stream_;
};

}  // namespace

std::unique_ptr<Runner> make_cuda_runner() { return std::make_unique<CudaRunner>(); }

}  // namespace tileflash::bench
