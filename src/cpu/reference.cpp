// The materialised reference: S = QK^T and P per (sequence, query head), O(seq_q * seq_k)
// memory per head. Work is split over (sequence, key/value head) so that the GQA sums of
// dK and dV stay inside one task.
#include "cpu/reference.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "common/attention_math.h"
#include "common/philox.h"
#include "cpu/cpu_backend.h"
#include "cpu/layout.h"
#include "cpu/thread_pool.h"

namespace tileflash::cpu {
namespace {

template <class Acc>
using Matrix = std::vector<Acc>;  // row-major

template <class Acc>
class Materialized {
 public:
  Materialized(const ForwardParams& params, const detail::Problem& problem, MaterializedPrecision precision)
      : params_(params),
        problem_(problem),
        precision_(precision),
        q_factor_(descale_factor(params.q_descale)),
        k_factor_(descale_factor(params.k_descale)),
        v_factor_(descale_factor(params.v_descale)) {}

  // Forward for one (sequence, kv head); with `grads` also the backward.
  void run(std::int64_t b, std::int64_t kv_head, const BackwardParams* grads) const {
    const Sequence seq = sequence(params_, problem_, b);
    const std::int64_t sq = seq.seq_q, sk = seq.seq_k, d = problem_.head_dim;
    if (sq == 0 && sk == 0) return;
    const Matrix<Acc> k = load(head_rows(params_.k, problem_, seq, kv_head, false), sk, k_factor_);
    const Matrix<Acc> v = load(head_rows(params_.v, problem_, seq, kv_head, false), sk, v_factor_);
    Matrix<Acc> dk(sk * d, Acc(0)), dv(sk * d, Acc(0));
    const std::int64_t group = problem_.group_size();
    for (std::int64_t h = kv_head * group; h < (kv_head + 1) * group; ++h) {
      const Matrix<Acc> q = load(head_rows(params_.q, problem_, seq, h, true), sq, q_factor_);
      // The backward recomputes its own O and P at its own precision and leaves the
      // caller's out and lse alone.
      Head head = forward_head(seq, h, q, k, v, /*write_outputs=*/grads == nullptr);
      if (grads) backward_head(*grads, seq, h, head, q, k, v, dk, dv);
    }
    if (grads) {
      store(head_rows(grads->dk, problem_, seq, kv_head, false), dk, sk);
      store(head_rows(grads->dv, problem_, seq, kv_head, false), dv, sk);
    }
  }

 private:
  struct Head {
    Matrix<Acc> p;       // softmax probabilities (sq, sk), before dropout
    Matrix<Acc> p_kept;  // dropout applied and rescaled
    Matrix<Acc> tanh_s;  // softcap: tanh(s / softcap), for the chain rule
    Matrix<Acc> out;     // (sq, d)
  };

  Acc rounded(Acc x) const {
    return precision_ == MaterializedPrecision::storage ? static_cast<Acc>(round_to_dtype(x, problem_.dtype)) : x;
  }
  Acc rounded_out(Acc x) const {
    return precision_ == MaterializedPrecision::storage ? static_cast<Acc>(round_to_dtype(x, problem_.out_dtype)) : x;
  }

  // The per-tensor scale of FP8 inputs (a float32 in host memory; absent = 1).
  static double descale_factor(const TensorView& t) {
    return t.defined() ? static_cast<double>(*static_cast<const float*>(t.data)) : 1.0;
  }

  Matrix<Acc> load(const HeadRows& rows, std::int64_t n, double factor) const {
    const std::int64_t d = problem_.head_dim;
    Matrix<Acc> m(n * d);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t c = 0; c < d; ++c) m[i * d + c] = static_cast<Acc>(rows.load(i, c) * factor);
    return m;
  }

  void store(const HeadRows& rows, const Matrix<Acc>& m, std::int64_t n) const {
    const std::int64_t d = problem_.head_dim;
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t c = 0; c < d; ++c) rows.store(i, c, static_cast<double>(m[i * d + c]));
  }

