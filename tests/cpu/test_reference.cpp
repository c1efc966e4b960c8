// The fp64 reference against independent facts: finite differences of its own forward,
// closed forms, masked rows and the dropout keep rate.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "common/attention_case.h"
#include "common/philox.h"
#include "tileflash/attention.h"

namespace tileflash::testing {
namespace {

// sum(out * dout) as a function of one input element, by central differences in fp64.
double loss(AttentionCase& c) {
  AttentionOutputs o = c.new_outputs();
  forward(c.forward_params(o, Backend::reference));
  double sum = 0.0;
  for (std::int64_t i = 0; i < o.out.numel(); ++i) sum += o.out.get(i) * c.dout.get(i);
  return sum;
}

void expect_gradients_match_finite_differences(const CaseConfig& config, std::uint64_t seed) {
  AttentionCase c = AttentionCase(config, seed).converted(DType::float64);
  AttentionOutputs o = c.new_outputs();
  forward(c.forward_params(o, Backend::reference));
  backward(c.backward_params(o, Backend::reference));
  const double step = 1e-6;
  struct Pair {
    const char* name;
    HostTensor* input;
    HostTensor* grad;
  } pairs[] = {{"dq", &c.q, &o.dq}, {"dk", &c.k, &o.dk}, {"dv", &c.v, &o.dv}};
  for (const Pair& p : pairs) {
    for (std::int64_t i = 0; i < p.input->numel(); ++i) {
      const double x = p.input->get(i);
      p.input->set(i, x + step);
      const double up = loss(c);
      p.input->set(i, x - step);
      const double down = loss(c);
      p.input->set(i, x);
      const double numeric = (up - down) / (2 * step);
      EXPECT_NEAR(p.grad->get(i), numeric, 1e-6 * (1.0 + std::abs(numeric)))
          << p.name << "[" << i << "] " << config.describe();
    }
  }
}

TEST(Reference, GradientsMatchFiniteDifferences) {
  CaseConfig c;
  c.batch = 2;
  c.seq_q = 5;
  c.seq_k = 7;
  c.heads_q = 4;
  c.heads_kv = 2;
  c.head_dim = 3;
  c.num_threads = 2;
  expect_gradients_match_finite_differences(c, 1);
}

TEST(Reference, GradientsMatchFiniteDifferencesWithEveryLogitTerm) {
  CaseConfig c;
  c.batch = 2;
  c.seq_q = 6;
  c.seq_k = 4;
  c.heads_q = 2;
  c.heads_kv = 1;
  c.head_dim = 4;
  c.softcap = 1.5f;
  c.bias = CaseConfig::Bias::per_head;
  c.alibi = CaseConfig::Alibi::per_batch_head;
  c.causal = true;
  c.window_left = 2;
  c.input_stddev = 1.5;
  expect_gradients_match_finite_differences(c, 2);
}

TEST(Reference, GradientsMatchFiniteDifferencesWithDropout) {
  CaseConfig c;
  c.seq_q = 5;
  c.seq_k = 9;
  c.head_dim = 5;
  c.dropout_p = 0.3f;
  c.dropout_seed = 1234;
  c.dropout_offset = 77;
  expect_gradients_match_finite_differences(c, 3);
}

TEST(Reference, GradientsMatchFiniteDifferencesVarlen) {
  CaseConfig c;
  c.seqlens_q = {3, 0, 4};
  c.seqlens_k = {5, 2, 1};
  c.heads_q = 3;
  c.heads_kv = 1;
  c.head_dim = 2;
  c.causal = true;
  c.bias = CaseConfig::Bias::full;
  c.heads_first = true;
  expect_gradients_match_finite_differences(c, 4);
}

// With q = 0 every allowed key gets the same weight: out is the mean of the allowed v rows.
TEST(Reference, ZeroQueriesAverageTheAllowedValues) {
  CaseConfig config;
  config.seq_q = 9;
  config.seq_k = 13;
  config.head_dim = 6;
  config.causal = true;
  config.window_left = 3;
  AttentionCase c = AttentionCase(config, 5).converted(DType::float64);
  c.q.fill(0.0);
  AttentionOutputs o = c.new_outputs();
  forward(c.forward_params(o, Backend::reference));
  const std::int64_t h = config.heads_q, d = config.head_dim;
  for (std::int64_t i = 0; i < config.seq_q; ++i) {
    const std::int64_t diagonal = i + config.seq_k - config.seq_q;
    const std::int64_t first = std::max<std::int64_t>(0, diagonal - 3), last = diagonal;
    for (std::int64_t head = 0; head < h; ++head) {
      for (std::int64_t col = 0; col < d; ++col) {
        double mean = 0.0;
        for (std::int64_t j = first; j <= last; ++j) mean += c.v.get((j * h + head) * d + col);
        mean /= static_cast<double>(last - first + 1);
        EXPECT_NEAR(o.out.get((i * h + head) * d + col), mean, 1e-12);
      }
      EXPECT_NEAR(o.lse.get(head * config.seq_q + i), std::log(static_cast<double>(last - first + 1)), 1e-6);
    }
  }
}

TEST(Reference, FullyMaskedRowsGiveZeroOutputAndGradients) {
  CaseConfig config;
  config.seq_q = 11;
  config.seq_k = 4;  // causal, bottom-right: the first 7 rows see no key
  config.causal = true;
  AttentionCase c(config, 6);
  AttentionOutputs o = c.new_outputs();
  forward(c.forward_params(o, Backend::reference));
  backward(c.backward_params(o, Backend::reference));
  const std::int64_t h = config.heads_q, d = config.head_dim;
  for (std::int64_t i = 0; i < config.seq_q; ++i) {
    const bool masked = i < 7;
    for (std::int64_t head = 0; head < h; ++head) {
      EXPECT_EQ(std::isinf(o.lse.get(head * config.seq_q + i)), masked);
      for (std::int64_t col = 0; col < d; ++col) {
        const std::int64_t at = (i * h + head) * d + col;
        if (masked) {
          EXPECT_EQ(o.out.get(at), 0.0);
          EXPECT_EQ(o.dq.get(at), 0.0);
        }
      }
    }
  }
  EXPECT_TRUE(o.out.all_finite());
  EXPECT_TRUE(o.dq.all_finite());
  EXPECT_TRUE(o.dk.all_finite());
  EXPECT_TRUE(o.dv.all_finite());
}

// The kept fraction of the Philox stream lies within 5 sigma of 1 - p.
TEST(Reference, DropoutKeepRateWithinStatisticalBounds) {
  for (float p : {0.1f, 0.5f, 0.9f}) {
    const std::uint32_t threshold = detail::dropout_threshold(p);
    const std::int64_t rows = 300, cols = 301;
    std::int64_t kept = 0;
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t j = 0; j < cols; ++j)
        kept += detail::dropout_keep(42, 7, 3, static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(j), threshold);
    const double n = static_cast<double>(rows * cols);
    const double sigma = std::sqrt(n * p * (1.0 - p));
    EXPECT_NEAR(static_cast<double>(kept), n * (1.0 - p), 5.0 * sigma) << "p=" << p;
  }
}

}  // namespace
}  // namespace tileflash::testing
