// Every rule of src/api/validate.cpp and of the selector (src/api/attention.cpp), fed
// bad input: the call must throw tileflash::Error naming the argument, with a message
// that names the rule, and must leave every output exactly as it was.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "tileflash/tileflash.h"

namespace tileflash {
namespace {

std::vector<float> random_floats(std::size_t count, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(count);
  for (auto& x : values) x = normal(rng);
  return values;
}

// A valid call with every optional input present, plus spare buffers the broken
// variants point into. Sizes are odd on purpose; values are fresh random numbers.
struct Call {
  static constexpr std::int64_t batch = 2, seq_q = 37, seq_k = 45, heads_q = 4, heads_kv = 2, head_dim = 24;
  std::mt19937 rng{std::random_device{}()};
  std::vector<float> q = random_floats(batch * seq_q * heads_q * head_dim, rng);
  std::vector<float> k = random_floats(batch * seq_k * heads_kv * head_dim, rng);
  std::vector<float> v = random_floats(batch * seq_k * heads_kv * head_dim, rng);
  std::vector<float> dout = random_floats(q.size(), rng);
  std::vector<float> bias = random_floats(batch * heads_q * seq_q * seq_k, rng);
  std::vector<float> alibi = random_floats(heads_q, rng);
  // Outputs start as random values so "untouched" is a real comparison.
  std::vector<float> out = random_floats(q.size(), rng);
  std::vector<float> lse = random_floats(batch * heads_q * seq_q, rng);
  std::vector<float> dq = random_floats(q.size(), rng), dk = random_floats(k.size(), rng),
                     dv = random_floats(v.size(), rng);
  // Varlen: the same rows seen as packed sequences of lengths {15, 22} (q) and {20, 25} (k);
  // spare_offsets is scratch for the broken variants.
  std::vector<std::int32_t> cu_q{0, 15, 37}, cu_k{0, 20, 45}, spare_offsets{0, 15, 37};

  BackwardParams backward() {
    BackwardParams p;
    p.q = TensorView::contiguous(q.data(), DType::float32, {batch, seq_q, heads_q, head_dim});
    p.k = TensorView::contiguous(k.data(), DType::float32, {batch, seq_k, heads_kv, head_dim});
    p.v = TensorView::contiguous(v.data(), DType::float32, {batch, seq_k, heads_kv, head_dim});
    p.out = TensorView::contiguous(out.data(), DType::float32, {batch, seq_q, heads_q, head_dim});
    p.lse = TensorView::contiguous(lse.data(), DType::float32, {batch, heads_q, seq_q});
    p.bias = TensorView::contiguous(bias.data(), DType::float32, {batch, heads_q, seq_q, seq_k});
    p.alibi_slopes = TensorView::contiguous(alibi.data(), DType::float32, {heads_q});
    p.dout = TensorView::contiguous(dout.data(), DType::float32, {batch, seq_q, heads_q, head_dim});
    p.dq = TensorView::contiguous(dq.data(), DType::float32, {batch, seq_q, heads_q, head_dim});
    p.dk = TensorView::contiguous(dk.data(), DType::float32, {batch, seq_k, heads_kv, head_dim});
    p.dv = TensorView::contiguous(dv.data(), DType::float32, {batch, seq_k, heads_kv, head_dim});
    p.causal = true;
    p.softcap = 30.0f;
    p.dropout_p = 0.1f;
    p.dropout_seed = 7;
    p.backend = Backend::reference;
    return p;
  }

  ForwardParams forward() { return backward(); }

  // The same buffers as a varlen call: (total, heads, head_dim) with offsets.
  BackwardParams varlen() {
    BackwardParams p = backward();
    auto packed = [](const TensorView& t) {
      return TensorView::contiguous(t.data, t.dtype, {t.shape[0] * t.shape[1], t.shape[2], t.shape[3]});
    };
    for (TensorView* t : {&p.q, &p.k, &p.v, &p.out, &p.dout, &p.dq, &p.dk, &p.dv}) *t = packed(*t);
    p.lse = TensorView::contiguous(lse.data(), DType::float32, {heads_q, batch * seq_q});
    p.cu_seqlens_q = TensorView::contiguous(cu_q.data(), DType::int32, {batch + 1});
    p.cu_seqlens_k = TensorView::contiguous(cu_k.data(), DType::int32, {batch + 1});
    p.bias = TensorView::contiguous(bias.data(), DType::float32, {1, heads_q, 22, 25});
    return p;
  }