  std::uint32_t batch_head(const Sequence& seq, std::int64_t h) const {
    return static_cast<std::uint32_t>(seq.batch * problem_.heads_q + h);
  }

  Acc keep_scale(const Sequence& seq, std::int64_t h, std::int64_t i, std::int64_t j) const {
    if (!problem_.has_dropout) return Acc(1);
    const bool keep = detail::dropout_keep(params_.dropout_seed, params_.dropout_offset, batch_head(seq, h),
                                           static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(j),
                                           detail::dropout_threshold(params_.dropout_p));
    return keep ? Acc(1) / (Acc(1) - static_cast<Acc>(params_.dropout_p)) : Acc(0);
  }

  Head forward_head(const Sequence& seq, std::int64_t h, const Matrix<Acc>& q, const Matrix<Acc>& k,
                    const Matrix<Acc>& v, bool write_outputs) const {
    const std::int64_t sq = seq.seq_q, sk = seq.seq_k, d = problem_.head_dim;
    const detail::BandMask mask = problem_.mask(sq, sk);
    const BiasTile bias = bias_tile(params_.bias, seq, h);
    const float slope = alibi_slope(params_.alibi_slopes, seq, h);
    const Acc scale = static_cast<Acc>(problem_.scale), cap = static_cast<Acc>(params_.softcap);
    const Acc neg_inf = -std::numeric_limits<Acc>::infinity();

    Head head;
    head.p.assign(sq * sk, Acc(0));
    head.p_kept.assign(sq * sk, Acc(0));
    if (problem_.has_softcap) head.tanh_s.assign(sq * sk, Acc(0));
    head.out.assign(sq * d, Acc(0));
    std::vector<Acc> s(sk);
    const bool write_lse = write_outputs && problem_.has_lse;
    LseRow lse;
    if (write_lse) lse = lse_row(params_.lse, problem_, seq, h);
    const HeadRows out_rows = head_rows(params_.out, problem_, seq, h, true);

    for (std::int64_t i = 0; i < sq; ++i) {
      Acc row_max = neg_inf;
      for (std::int64_t j = 0; j < sk; ++j) {
        Acc dot = 0;
        for (std::int64_t c = 0; c < d; ++c) dot += q[i * d + c] * k[j * d + c];
        Acc x = scale * dot;
        if (problem_.has_softcap) {
          const Acc t = std::tanh(x / cap);
          head.tanh_s[i * sk + j] = t;
          x = cap * t;
        }
        if (bias.defined()) x += static_cast<Acc>(bias.load(i, j));
        if (problem_.has_alibi) x += static_cast<Acc>(detail::alibi_bias(slope, mask, i, j));
        if (!mask.allowed(i, j)) x = neg_inf;
        s[j] = x;
        if (x > row_max) row_max = x;
      }
      Acc row_lse = neg_inf;
      if (row_max != neg_inf) {
        Acc sum = 0;
        for (std::int64_t j = 0; j < sk; ++j) sum += std::exp(s[j] - row_max);
        row_lse = row_max + std::log(sum);
        for (std::int64_t j = 0; j < sk; ++j) {
          const Acc p = rounded(std::exp(s[j] - row_max) / sum);
          head.p[i * sk + j] = p;
          head.p_kept[i * sk + j] = rounded(p * keep_scale(seq, h, i, j));
        }
        for (std::int64_t j = 0; j < sk; ++j) {
          const Acc pk = head.p_kept[i * sk + j];
          if (pk == Acc(0)) continue;
          for (std::int64_t c = 0; c < d; ++c) head.out[i * d + c] += pk * v[j * d + c];
        }
      }
      for (std::int64_t c = 0; c < d; ++c) {
        head.out[i * d + c] = rounded_out(head.out[i * d + c]);
        if (write_outputs) out_rows.store(i, c, static_cast<double>(head.out[i * d + c]));
      }
      if (write_lse) lse[i] = static_cast<float>(row_lse);
    }
    return head;
  }

