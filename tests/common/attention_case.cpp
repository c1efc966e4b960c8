#include "common/attention_case.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <sstream>
#include <utility>

#include "tileflash/attention.h"

namespace tileflash::testing {

std::string CaseConfig::describe() const {
  std::ostringstream s;
  s << dtype_name(dtype) << " d=" << head_dim << " heads=" << heads_q << "/" << heads_kv;
  if (dtype == DType::float8_e4m3)
    s << " out=" << dtype_name(fp8_out_dtype) << " descales=" << q_descale << "/" << k_descale << "/" << v_descale;
  if (seqlens_q.empty()) {
    s << " batch=" << batch << " seq=" << seq_q << "x" << seq_k;
  } else {
    s << " varlen q=[";
    for (auto l : seqlens_q) s << l << ' ';
    s << "] k=[";
    for (auto l : seqlens_k) s << l << ' ';
    s << ']';
  }
  if (heads_first) s << " heads_first";
  if (causal) s << " causal";
  if (window_left >= 0 || window_right >= 0) s << " window=(" << window_left << "," << window_right << ")";
  if (softcap > 0) s << " softcap=" << softcap;
  if (bias != Bias::none) s << " bias=" << static_cast<int>(bias) << ":" << dtype_name(bias_dtype);
  if (alibi != Alibi::none) s << " alibi=" << static_cast<int>(alibi);
  if (dropout_p > 0) s << " dropout=" << dropout_p;
  if (input_stddev != 1.0) s << " stddev=" << input_stddev;
  s << " threads=" << num_threads;
  return s.str();
}

AttentionCase::AttentionCase(const CaseConfig& config, std::uint64_t seed) : config_(config) {
  CaseConfig& c = config_;
  const bool varlen = !c.seqlens_q.empty();
  if (varlen) {
    c.batch = static_cast<std::int64_t>(c.seqlens_q.size());
    cu_seqlens_q = HostTensor(DType::int32, {c.batch + 1});
    cu_seqlens_k = HostTensor(DType::int32, {c.batch + 1});
    cu_seqlens_q.set(0, 0);
    cu_seqlens_k.set(0, 0);
    for (std::int64_t b = 0; b < c.batch; ++b) {
      total_q_ += c.seqlens_q[b];
      total_k_ += c.seqlens_k[b];
      cu_seqlens_q.set(b + 1, static_cast<double>(total_q_));
      cu_seqlens_k.set(b + 1, static_cast<double>(total_k_));
    }
    max_q_ = *std::max_element(c.seqlens_q.begin(), c.seqlens_q.end());
    max_k_ = *std::max_element(c.seqlens_k.begin(), c.seqlens_k.end());
  } else {
    max_q_ = c.seq_q;
    max_k_ = c.seq_k;
  }
  q = new_like_q();
  k = new_like_k();
  v = new_like_k();
  dout = new_like_q();
  q.fill_normal(seed * 7 + 1, c.input_stddev);
  k.fill_normal(seed * 7 + 2, c.input_stddev);
  v.fill_normal(seed * 7 + 3);
  dout.fill_normal(seed * 7 + 4);
  if (c.bias != CaseConfig::Bias::none) {
    const std::int64_t bb = c.bias == CaseConfig::Bias::per_head ? 1 : c.batch;
    const std::int64_t bh = c.bias == CaseConfig::Bias::per_batch ? 1 : c.heads_q;
    const DType bias_dtype = c.bias_dtype == DType::float32 ? DType::float32 : c.dtype;
    bias = HostTensor(bias_dtype, {bb, bh, max_q_, max_k_});
    bias.fill_normal(seed * 7 + 5);
  }
  for (const auto& [tensor, value] : {std::pair{&q_descale, c.q_descale}, std::pair{&k_descale, c.k_descale},
                                     std::pair{&v_descale, c.v_descale}}) {
    if (value == 0.0f) continue;
    *tensor = HostTensor(DType::float32, {1});
    tensor->set(0, value);
  }
  if (c.alibi != CaseConfig::Alibi::none) {
    alibi_slopes = c.alibi == CaseConfig::Alibi::per_head ? HostTensor(DType::float32, {c.heads_q})
                                                          : HostTensor(DType::float32, {c.batch, c.heads_q});
    std::mt19937_64 gen(seed * 7 + 6);
    std::uniform_real_distribution<double> dist(0.01, 0.5);
    for (std::int64_t i = 0; i < alibi_slopes.numel(); ++i) alibi_slopes.set(i, dist(gen));
  }
}

HostTensor AttentionCase::new_like_q() const {
  const CaseConfig& c = config_;
  if (!c.seqlens_q.empty())
    return c.heads_first ? HostTensor(c.dtype, {c.heads_q, total_q_, c.head_dim})
                         : HostTensor(c.dtype, {total_q_, c.heads_q, c.head_dim});
  return c.heads_first ? HostTensor(c.dtype, {c.batch, c.heads_q, c.seq_q, c.head_dim})
                       : HostTensor(c.dtype, {c.batch, c.seq_q, c.heads_q, c.head_dim});
}

HostTensor AttentionCase::new_like_k() const {
  const CaseConfig& c = config_;
  if (!c.seqlens_q.empty())
    return c.heads_first ? HostTensor(c.dtype, {c.heads_kv, total_k_, c.head_dim})
                         : HostTensor(c.dtype, {total_k_, c.heads_kv, c.head_dim});
  return c.heads_first ? HostTensor(c.dtype, {c.batch, c.heads_kv, c.seq_k, c.head_dim})
                       : HostTensor(c.dtype, {c.batch, c.seq_k, c.heads_kv, c.head_dim});
}

TensorView AttentionCase::layout_view(HostTensor& t) const {
  TensorView view = t.view();
  if (!config_.heads_first) return view;
  return view.rank == 4 ? view.transposed(1, 2) : view.transposed(0, 1);
}

AttentionCase AttentionCase::converted(DType dtype) const {
  AttentionCase c;
  c.config_ = config_;
  c.config_.dtype = dtype;
  c.total_q_ = total_q_;
  c.total_k_ = total_k_;
  c.max_q_ = max_q_;
  c.max_k_ = max_k_;
  c.q = q.converted(dtype);
  c.k = k.converted(dtype);
  c.v = v.converted(dtype);
  for (const auto& [tensor, descale] :
       {std::pair{&c.q, &q_descale}, std::pair{&c.k, &k_descale}, std::pair{&c.v, &v_descale}}) {
    if (descale->numel() == 0) continue;
    for (std::int64_t i = 0; i < tensor->numel(); ++i) tensor->set(i, tensor->get(i) * descale->get(0));
  }
  c.config_.q_descale = c.config_.k_descale = c.config_.v_descale = 0.0f;
  c.dout = dout.converted(dtype);
  if (bias.numel() > 0) c.bias = bias.dtype() == DType::float32 ? bias : bias.converted(dtype);
  c.alibi_slopes = alibi_slopes;
  c.cu_seqlens_q = cu_seqlens_q;
  c.cu_seqlens_k = cu_seqlens_k;
  return c;
}

DType AttentionCase::out_dtype() const {
  return config_.dtype == DType::float8_e4m3 ? config_.fp8_out_dtype : config_.dtype;
}

AttentionOutputs AttentionCase::new_outputs() const {
  AttentionOutputs o;
  o.out = new_like_q().converted(out_dtype());
  o.dq = new_like_q();
  o.dk = new_like_k();
  o.dv = new_like_k();
  o.lse = config_.seqlens_q.empty() ? HostTensor(DType::float32, {config_.batch, config_.heads_q, config_.seq_q})
                                    : HostTensor(DType::float32, {config_.heads_q, total_q_});
  for (HostTensor* t : {&o.out, &o.dq, &o.dk, &o.dv, &o.lse}) t->poison();
  return o;
}

ForwardParams AttentionCase::forward_params(AttentionOutputs& outputs, Backend backend) {
  const CaseConfig& c = config_;
  ForwardParams p;
  p.q = layout_view(q);
  p.k = layout_view(k);
  p.v = layout_view(v);
  p.out = layout_view(outputs.out);
  if (c.with_lse) p.lse = outputs.lse.view();
  if (q_descale.numel() > 0) p.q_descale = q_descale.view();
  if (k_descale.numel() > 0) p.k_descale = k_descale.view();
  if (v_descale.numel() > 0) p.v_descale = v_descale.view();
  if (!c.seqlens_q.empty()) {
    p.cu_seqlens_q = cu_seqlens_q.view();
    p.cu_seqlens_k = cu_seqlens_k.view();
  }
  p.softmax_scale = c.softmax_scale;
  p.causal = c.causal;
  p.window_left = c.window_left;
  p.window_right = c.window_right;
  p.softcap = c.softcap;
  if (bias.numel() > 0) p.bias = bias.view();
  if (alibi_slopes.numel() > 0) p.alibi_slopes = alibi_slopes.view();
  p.dropout_p = c.dropout_p;
  p.dropout_seed = c.dropout_seed;
  p.dropout_offset = c.dropout_offset;
  p.backend = backend;
  p.num_threads = c.num_threads;
  return p;
}

BackwardParams AttentionCase::backward_params(AttentionOutputs& outputs, Backend backend) {
  BackwardParams p;
  static_cast<ForwardParams&>(p) = forward_params(outputs, backend);
  p.lse = outputs.lse.view();
  p.dout = layout_view(dout);
  p.dq = layout_view(outputs.dq);
  p.dk = layout_view(outputs.dk);
  p.dv = layout_view(outputs.dv);
  return p;
}

namespace {

struct Runs {
  AttentionOutputs result, baseline, reference;
};

Runs run_forward(AttentionCase& c, Backend backend, AttentionCase& exact) {
  Runs r{c.new_outputs(), c.new_outputs(), exact.new_outputs()};
  forward(c.forward_params(r.result, backend));
  standard_attention_forward(c.forward_params(r.baseline, Backend::reference));
  forward(exact.forward_params(r.reference, Backend::reference));
  return r;
}

}  // namespace

void expect_forward_matches_reference(AttentionCase& c, Backend backend) {
  AttentionCase exact = c.converted(DType::float64);
  const Runs r = run_forward(c, backend, exact);
  EXPECT_TRUE(within_tolerance("out", r.result.out, r.baseline.out, r.reference.out, c.out_dtype()))
      << c.config().describe();
  if (c.config().with_lse)
    EXPECT_TRUE(within_tolerance("lse", r.result.lse, r.baseline.lse, r.reference.lse, DType::float32))
        << c.config().describe();
}

void expect_backward_matches_reference(AttentionCase& c, Backend backend) {
  ASSERT_TRUE(c.config().with_lse) << "the backward needs the forward's lse";
  AttentionCase exact = c.converted(DType::float64);
  Runs r = run_forward(c, backend, exact);
  backward(c.backward_params(r.result, backend));
  standard_attention_backward(c.backward_params(r.baseline, Backend::reference));
  backward(exact.backward_params(r.reference, Backend::reference));
  const DType dtype = c.config().dtype;
  EXPECT_TRUE(within_tolerance("dq", r.result.dq, r.baseline.dq, r.reference.dq, dtype)) << c.config().describe();
  EXPECT_TRUE(within_tolerance("dk", r.result.dk, r.baseline.dk, r.reference.dk, dtype)) << c.config().describe();
  EXPECT_TRUE(within_tolerance("dv", r.result.dv, r.baseline.dv, r.reference.dv, dtype)) << c.config().describe();
}

}  // namespace tileflash::testing
