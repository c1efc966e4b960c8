// Test utilities: one attention problem with random inputs, its outputs, and the
// check of a backend against the fp64 reference under the tolerance rule.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/accuracy.h"
#include "common/host_tensor.h"
#include "tileflash/params.h"

namespace tileflash::testing {

struct CaseConfig {
  std::int64_t batch = 1, seq_q = 16, seq_k = 16;
  std::int64_t heads_q = 2, heads_kv = 2, head_dim = 32;
  DType dtype = DType::float32;
  // Memory layout (batch, heads, seq, dim), passed as transposed views.
  bool heads_first = false;
  // Varlen when non-empty: one length per sequence (batch is then their count);
  // seq_q/seq_k are ignored.
  std::vector<std::int32_t> seqlens_q, seqlens_k;
  bool causal = false;
  std::int64_t window_left = -1, window_right = -1;
  std::optional<float> softmax_scale;
  float softcap = 0.0f;
  enum class Bias { none, full, per_head, per_batch } bias = Bias::none;
  DType bias_dtype = DType::float32;
  enum class Alibi { none, per_head, per_batch_head } alibi = Alibi::none;
  float dropout_p = 0.0f;
  std::uint64_t dropout_seed = 0, dropout_offset = 0;
  bool with_lse = true;
  double input_stddev = 1.0;  // of q and k; large values give large logits
  // FP8 inputs (dtype float8_e4m3): the output's dtype, and the per-tensor descales passed
  // as float32 tensors (0: not passed, i.e. 1).
  DType fp8_out_dtype = DType::bfloat16;
  float q_descale = 0.0f, k_descale = 0.0f, v_descale = 0.0f;
  int num_threads = 0;

  std::string describe() const;
};

// The outputs of one run, poisoned (NaN) until written.
struct AttentionOutputs {
  HostTensor out, lse, dq, dk, dv;
};

class AttentionCase {
 public:
  AttentionCase(const CaseConfig& config, std::uint64_t seed);

  const CaseConfig& config() const { return config_; }
  // The same inputs in another dtype (bias too when it uses the q dtype); fp64 copies
  // are exact, so the reference sees what the low-precision kernel saw. FP8 inputs are
  // multiplied by their descales on the way (the copy has none).
  AttentionCase converted(DType dtype) const;
  // The dtype of out: q's, or fp8_out_dtype for FP8 inputs.
  DType out_dtype() const;

  AttentionOutputs new_outputs() const;
  ForwardParams forward_params(AttentionOutputs& outputs, Backend backend);
  // Uses outputs.out and outputs.lse (from a forward) as inputs; writes dq, dk, dv.
  BackwardParams backward_params(AttentionOutputs& outputs, Backend backend);

  HostTensor q, k, v, dout, bias, alibi_slopes, cu_seqlens_q, cu_seqlens_k;
  HostTensor q_descale, k_descale, v_descale;  // float32 (1), when the config gives them

 private:
  AttentionCase() = default;
  TensorView layout_view(HostTensor& t) const;
  HostTensor new_like_q() const;
  HostTensor new_like_k() const;

  CaseConfig config_;
  std::int64_t total_q_ = 0, total_k_ = 0, max_q_ = 0, max_k_ = 0;
};

// Runs `backend` and the same-precision standard attention on `c`, the fp64 reference on
// its fp64 copy, and checks out and lse (forward) and dq, dk, dv (backward) with the
// tolerance rule; every output element must have been written (no NaN left).
void expect_forward_matches_reference(AttentionCase& c, Backend backend);
void expect_backward_matches_reference(AttentionCase& c, Backend backend);

}  // namespace tileflash::testing
