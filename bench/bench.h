// tileflash-bench: the pieces every benchmark backend shares.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "tileflash/params.h"
#include "tileflash/tensor.h"

namespace tileflash::bench {

enum class Direction { forward, backward, forward_backward };
enum class Layout { bshd, bhsd };

const char* direction_name(Direction direction);
const char* layout_name(Layout layout);
const char* short_dtype_name(DType dtype);

// One point of a sweep.
struct Case {
  DType dtype = DType::bfloat16;
  std::int64_t batch = 1, heads_q = 1, heads_kv = 1, seq_q = 1, seq_k = 1, head_dim = 64;
  bool causal = false;
  Direction direction = Direction::forward;
  Layout layout = Layout::bshd;
  int threads = 0;  // CPU backends; 0 = all hardware threads
  int reps = 10;
  int warmup = 3;
};

// The dtype of out: the inputs' dtype, except bfloat16 for FP8 inputs (tileflash's FP8
// forward writes a 16-bit output; backends that write another say so, see cudnn_runner.cpp).
DType output_dtype(const Case& c);

// Empty, or why the case cannot run on any backend: FP8 inputs have a forward only in
// tileflash, so no backward with them is timed (cuDNN's would have nothing to compare with).
std::string fp8_direction_reason(const Case& c);

// Query/key pairs that take part in the product: all of them, or for causal
// masking those on or below the bottom-right aligned diagonal. For seq_q == seq_k
// this is taken as exactly half, the convention of ../shared/ANCHORS.md and the
// FlashAttention papers.
double attended_pairs(const Case& c);
// Forward 4 * pairs * head_dim per (batch, head); backward 2.5x that.
double case_flops(const Case& c);

// Inputs shared by every backend of one case: float32 values in logical
// (batch, seq, heads, head_dim) order, converted by each backend to its dtype and layout
// (for FP8 rounded to the nearest e4m3 value, so every backend gets the same bytes).
struct HostInputs {
  std::vector<float> q, k, v, dout;
};

// What a backend computed, in the same logical order, for the cross-backend check:
// forward fills out; backward fills dq, dk, dv; forward+backward all four.
struct HostOutputs {
  std::vector<float> out, dq, dk, dv;
};

struct Measurement {
  std::string kernel;
  double ms_median = 0.0;
  // Bytes the operation itself allocated beyond its inputs and outputs (how each
  // backend measures this is documented at its definition and in bench/README.md).
  std::int64_t peak_bytes = 0;
  HostOutputs outputs;
};

// Raised by a backend whose working memory does not fit the device; the CLI
// records the point with the bytes it would have needed and no time.
class OutOfMemory : public std::runtime_error {
 public:
  OutOfMemory(const std::string& what, std::int64_t required_bytes)
      : std::runtime_error(what), required_bytes_(required_bytes) {}
  std::int64_t required_bytes() const { return required_bytes_; }

 private:
  std::int64_t required_bytes_;
};

class Runner {
 public:
  virtual ~Runner() = default;
  virtual std::string name() const = 0;
  virtual std::string device() const = 0;
  // Empty when this runner can time the case, else the reason it cannot.
  virtual std::string unsupported_reason(const Case& c) const = 0;
  // Times the case (median over c.reps after c.warmup untimed runs); fills
  // outputs when `keep_outputs` is set.
  virtual Measurement run(const Case& c, const HostInputs& inputs, bool keep_outputs) = 0;
};

// Runners by the names of the --backends option. The GPU ones exist only in a
// CUDA build (see bench/CMakeLists.txt); make_runner throws for unknown names
// and for backends this build lacks.
std::unique_ptr<Runner> make_runner(const std::string& name);
std::vector<std::string> available_runner_names();

std::unique_ptr<Runner> make_cpu_runner(tileflash::Backend backend);
#ifdef TILEFLASH_BENCH_CUDA
std::unique_ptr<Runner> make_cuda_runner();
std::unique_ptr<Runner> make_cublas_standard_runner();
#endif
#ifdef TILEFLASH_BENCH_CUDNN
std::unique_ptr<Runner> make_cudnn_runner();
#endif

// One operation of `direction` through tileflash's public API (fwd+bwd runs both);
// returns the kernel the selector chose (the backward's for fwd+bwd).
std::string run_library_operation(const tileflash::BackwardParams& params, Direction direction);

// What a baseline times for a direction, from its forward and backward passes. For bwd
// the forward runs once here, untimed: the backward needs its outputs.
std::function<void()> timed_operation(Direction direction, std::function<void()> forward,
                                      std::function<void()> backward);

// Median of a set of timings (copied: the caller's order is kept).
double median(std::vector<double> values);

}  // namespace tileflash::bench