  std::vector<std::vector<float>> outputs() const { return {out, lse, dq, dk, dv}; }
};

enum class Entry { forward, backward, varlen_forward, varlen_backward };

struct Rule {
  const char* name;
  Entry entry;
  std::function<void(BackwardParams&, Call&)> mutate;
  const char* argument;
  const char* message;  // a part of the rule's wording that must appear in what()
};

// Views with device = cuda and made-up addresses: validation reads only the view.
void move_to_cuda(BackwardParams& p) {
  for (TensorView* t : {&p.q, &p.k, &p.v, &p.out, &p.lse, &p.dout, &p.dq, &p.dk, &p.dv, &p.bias, &p.alibi_slopes,
                        &p.cu_seqlens_q, &p.cu_seqlens_k, &p.q_descale, &p.k_descale, &p.v_descale})
    if (t->defined()) t->device = DeviceType::cuda;
  p.backend = Backend::automatic;
}

// FP8 inputs with a bfloat16 output (views only: validation reads no element).
void as_fp8(BackwardParams& p) {
  for (TensorView* t : {&p.q, &p.k, &p.v}) t->dtype = DType::float8_e4m3;
  p.out.dtype = DType::bfloat16;
}

const std::vector<Rule>& rules() {
  using P = BackwardParams;
  const auto fwd = Entry::forward, bwd = Entry::backward, vfwd = Entry::varlen_forward, vbwd = Entry::varlen_backward;
  static const std::vector<Rule> all = {
      // Required tensors.
      {"q_missing", fwd, [](P& p, Call&) { p.q = {}; }, "q", "is required"},
      {"k_missing", fwd, [](P& p, Call&) { p.k = {}; }, "k", "is required"},
      {"v_missing", fwd, [](P& p, Call&) { p.v = {}; }, "v", "is required"},
      {"out_missing", fwd, [](P& p, Call&) { p.out = {}; }, "out", "is required"},
      // Structural checks of every view.
      {"rank_above_4", fwd, [](P& p, Call&) { p.k.rank = 5; }, "k", "rank must be between 1 and 4"},
      {"negative_shape", fwd, [](P& p, Call&) { p.v.shape[1] = -3; }, "v", "shape entries must be non-negative"},
      {"negative_stride", fwd, [](P& p, Call&) { p.q.stride[0] = -1; }, "q", "strides must be non-negative"},
      {"null_data", fwd, [](P& p, Call&) { p.k.data = nullptr; }, "k", "data pointer is null"},
      {"cpu_device_index", fwd, [](P& p, Call&) { p.out.device_index = 1; }, "out", "device_index 0"},
      // Dtypes.
      {"q_dtype_int32", fwd, [](P& p, Call&) { p.q.dtype = DType::int32; }, "q",
       "dtype must be float16, bfloat16, float32, float64 or float8_e4m3fn"},
      {"k_dtype_mismatch", fwd, [](P& p, Call&) { p.k.dtype = DType::float16; }, "k", "dtype must match q"},
      {"v_dtype_mismatch", fwd, [](P& p, Call&) { p.v.dtype = DType::bfloat16; }, "v", "dtype must match q"},
      {"out_dtype_mismatch", fwd, [](P& p, Call&) { p.out.dtype = DType::float64; }, "out", "dtype must match q"},
      // Devices.
      {"k_other_device", fwd, [](P& p, Call&) { p.k.device = DeviceType::cuda; }, "k", "same device as q"},
      {"v_other_device", fwd, [](P& p, Call&) { p.v.device = DeviceType::cuda; }, "v", "same device as q"},
      {"out_other_device", fwd, [](P& p, Call&) { p.out.device = DeviceType::cuda; }, "out", "same device as q"},
      // Ranks and sizes.
      {"q_rank_3_without_offsets", fwd,
       [](P& p, Call& c) { p.q = TensorView::contiguous(c.q.data(), DType::float32, {74, 4, 24}); }, "q",
       "must have rank 4"},
      {"k_rank", fwd, [](P& p, Call& c) { p.k = TensorView::contiguous(c.k.data(), DType::float32, {90, 2, 24}); },
       "k", "must have rank 4"},
      {"v_rank", fwd, [](P& p, Call& c) { p.v = TensorView::contiguous(c.v.data(), DType::float32, {90, 2, 24}); },
       "v", "must have rank 4"},
      {"head_dim_zero", fwd, [](P& p, Call&) { p.q.shape[3] = 0; }, "q", "head_dim must be between 1 and 256"},
      {"head_dim_above_256", fwd, [](P& p, Call&) { p.q.shape[3] = 264; }, "q", "head_dim must be between 1 and 256"},
      {"k_head_dim", fwd, [](P& p, Call&) { p.k.shape[3] = 16; }, "k", "head_dim must equal q's"},
      {"v_head_dim", fwd, [](P& p, Call&) { p.v.shape[3] = 16; }, "v", "head_dim must equal q's"},
      {"heads_q_zero", fwd, [](P& p, Call&) { p.q.shape[2] = 0; }, "q", "heads must be at least 1"},
      {"heads_kv_zero", fwd, [](P& p, Call&) { p.k.shape[2] = 0; }, "k", "heads must be at least 1"},
      {"gqa_not_divisible", fwd, [](P& p, Call&) { p.k.shape[2] = 3; p.v.shape[2] = 3; }, "k",
       "must be a multiple of heads_kv"},
      {"v_heads", fwd, [](P& p, Call&) { p.v.shape[2] = 1; }, "v", "heads must equal k's"},
      {"k_batch", fwd, [](P& p, Call&) { p.k.shape[0] = 1; }, "k", "batch must equal q's"},
      {"v_batch", fwd, [](P& p, Call&) { p.v.shape[0] = 1; }, "v", "batch must equal q's"},
      {"v_seq", fwd, [](P& p, Call&) { p.v.shape[1] = 44; }, "v", "seq must equal k's"},
      {"out_shape", fwd, [](P& p, Call&) { p.out.shape[1] = 36; }, "out", "expected shape"},
      // Strides.
      {"q_head_dim_strided", fwd, [](P& p, Call&) { p.q.stride[3] = 2; }, "q", "must have stride 1"},
      {"k_head_dim_strided", fwd, [](P& p, Call&) { p.k.stride[3] = 2; }, "k", "must have stride 1"},
      {"v_head_dim_strided", fwd, [](P& p, Call&) { p.v.stride[3] = 2; }, "v", "must have stride 1"},
      {"out_head_dim_strided", fwd, [](P& p, Call&) { p.out.stride[3] = 2; }, "out", "must have stride 1"},
      {"out_broadcast", fwd, [](P& p, Call&) { p.out.stride[1] = 0; }, "out", "may not broadcast"},
      {"lse_broadcast", fwd, [](P& p, Call&) { p.lse.stride[2] = 0; }, "lse", "may not broadcast"},
      // Scalars.
      {"scale_nan", fwd, [](P& p, Call&) { p.softmax_scale = std::numeric_limits<float>::quiet_NaN(); },
       "softmax_scale", "must be finite"},
      {"scale_inf", fwd, [](P& p, Call&) { p.softmax_scale = std::numeric_limits<float>::infinity(); },
       "softmax_scale", "must be finite"},
      {"window_left", fwd, [](P& p, Call&) { p.window_left = -2; }, "window_left", "must be -1 (unbounded) or non-negative"},
      {"window_right", fwd, [](P& p, Call&) { p.window_right = -5; }, "window_right",
       "must be -1 (unbounded) or non-negative"},
      {"softcap_negative", fwd, [](P& p, Call&) { p.softcap = -1.0f; }, "softcap", "must be finite and >= 0"},
      {"softcap_inf", fwd, [](P& p, Call&) { p.softcap = std::numeric_limits<float>::infinity(); }, "softcap",
       "must be finite and >= 0"},
      {"dropout_one", fwd, [](P& p, Call&) { p.dropout_p = 1.0f; }, "dropout_p", "must lie in [0, 1)"},
      {"dropout_negative", fwd, [](P& p, Call&) { p.dropout_p = -0.25f; }, "dropout_p", "must lie in [0, 1)"},
      {"dropout_nan", fwd, [](P& p, Call&) { p.dropout_p = std::numeric_limits<float>::quiet_NaN(); }, "dropout_p",
       "must lie in [0, 1)"},
      {"threads_negative", fwd, [](P& p, Call&) { p.num_threads = -1; }, "num_threads", "must be >= 0"},
      // Bias.
      {"bias_device", fwd, [](P& p, Call&) { p.bias.device = DeviceType::cuda; }, "bias", "same device as q"},
      {"bias_dtype", fwd, [](P& p, Call&) { p.bias.dtype = DType::float16; }, "bias", "dtype must be float32 or q's"},
      {"bias_rank", fwd,
       [](P& p, Call& c) { p.bias = TensorView::contiguous(c.bias.data(), DType::float32, {37, 45}); }, "bias",
       "must have rank 4"},
      {"bias_dim0", fwd, [](P& p, Call&) { p.bias.shape[0] = 3; }, "bias", "dimension 0 must be 1 or batch"},
      {"bias_dim1", fwd, [](P& p, Call&) { p.bias.shape[1] = 2; }, "bias", "dimension 1 must be 1 or heads_q"},
      {"bias_seq_q", fwd, [](P& p, Call&) { p.bias.shape[2] = 36; }, "bias", "dimensions 2 and 3 must be (37, 45)"},
      {"bias_seq_k", fwd, [](P& p, Call&) { p.bias.shape[3] = 1; }, "bias", "dimensions 2 and 3 must be (37, 45)"},
      // ALiBi.
      {"alibi_device", fwd, [](P& p, Call&) { p.alibi_slopes.device = DeviceType::cuda; }, "alibi_slopes",
       "same device as q"},
      {"alibi_dtype", fwd, [](P& p, Call&) { p.alibi_slopes.dtype = DType::float64; }, "alibi_slopes",
       "dtype must be float32"},
      {"alibi_shape", fwd, [](P& p, Call&) { p.alibi_slopes.shape[0] = 2; }, "alibi_slopes", "expected shape (4) or (2, 4)"},
      {"alibi_batch_shape", fwd,
       [](P& p, Call& c) { p.alibi_slopes = TensorView::contiguous(c.alibi.data(), DType::float32, {1, 4}); },
       "alibi_slopes", "expected shape (4) or (2, 4)"},
      // lse.
      {"lse_device", fwd, [](P& p, Call&) { p.lse.device = DeviceType::cuda; }, "lse", "same device as q"},
      {"lse_dtype", fwd, [](P& p, Call&) { p.lse.dtype = DType::float16; }, "lse", "dtype must be float32"},
      {"lse_shape", fwd, [](P& p, Call&) { p.lse.shape[2] = 45; }, "lse", "expected shape (2, 4, 37)"},
      // Backend against device.
      {"reference_on_cuda", fwd, [](P& p, Call&) { move_to_cuda(p); p.backend = Backend::reference; }, "backend",
       "runs on cpu tensors"},
      {"cpu_on_cuda", fwd, [](P& p, Call&) { move_to_cuda(p); p.backend = Backend::cpu; }, "backend",
       "runs on cpu tensors"},
      {"cuda_on_cpu", fwd, [](P& p, Call&) { p.backend = Backend::cuda; }, "backend", "cuda runs on cuda tensors"},
      // Selector.
      {"cpu_float64", fwd,
       [](P& p, Call&) {
         for (TensorView* t : {&p.q, &p.k, &p.v, &p.out}) t->dtype = DType::float64;
         p.bias = {};
         p.backend = Backend::cpu;
       },
       "q", "supported by the reference backend only"},
      {"cuda_float32", fwd, [](P& p, Call&) { move_to_cuda(p); }, "q", "is not supported on cuda"},
      {"cuda_float64", fwd,
       [](P& p, Call&) {
         move_to_cuda(p);
         for (TensorView* t : {&p.q, &p.k, &p.v, &p.out}) t->dtype = DType::float64;
         p.bias = {};
       },
       "q", "is not supported on cuda"},

      // FP8 inputs.
      {"fp8_out_dtype", fwd,
       [](P& p, Call&) {
         for (TensorView* t : {&p.q, &p.k, &p.v}) t->dtype = DType::float8_e4m3;
       },
       "out", "must be bfloat16 or float16 for float8_e4m3fn inputs"},
      {"descale_without_fp8", fwd,
       [](P& p, Call& c) { p.q_descale = TensorView::contiguous(c.alibi.data(), DType::float32, {1}); }, "q_descale",
       "applies to float8_e4m3fn inputs only"},
      {"descale_count", fwd,
       [](P& p, Call& c) {
         as_fp8(p);
         p.k_descale = TensorView::contiguous(c.alibi.data(), DType::float32, {4});
       },
       "k_descale", "must hold exactly one element"},
      {"descale_dtype", fwd,
       [](P& p, Call& c) {
         as_fp8(p);
         p.v_descale = TensorView::contiguous(c.cu_q.data(), DType::int32, {1});
       },
       "v_descale", "dtype must be float32"},
      {"descale_device", fwd,
       [](P& p, Call& c) {
         as_fp8(p);
         p.v_descale = TensorView::contiguous(c.alibi.data(), DType::float32, {1}, DeviceType::cuda);
       },
       "v_descale", "same device as q"},
      {"backward_fp8", bwd, [](P& p, Call&) { as_fp8(p); }, "q", "supported by the forward only"},
      {"cpu_fp8", fwd,
       [](P& p, Call&) {
         as_fp8(p);
         p.backend = Backend::cpu;
       },
       "q", "supported by the reference backend only"},

      // Varlen.
      {"cu_seqlens_k_missing", vfwd, [](P& p, Call&) { p.cu_seqlens_k = {}; }, "cu_seqlens_k",
       "must be given together"},
      {"cu_seqlens_q_missing", vfwd, [](P& p, Call&) { p.cu_seqlens_q = {}; }, "cu_seqlens_q",
       "must be given together"},
      {"varlen_rank", vfwd,
       [](P& p, Call& c) {
         p.q = TensorView::contiguous(c.q.data(), DType::float32, {2, 37, 4, 24});
       },
       "q", "must have rank 3"},
      {"varlen_v_length", vfwd, [](P& p, Call&) { p.v.shape[0] = 44; }, "v", "packed length must equal k's"},
      {"cu_seqlens_dtype", vfwd, [](P& p, Call&) { p.cu_seqlens_q.dtype = DType::float32; }, "cu_seqlens_q",
       "dtype must be int32"},
      {"cu_seqlens_rank", vfwd,
       [](P& p, Call& c) { p.cu_seqlens_k = TensorView::contiguous(c.cu_k.data(), DType::int32, {1, 3}); },
       "cu_seqlens_k", "must be a 1-D tensor of batch + 1 offsets"},
      {"cu_seqlens_empty", vfwd, [](P& p, Call&) { p.cu_seqlens_q.shape[0] = 0; }, "cu_seqlens_q",
       "must be a 1-D tensor of batch + 1 offsets"},
      {"cu_seqlens_device", vfwd, [](P& p, Call&) { p.cu_seqlens_k.device = DeviceType::cuda; }, "cu_seqlens_k",
       "same device as q"},
      {"cu_seqlens_count", vfwd, [](P& p, Call&) { p.cu_seqlens_k.shape[0] = 2; }, "cu_seqlens_k",
       "must have as many entries as cu_seqlens_q"},
      {"max_seqlen_q_negative", vfwd, [](P& p, Call&) { p.max_seqlen_q = -1; }, "max_seqlen_q",
       "must be non-negative"},
      {"max_seqlen_k_negative", vfwd, [](P& p, Call&) { p.max_seqlen_k = -1; }, "max_seqlen_k",
       "must be non-negative"},
      {"cu_seqlens_strided", vfwd,
       [](P& p, Call&) {
         p.cu_seqlens_q.stride[0] = 2;
         p.cu_seqlens_q.shape[0] = 2;
         p.cu_seqlens_k.shape[0] = 2;
       },
       "cu_seqlens_q", "must be contiguous"},
      {"cu_seqlens_start", vfwd,
       [](P& p, Call& c) {
         c.spare_offsets = {1, 15, 37};
         p.cu_seqlens_q.data = c.spare_offsets.data();
       },
       "cu_seqlens_q", "must start at 0"},
      {"cu_seqlens_decreasing", vfwd,
       [](P& p, Call& c) {
         c.spare_offsets = {0, 30, 25};
         p.cu_seqlens_k.data = c.spare_offsets.data();
       },
       "cu_seqlens_k", "must be non-decreasing"},
      {"cu_seqlens_beyond_total", vfwd,
       [](P& p, Call& c) {
         c.spare_offsets = {0, 15, 75};
         p.cu_seqlens_q.data = c.spare_offsets.data();
       },
       "cu_seqlens_q", "exceeds the packed length"},
      {"max_seqlen_too_small", vfwd, [](P& p, Call&) { p.max_seqlen_k = 24; }, "cu_seqlens_k",
       "exceeds the given max_seqlen"},
      {"device_offsets_need_max_seqlen_q", vfwd, [](P& p, Call&) { move_to_cuda(p); }, "max_seqlen_q",
       "must be given for device-resident cu_seqlens"},
      {"device_offsets_need_max_seqlen_k", vfwd,
       [](P& p, Call&) {
         move_to_cuda(p);
         p.max_seqlen_q = 22;
       },
       "max_seqlen_k", "must be given for device-resident cu_seqlens"},
      {"varlen_out_shape", vfwd, [](P& p, Call&) { p.out.shape[0] = 36; }, "out", "expected shape (74, 4, 24)"},
      {"varlen_lse_shape", vfwd, [](P& p, Call&) { p.lse.shape[1] = 37; }, "lse", "expected shape (4, 74)"},
      {"varlen_bias_shape", vfwd, [](P& p, Call&) { p.bias.shape[2] = 37; }, "bias",
       "(max_seqlen_q, max_seqlen_k)"},

      // Backward.
      {"backward_lse_missing", bwd, [](P& p, Call&) { p.lse = {}; }, "lse", "is required by the backward"},
      {"dout_missing", bwd, [](P& p, Call&) { p.dout = {}; }, "dout", "is required"},
      {"dq_missing", bwd, [](P& p, Call&) { p.dq = {}; }, "dq", "is required"},
      {"dk_missing", bwd, [](P& p, Call&) { p.dk = {}; }, "dk", "is required"},
      {"dv_missing", bwd, [](P& p, Call&) { p.dv = {}; }, "dv", "is required"},
      {"dout_dtype", bwd, [](P& p, Call&) { p.dout.dtype = DType::bfloat16; }, "dout", "dtype must match q"},
      {"dk_dtype", bwd, [](P& p, Call&) { p.dk.dtype = DType::float16; }, "dk", "dtype must match q"},
      {"dq_device", bwd, [](P& p, Call&) { p.dq.device = DeviceType::cuda; }, "dq", "same device as q"},
      {"dv_shape", bwd, [](P& p, Call&) { p.dv.shape[2] = 4; }, "dv", "expected shape (2, 45, 2, 24)"},
      {"dq_shape", bwd, [](P& p, Call&) { p.dq.shape[1] = 45; }, "dq", "expected shape (2, 37, 4, 24)"},
      {"dout_strided", bwd, [](P& p, Call&) { p.dout.stride[3] = 3; }, "dout", "must have stride 1"},
      {"dq_broadcast", bwd, [](P& p, Call&) { p.dq.stride[0] = 0; }, "dq", "may not broadcast"},
      {"dk_broadcast", bwd, [](P& p, Call&) { p.dk.stride[2] = 0; }, "dk", "may not broadcast"},
      {"dv_broadcast", bwd, [](P& p, Call&) { p.dv.stride[1] = 0; }, "dv", "may not broadcast"},
      {"backward_shares_forward_rules", bwd, [](P& p, Call&) { p.dropout_p = 2.0f; }, "dropout_p",
       "must lie in [0, 1)"},
      {"varlen_backward_dk_shape", vbwd, [](P& p, Call&) { p.dk.shape[0] = 44; }, "dk", "expected shape (90, 2, 24)"},
  };
  return all;
}

class ValidationRule : public ::testing::TestWithParam<Rule> {};

TEST_P(ValidationRule, ThrowsNamingArgumentAndRuleAndWritesNothing) {
  const Rule& rule = GetParam();
  Call call;
  const bool varlen = rule.entry == Entry::varlen_forward || rule.entry == Entry::varlen_backward;
  BackwardParams params = varlen ? call.varlen() : call.backward();
  rule.mutate(params, call);
  const auto outputs_before = call.outputs();

  auto expect_error = [&](const std::function<void()>& action, const char* what_call) {
    SCOPED_TRACE(what_call);
    try {
      action();
      ADD_FAILURE() << "no tileflash::Error was thrown";
    } catch (const Error& e) {
      EXPECT_EQ(e.argument(), rule.argument);
      const std::string message = e.what();
      EXPECT_EQ(message.rfind(std::string("tileflash: ") + rule.argument + ": ", 0), 0u) << message;
      EXPECT_NE(message.find(rule.message), std::string::npos) << "message: " << message;
    }
  };
  const bool is_backward = rule.entry == Entry::backward || rule.entry == Entry::varlen_backward;
  if (is_backward) {
    expect_error([&] { tileflash::backward(params); }, "backward");
    expect_error([&] { select_backward(params); }, "select_backward");
    std::string reason;
    EXPECT_FALSE(is_supported(params, &reason));
    EXPECT_NE(reason.find(rule.message), std::string::npos) << reason;
  } else {
    const ForwardParams& forward_params = params;
    expect_error([&] { tileflash::forward(forward_params); }, "forward");
    expect_error([&] { select_forward(forward_params); }, "select_forward");
    std::string reason;
    EXPECT_FALSE(is_supported(forward_params, &reason));
    EXPECT_NE(reason.find(rule.message), std::string::npos) << reason;
  }
  EXPECT_TRUE(call.outputs() == outputs_before) << "an output was written although validation failed";
}

INSTANTIATE_TEST_SUITE_P(Api, ValidationRule, ::testing::ValuesIn(rules()),
                         [](const ::testing::TestParamInfo<Rule>& info) { return std::string(info.param.name); });

// The unbroken calls are accepted, so every rejection above is due to its one change.
TEST(ValidationControl, UnbrokenCallsRunOnTheReference) {
  Call call;
  const ForwardParams forward_params = call.forward();
  EXPECT_EQ(select_forward(forward_params).kernel, "reference");
  const auto out_before = call.out;
  tileflash::forward(forward_params);
  EXPECT_NE(call.out, out_before);
  for (float x : call.out) ASSERT_TRUE(std::isfinite(x));

  EXPECT_TRUE(is_supported(call.backward()));
  const auto dq_before = call.dq;
  tileflash::backward(call.backward());
  EXPECT_NE(call.dq, dq_before);
  for (float x : call.dq) ASSERT_TRUE(std::isfinite(x));

  Call packed;
  EXPECT_TRUE(is_supported(static_cast<const ForwardParams&>(packed.varlen())));
  tileflash::forward(packed.varlen());
  for (float x : packed.out) ASSERT_TRUE(std::isfinite(x));
}

TEST(ValidationControl, AutomaticBackendPicksReferenceForFloat64) {
  Call call;
  ForwardParams p = call.forward();
  std::vector<double> q(call.q.size()), k(call.k.size()), v(call.v.size()), out(call.out.size());
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = call.q[i];
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = call.k[i], v[i] = call.v[i];
  p.q.data = q.data();
  p.k.data = k.data();
  p.v.data = v.data();
  p.out.data = out.data();
  for (TensorView* t : {&p.q, &p.k, &p.v, &p.out}) t->dtype = DType::float64;
  p.bias = {};
  p.backend = Backend::automatic;
  const KernelChoice choice = select_forward(p);
  EXPECT_EQ(choice.backend, Backend::reference);
  EXPECT_EQ(choice.kernel, "reference");
}

TEST(ValidationControl, CudaTensorsWithoutCudaBuild) {
  if (cuda_available()) GTEST_SKIP() << "this build has the CUDA backend";
  Call call;
  BackwardParams p = call.backward();
  move_to_cuda(p);
  for (TensorView* t : {&p.q, &p.k, &p.v, &p.out, &p.dout, &p.dq, &p.dk, &p.dv}) t->dtype = DType::bfloat16;
  p.bias = {};
  const auto outputs_before = call.outputs();
  try {
    tileflash::forward(p);
    ADD_FAILURE() << "no error for cuda tensors in a build without CUDA";
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "q");
    EXPECT_NE(std::string(e.what()).find("no CUDA backend"), std::string::npos) << e.what();
  }
  EXPECT_THROW(tileflash::backward(p), Error);
  EXPECT_TRUE(call.outputs() == outputs_before);
  EXPECT_EQ(cuda_device_count(), 0);
}

}  // namespace
}  // namespace tileflash
