// Every rule of the public API. Each failure names the argument and the rule.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "api/problem.h"
#include "tileflash/error.h"

namespace tileflash::detail {
namespace {

std::string shape_string(const TensorView& t) {
  std::ostringstream s;
  s << '(';
  for (int i = 0; i < t.rank; ++i) s << (i ? ", " : "") << t.shape[i];
  s << ')';
  return s.str();
}

std::string expected_string(const std::vector<std::int64_t>& dims) {
  std::ostringstream s;
  s << '(';
  for (std::size_t i = 0; i < dims.size(); ++i) s << (i ? ", " : "") << dims[i];
  s << ')';
  return s.str();
}

[[noreturn]] void fail(const char* argument, const std::string& rule) { throw Error(argument, rule); }

// Structural checks common to every tensor argument.
void check_view(const char* name, const TensorView& t) {
  if (t.rank < 1 || t.rank > TensorView::kMaxRank) fail(name, "rank must be between 1 and 4");
  for (int i = 0; i < t.rank; ++i) {
    if (t.shape[i] < 0) fail(name, "shape entries must be non-negative, got " + shape_string(t));
    if (t.stride[i] < 0) fail(name, "strides must be non-negative (dimension " + std::to_string(i) + ")");
  }
  if (t.numel() > 0 && t.data == nullptr) fail(name, "data pointer is null for a non-empty tensor");
  if (t.device == DeviceType::cpu && t.device_index != 0) fail(name, "a cpu tensor must have device_index 0");
}

void check_shape(const char* name, const TensorView& t, const std::vector<std::int64_t>& dims) {
  bool ok = t.rank == static_cast<int>(dims.size());
  for (int i = 0; ok && i < t.rank; ++i) ok = t.shape[i] == dims[i];
  if (!ok) fail(name, "expected shape " + expected_string(dims) + ", got " + shape_string(t));
}

void check_same_device(const char* name, const TensorView& t, const TensorView& q) {
  if (t.device != q.device || t.device_index != q.device_index)
    fail(name, std::string("must be on the same device as q (") + device_name(q.device) + ":" +
                   std::to_string(q.device_index) + "), got " + device_name(t.device) + ":" +
                   std::to_string(t.device_index));
}

void check_last_dim_contiguous(const char* name, const TensorView& t) {
  if (t.shape[t.rank - 1] > 1 && t.stride[t.rank - 1] != 1)
    fail(name, "the head_dim (last) dimension must have stride 1");
}

// An output must not write one element twice through a zero stride.
void check_writable(const char* name, const TensorView& t) {
  for (int i = 0; i < t.rank; ++i)
    if (t.shape[i] > 1 && t.stride[i] == 0) fail(name, "an output may not broadcast (zero stride)");
}

void check_same_dtype(const char* name, const TensorView& t, DType want) {
  if (t.dtype != want)
    fail(name, std::string("dtype must match q (") + dtype_name(want) + "), got " + dtype_name(t.dtype));
}

void check_seqlens(const char* name, const TensorView& cu, std::int64_t batch, std::int64_t total,
                   std::int64_t& max_len) {
  const auto* offsets = static_cast<const std::int32_t*>(cu.data);
  if (offsets[0] != 0) fail(name, "must start at 0, got " + std::to_string(offsets[0]));
  std::int64_t longest = 0;
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t len = static_cast<std::int64_t>(offsets[b + 1]) - offsets[b];
    if (len < 0) fail(name, "offsets must be non-decreasing (entry " + std::to_string(b + 1) + " is smaller than entry " + std::to_string(b) + ")");
    longest = len > longest ? len : longest;
  }
  if (offsets[batch] > total)
    fail(name, "last offset " + std::to_string(offsets[batch]) + " exceeds the packed length " + std::to_string(total));
  if (max_len == 0) {
    max_len = longest;
  } else if (longest > max_len) {
    fail(name, "a sequence of length " + std::to_string(longest) + " exceeds the given max_seqlen " + std::to_string(max_len));
  }
}

Problem validate_common(const ForwardParams& p) {
  Problem pr;
  if (!p.q.defined()) fail("q", "is required");
  if (!p.k.defined()) fail("k", "is required");
  if (!p.v.defined()) fail("v", "is required");
  if (!p.out.defined()) fail("out", "is required");
  check_view("q", p.q);
  check_view("k", p.k);
  check_view("v", p.v);
  check_view("out", p.out);

  const DType dt = p.q.dtype;
  if (dt != DType::float32 && dt != DType::float16 && dt != DType::bfloat16 && dt != DType::float64 &&
      dt != DType::float8_e4m3)
    fail("q", std::string("dtype must be float16, bfloat16, float32, float64 or float8_e4m3fn, got ") + dtype_name(dt));
  check_same_dtype("k", p.k, dt);
  check_same_dtype("v", p.v, dt);
  const bool fp8 = dt == DType::float8_e4m3;
  if (fp8) {
    if (p.out.dtype != DType::bfloat16 && p.out.dtype != DType::float16)
      fail("out", std::string("dtype must be bfloat16 or float16 for float8_e4m3fn inputs, got ") +
                      dtype_name(p.out.dtype));
  } else {
    check_same_dtype("out", p.out, dt);
  }
  check_same_device("k", p.k, p.q);
  check_same_device("v", p.v, p.q);
  check_same_device("out", p.out, p.q);
  for (const auto& [name, t] : {std::pair{"q_descale", &p.q_descale}, std::pair{"k_descale", &p.k_descale},
                                std::pair{"v_descale", &p.v_descale}}) {
    if (!t->defined()) continue;
    if (!fp8) fail(name, std::string("applies to float8_e4m3fn inputs only, q is ") + dtype_name(dt));
    check_view(name, *t);
    check_same_device(name, *t, p.q);
    if (t->dtype != DType::float32) fail(name, std::string("dtype must be float32, got ") + dtype_name(t->dtype));
    if (t->numel() != 1) fail(name, "must hold exactly one element (a per-tensor scale), got shape " + shape_string(*t));
  }
  pr.dtype = dt;
  pr.out_dtype = p.out.dtype;
  pr.device = p.q.device;

  const bool has_cu_q = p.cu_seqlens_q.defined(), has_cu_k = p.cu_seqlens_k.defined();
  if (has_cu_q != has_cu_k)
    fail(has_cu_q ? "cu_seqlens_k" : "cu_seqlens_q", "cu_seqlens_q and cu_seqlens_k must be given together");
  pr.varlen = has_cu_q;
  const int rank = pr.varlen ? 3 : 4;
  const char* layout = pr.varlen ? "(total, heads, head_dim) with cu_seqlens" : "(batch, seq, heads, head_dim)";
  if (p.q.rank != rank) fail("q", std::string("must have rank ") + std::to_string(rank) + ": " + layout);
  if (p.k.rank != rank) fail("k", std::string("must have rank ") + std::to_string(rank) + ": " + layout);
  if (p.v.rank != rank) fail("v", std::string("must have rank ") + std::to_string(rank) + ": " + layout);

  const int h = rank - 2, d = rank - 1;
  pr.heads_q = p.q.shape[h];
  pr.heads_kv = p.k.shape[h];
  pr.head_dim = p.q.shape[d];
  if (pr.head_dim < 1 || pr.head_dim > 256)
    fail("q", "head_dim must be between 1 and 256, got " + std::to_string(pr.head_dim));
  if (p.k.shape[d] != pr.head_dim)
    fail("k", "head_dim must equal q's (" + std::to_string(pr.head_dim) + "), got " + std::to_string(p.k.shape[d]));
  if (p.v.shape[d] != pr.head_dim)
    fail("v", "head_dim must equal q's (" + std::to_string(pr.head_dim) + "), got " + std::to_string(p.v.shape[d]));
  if (pr.heads_q < 1) fail("q", "heads must be at least 1");
  if (pr.heads_kv < 1) fail("k", "heads must be at least 1");
  if (pr.heads_q % pr.heads_kv != 0)
    fail("k", "heads_q (" + std::to_string(pr.heads_q) + ") must be a multiple of heads_kv (" +
                  std::to_string(pr.heads_kv) + ") for GQA/MQA");
  if (p.v.shape[h] != pr.heads_kv) fail("v", "heads must equal k's (" + std::to_string(pr.heads_kv) + ")");

  if (pr.varlen) {
    pr.total_q = p.q.shape[0];
    pr.total_k = p.k.shape[0];
    if (p.v.shape[0] != pr.total_k) fail("v", "packed length must equal k's (" + std::to_string(pr.total_k) + ")");
    for (const auto& [name, cu] : {std::pair{"cu_seqlens_q", &p.cu_seqlens_q}, std::pair{"cu_seqlens_k", &p.cu_seqlens_k}}) {
      check_view(name, *cu);
      if (cu->dtype != DType::int32) fail(name, std::string("dtype must be int32, got ") + dtype_name(cu->dtype));
      if (cu->rank != 1 || cu->shape[0] < 1) fail(name, "must be a 1-D tensor of batch + 1 offsets");
      check_same_device(name, *cu, p.q);
    }
    if (p.cu_seqlens_k.shape[0] != p.cu_seqlens_q.shape[0])
      fail("cu_seqlens_k", "must have as many entries as cu_seqlens_q (" + std::to_string(p.cu_seqlens_q.shape[0]) + ")");
    pr.batch = p.cu_seqlens_q.shape[0] - 1;
    if (p.max_seqlen_q < 0) fail("max_seqlen_q", "must be non-negative");
    if (p.max_seqlen_k < 0) fail("max_seqlen_k", "must be non-negative");
    pr.seq_q = p.max_seqlen_q;
    pr.seq_k = p.max_seqlen_k;
    // Offsets in device memory are checked by the CUDA backend, which can read them.
    if (pr.device == DeviceType::cpu) {
      if (p.cu_seqlens_q.stride[0] != 1 && pr.batch > 0) fail("cu_seqlens_q", "must be contiguous");
      if (p.cu_seqlens_k.stride[0] != 1 && pr.batch > 0) fail("cu_seqlens_k", "must be contiguous");
      check_seqlens("cu_seqlens_q", p.cu_seqlens_q, pr.batch, pr.total_q, pr.seq_q);
      check_seqlens("cu_seqlens_k", p.cu_seqlens_k, pr.batch, pr.total_k, pr.seq_k);
    } else if (pr.seq_q == 0 && pr.total_q > 0) {
      fail("max_seqlen_q", "must be given for device-resident cu_seqlens");
    } else if (pr.seq_k == 0 && pr.total_k > 0) {
      fail("max_seqlen_k", "must be given for device-resident cu_seqlens");
    }
    check_shape("out", p.out, {pr.total_q, pr.heads_q, pr.head_dim});
  } else {
    pr.batch = p.q.shape[0];
    pr.seq_q = p.q.shape[1];
    pr.seq_k = p.k.shape[1];
    if (p.k.shape[0] != pr.batch) fail("k", "batch must equal q's (" + std::to_string(pr.batch) + ")");
    if (p.v.shape[0] != pr.batch) fail("v", "batch must equal q's (" + std::to_string(pr.batch) + ")");
    if (p.v.shape[1] != pr.seq_k) fail("v", "seq must equal k's (" + std::to_string(pr.seq_k) + ")");
    check_shape("out", p.out, {pr.batch, pr.seq_q, pr.heads_q, pr.head_dim});
  }
  for (const auto& [name, t] : {std::pair{"q", &p.q}, std::pair{"k", &p.k}, std::pair{"v", &p.v}, std::pair{"out", &p.out}})
    check_last_dim_contiguous(name, *t);

  if (p.softmax_scale) {
    if (!std::isfinite(*p.softmax_scale)) fail("softmax_scale", "must be finite");
    pr.scale = *p.softmax_scale;
  } else {
    pr.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(pr.head_dim)));
  }

  if (p.window_left < -1) fail("window_left", "must be -1 (unbounded) or non-negative, got " + std::to_string(p.window_left));
  if (p.window_right < -1) fail("window_right", "must be -1 (unbounded) or non-negative, got " + std::to_string(p.window_right));
  pr.window_left = p.window_left;
  pr.window_right = p.causal ? (p.window_right < 0 ? 0 : std::min<std::int64_t>(p.window_right, 0)) : p.window_right;

  if (!std::isfinite(p.softcap) || p.softcap < 0.0f) fail("softcap", "must be finite and >= 0 (0 disables it)");
  pr.has_softcap = p.softcap > 0.0f;

  if (p.bias.defined()) {
    check_view("bias", p.bias);
    check_same_device("bias", p.bias, p.q);
    if (p.bias.dtype != DType::float32 && p.bias.dtype != dt)
      fail("bias", std::string("dtype must be float32 or q's (") + dtype_name(dt) + "), got " + dtype_name(p.bias.dtype));
    if (p.bias.rank != 4) fail("bias", "must have rank 4: (batch|1, heads_q|1, seq_q, seq_k)");
    if (p.bias.shape[0] != 1 && p.bias.shape[0] != pr.batch)
      fail("bias", "dimension 0 must be 1 or batch (" + std::to_string(pr.batch) + "), got " + std::to_string(p.bias.shape[0]));
    if (p.bias.shape[1] != 1 && p.bias.shape[1] != pr.heads_q)
      fail("bias", "dimension 1 must be 1 or heads_q (" + std::to_string(pr.heads_q) + "), got " + std::to_string(p.bias.shape[1]));
    if (p.bias.shape[2] != pr.seq_q || p.bias.shape[3] != pr.seq_k)
      fail("bias", "dimensions 2 and 3 must be (" + std::to_string(pr.seq_q) + ", " + std::to_string(pr.seq_k) +
                       ")" + (pr.varlen ? " = (max_seqlen_q, max_seqlen_k)" : " = (seq_q, seq_k)") + ", got " + shape_string(p.bias));
    pr.has_bias = true;
  }

  if (p.alibi_slopes.defined()) {
    const TensorView& a = p.alibi_slopes;
    check_view("alibi_slopes", a);
    check_same_device("alibi_slopes", a, p.q);
    if (a.dtype != DType::float32) fail("alibi_slopes", std::string("dtype must be float32, got ") + dtype_name(a.dtype));
    const bool per_head = a.rank == 1 && a.shape[0] == pr.heads_q;
    const bool per_batch_head = a.rank == 2 && a.shape[0] == pr.batch && a.shape[1] == pr.heads_q;
    if (!per_head && !per_batch_head)
      fail("alibi_slopes", "expected shape (" + std::to_string(pr.heads_q) + ") or (" + std::to_string(pr.batch) + ", " +
                               std::to_string(pr.heads_q) + "), got " + shape_string(a));
    pr.has_alibi = true;
  }

  if (!(p.dropout_p >= 0.0f && p.dropout_p < 1.0f)) fail("dropout_p", "must lie in [0, 1), got " + std::to_string(p.dropout_p));
  pr.has_dropout = p.dropout_p > 0.0f;
  if (p.num_threads < 0) fail("num_threads", "must be >= 0 (0 = all hardware threads)");

  if (p.lse.defined()) {
    check_view("lse", p.lse);
    check_same_device("lse", p.lse, p.q);
    if (p.lse.dtype != DType::float32) fail("lse", std::string("dtype must be float32, got ") + dtype_name(p.lse.dtype));
    if (pr.varlen) check_shape("lse", p.lse, {pr.heads_q, pr.total_q});
    else check_shape("lse", p.lse, {pr.batch, pr.heads_q, pr.seq_q});
    pr.has_lse = true;
  }

  switch (p.backend) {
    case Backend::reference:
    case Backend::cpu:
      if (pr.device != DeviceType::cpu)
        fail("backend", std::string(backend_name(p.backend)) + " runs on cpu tensors, got " + device_name(pr.device));
      break;
    case Backend::cuda:
      if (pr.device != DeviceType::cuda) fail("backend", "cuda runs on cuda tensors, got cpu");
      break;
    case Backend::automatic: break;
  }
  return pr;
}

}  // namespace

