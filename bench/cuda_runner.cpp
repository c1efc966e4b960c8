// The `cuda` backend: tileflash::forward/backward on device tensors.
#include <algorithm>

#include "bench.h"
#include "gpu_common.h"
#include "tileflash/attention.h"

namespace tileflash::bench {
namespace {

using gpu::DeviceBuffer;

struct DeviceTensors {
  DeviceBuffer q, k, v, out, lse, dout, dq, dk, dv;
};

class CudaRunner final : public Runner {
 public:
  CudaRunner() : device_(gpu::device_name()) {}

  std::string name() const override { return "cuda"; }
  std::string device() const override { return device_; }

  std::string unsupported_reason(const Case& c) const override {
    std::string reason;
    const BackwardParams params = make_params(c, nullptr);
    const bool ok = c.direction == Direction::forward ? is_supported(static_cast<const ForwardParams&>(params), &reason)
                                                      : is_supported(params, &reason);
    return ok ? std::string() : reason;
  }

  Measurement run(const Case& c, const HostInputs& in, bool keep_outputs) override {
    const std::size_t element = dtype_size(c.dtype);
    DeviceTensors t;
    t.q = gpu::upload(in.q, q_shape(c), c.dtype, c.layout);
    t.k = gpu::upload(in.k, kv_shape(c), c.dtype, c.layout);
    t.v = gpu::upload(in.v, kv_shape(c), c.dtype, c.layout);
    t.out = gpu::poisoned(q_shape(c).numel() * element);
    t.lse = gpu::poisoned(c.batch * c.heads_q * c.seq_q * sizeof(float));
    if (c.direction != Direction::forward) {
      t.dout = gpu::upload(in.dout, q_shape(c), c.dtype, c.layout);
      t.dq = gpu::poisoned(q_shape(c).numel() * element);
      t.dk = gpu::poisoned(kv_shape(c).numel() * element);
      t.dv = gpu::poisoned(kv_shape(c).numel() * element);
    }
    BackwardParams params = make_params(c, &t);
    params.cuda_stream = stream_.get();

    Measurement m;
    auto operation = [&] { m.kernel = run_library_operation(params, c.direction); };
    if (c.direction == Direction::backward) tileflash::forward(params);
    m.ms_median = median(gpu::time_on_stream(stream_.get(), operation, c.reps, c.warmup));
    m.peak_bytes = gpu::probe_extra_memory(stream_.get(), operation);

    if (keep_outputs) {
      if (c.direction != Direction::backward) m.outputs.out = gpu::download(t.out, q_shape(c), c.dtype, c.layout);
      if (c.direction != Direction::forward) {
        m.outputs.dq = gpu::download(t.dq, q_shape(c), c.dtype, c.layout);
        m.outputs.dk = gpu::download(t.dk, kv_shape(c), c.dtype, c.layout);
        m.outputs.dv = gpu::download(t.dv, kv_shape(c), c.dtype, c.layout);
      }
    }
    return m;
  }

 private:
  // Views over `t`'s buffers; without buffers, over a placeholder address, enough
  // for the selector, which reads only shapes, strides and dtypes.
  BackwardParams make_params(const Case& c, DeviceTensors* t) const {
    static std::byte placeholder[64];
    auto data = [&](const DeviceBuffer& b) -> void* { return t ? b.get() : placeholder; };
    DeviceTensors none;
    const DeviceTensors& s = t ? *t : none;
    const DeviceType cuda = DeviceType::cuda;
    BackwardParams p;
    p.q = make_view(data(s.q), q_shape(c), c.dtype, c.layout, cuda);
    p.k = make_view(data(s.k), kv_shape(c), c.dtype, c.layout, cuda);
    p.v = make_view(data(s.v), kv_shape(c), c.dtype, c.layout, cuda);
    p.out = make_view(data(s.out), q_shape(c), c.dtype, c.layout, cuda);
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