  void backward_head(const BackwardParams& grads, const Sequence& seq, std::int64_t h, const Head& head,
                     const Matrix<Acc>& q, const Matrix<Acc>& k, const Matrix<Acc>& v, Matrix<Acc>& dk,
                     Matrix<Acc>& dv) const {
    const std::int64_t sq = seq.seq_q, sk = seq.seq_k, d = problem_.head_dim;
    const Acc scale = static_cast<Acc>(problem_.scale);
    const Matrix<Acc> dout = load(head_rows(grads.dout, problem_, seq, h, true), sq, 1.0);
    Matrix<Acc> dq(sq * d, Acc(0));
    std::vector<Acc> ds(sk);
    for (std::int64_t i = 0; i < sq; ++i) {
      // D = rowsum(dO o O) equals sum_j P_ij dP_ij, also with dropout.
      Acc delta = 0;
      for (std::int64_t c = 0; c < d; ++c) delta += dout[i * d + c] * head.out[i * d + c];
      for (std::int64_t j = 0; j < sk; ++j) {
        const Acc p = head.p[i * sk + j];
        if (p == Acc(0)) {
          ds[j] = 0;
          continue;
        }
        const Acc pk = head.p_kept[i * sk + j];
        Acc dp_kept = 0;
        for (std::int64_t c = 0; c < d; ++c) {
          dp_kept += dout[i * d + c] * v[j * d + c];
          dv[j * d + c] += pk * dout[i * d + c];
        }
        const Acc dp = rounded(dp_kept) * keep_scale(seq, h, i, j);
        Acc g = p * (dp - delta);
        if (problem_.has_softcap) {
          const Acc t = head.tanh_s[i * sk + j];
          g *= Acc(1) - t * t;
        }
        ds[j] = rounded(g);
      }
      for (std::int64_t j = 0; j < sk; ++j) {
        if (ds[j] == Acc(0)) continue;
        for (std::int64_t c = 0; c < d; ++c) {
          dq[i * d + c] += scale * ds[j] * k[j * d + c];
          dk[j * d + c] += scale * ds[j] * q[i * d + c];
        }
      }
    }
    store(head_rows(grads.dq, problem_, seq, h, true), dq, sq);
  }

  const ForwardParams& params_;
  const detail::Problem& problem_;
  MaterializedPrecision precision_;
  double q_factor_, k_factor_, v_factor_;
};

template <class Acc>
void run_all(const ForwardParams& params, const detail::Problem& problem, MaterializedPrecision precision,
             const BackwardParams* grads) {
  const Materialized<Acc> attention(params, problem, precision);
  const std::int64_t tasks = problem.batch * problem.heads_kv;
  parallel_for(tasks, resolve_thread_count(params.num_threads),
               [&](std::int64_t task, int) { attention.run(task / problem.heads_kv, task % problem.heads_kv, grads); });
}

void dispatch(const ForwardParams& params, const detail::Problem& problem, MaterializedPrecision precision,
              const BackwardParams* grads) {
  if (precision == MaterializedPrecision::exact)
    run_all<double>(params, problem, precision, grads);
  else
    run_all<float>(params, problem, precision, grads);
}

}  // namespace

void materialized_forward(const ForwardParams& params, const detail::Problem& problem,
                          MaterializedPrecision precision) {
  dispatch(params, problem, precision, nullptr);
}

void materialized_backward(const BackwardParams& params, const detail::Problem& problem,
                           MaterializedPrecision precision) {
  dispatch(params, problem, precision, &params);
}

void reference_forward(const ForwardParams& params, const detail::Problem& problem) {
  materialized_forward(params, problem, MaterializedPrecision::exact);
}

void reference_backward(const BackwardParams& params, const detail::Problem& problem) {
  materialized_backward(params, problem, MaterializedPrecision::exact);
}

}  // namespace tileflash::cpu
