// The `reference` and `cpu` backends: tileflash::forward/backward on host tensors.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <limits>

#include "allocation_counter.h"
#include "bench.h"
#include "host_data.h"
#include "tileflash/attention.h"

namespace tileflash::bench {
namespace {

// Host storage of one case in the case's dtype and layout.
struct HostTensors {
  std::vector<std::byte> q, k, v, out, dout, dq, dk, dv;
  std::vector<float> lse;
};

class CpuRunner final : public Runner {
 public:
  explicit CpuRunner(tileflash::Backend backend) : backend_(backend), device_(cpu_model_name()) {}

  std::string name() const override { return backend_name(backend_); }
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
    HostTensors t;
    t.q = pack(in.q, q_shape(c), c.dtype, c.layout);
    t.k = pack(in.k, kv_shape(c), c.dtype, c.layout);
    t.v = pack(in.v, kv_shape(c), c.dtype, c.layout);
    t.out.assign(q_shape(c).numel() * dtype_size(output_dtype(c)), std::byte{0xFF});  // NaN in every float format
    t.lse.assign(c.batch * c.heads_q * c.seq_q, std::numeric_limits<float>::quiet_NaN());
    if (c.direction != Direction::forward) {
      t.dout = pack(in.dout, q_shape(c), c.dtype, c.layout);
      t.dq.assign(t.q.size(), std::byte{0xFF});
      t.dk.assign(t.k.size(), std::byte{0xFF});
      t.dv.assign(t.v.size(), std::byte{0xFF});
    }
    const BackwardParams params = make_params(c, &t);

    Measurement m;
    auto operation = [&] { m.kernel = run_library_operation(params, c.direction); };
    // The backward alone needs the forward's out and lse.
    if (c.direction == Direction::backward) tileflash::forward(params);

    // The high-water mark spans warm-up and timed runs, so buffers the library grows
    // on its first call and keeps for later ones are counted too.
    const std::int64_t live_before = allocation_counter::live_bytes();
    allocation_counter::reset_peak();
    for (int i = 0; i < c.warmup; ++i) operation();
    std::vector<double> times;
    for (int i = 0; i < std::max(c.reps, 1); ++i) {
      const auto start = std::chrono::steady_clock::now();
      operation();
      const auto stop = std::chrono::steady_clock::now();
      times.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
    }
    m.peak_bytes = allocation_counter::peak_bytes() - live_before;
    m.ms_median = median(times);

    if (keep_outputs) {
      if (c.direction != Direction::backward)
        m.outputs.out = unpack(t.out.data(), q_shape(c), output_dtype(c), c.layout);
      if (c.direction != Direction::forward) {
        m.outputs.dq = unpack(t.dq.data(), q_shape(c), c.dtype, c.layout);
        m.outputs.dk = unpack(t.dk.data(), kv_shape(c), c.dtype, c.layout);
        m.outputs.dv = unpack(t.dv.data(), kv_shape(c), c.dtype, c.layout);
      }
    }
    return m;
  }

 private:
  // Views over `t`'s buffers; without buffers, over a placeholder address, enough
  // for the selector, which reads only shapes, strides and dtypes.
  BackwardParams make_params(const Case& c, HostTensors* t) const {
    static std::byte placeholder[64];
    HostTensors none;
    HostTensors& s = t ? *t : none;
    auto data = [&](std::vector<std::byte>& b) -> void* { return t ? static_cast<void*>(b.data()) : placeholder; };
    BackwardParams p;
    p.q = make_view(data(s.q), q_shape(c), c.dtype, c.layout, DeviceType::cpu);
    p.k = make_view(data(s.k), kv_shape(c), c.dtype, c.layout, DeviceType::cpu);
    p.v = make_view(data(s.v), kv_shape(c), c.dtype, c.layout, DeviceType::cpu);
    p.out = make_view(data(s.out), q_shape(c), output_dtype(c), c.layout, DeviceType::cpu);
    p.lse = TensorView::contiguous(t ? static_cast<void*>(s.lse.data()) : placeholder, DType::float32,
                                   {c.batch, c.heads_q, c.seq_q});
    p.causal = c.causal;
    p.backend = backend_;
    p.num_threads = c.threads;
    if (c.direction != Direction::forward) {
      p.dout = make_view(data(s.dout), q_shape(c), c.dtype, c.layout, DeviceType::cpu);
      p.dq = make_view(data(s.dq), q_shape(c), c.dtype, c.layout, DeviceType::cpu);
      p.dk = make_view(data(s.dk), kv_shape(c), c.dtype, c.layout, DeviceType::cpu);
      p.dv = make_view(data(s.dv), kv_shape(c), c.dtype, c.layout, DeviceType::cpu);
    }
    return p;
  }

  tileflash::Backend backend_;
  std::string device_;
};

}  // namespace

std::unique_ptr<Runner> make_cpu_runner(tileflash::Backend backend) { return std::make_unique<CpuRunner>(backend); }

}  // namespace tileflash::bench