Problem validate_forward(const ForwardParams& p) {
  Problem pr = validate_common(p);
  check_writable("out", p.out);
  if (pr.has_lse) check_writable("lse", p.lse);
  return pr;
}

Problem validate_backward(const BackwardParams& p) {
  if (p.q.defined() && p.q.dtype == DType::float8_e4m3)
    fail("q", "float8_e4m3fn inputs are supported by the forward only (train in bfloat16 or float16)");
  Problem pr = validate_common(p);
  if (!p.lse.defined()) fail("lse", "is required by the backward (the forward's log-sum-exp)");
  const struct {
    const char* name;
    const TensorView* t;
    const TensorView* like;
  } grads[] = {{"dout", &p.dout, &p.q}, {"dq", &p.dq, &p.q}, {"dk", &p.dk, &p.k}, {"dv", &p.dv, &p.v}};
  for (const auto& g : grads) {
    if (!g.t->defined()) fail(g.name, "is required");
    check_view(g.name, *g.t);
    check_same_dtype(g.name, *g.t, pr.dtype);
    check_same_device(g.name, *g.t, p.q);
    check_shape(g.name, *g.t, std::vector<std::int64_t>(g.like->shape, g.like->shape + g.like->rank));
    check_last_dim_contiguous(g.name, *g.t);
  }
  check_writable("dq", p.dq);
  check_writable("dk", p.dk);
  check_writable("dv", p.dv);
  return pr;
}

}  // namespace tileflash::detail
