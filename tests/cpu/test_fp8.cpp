// FP8 (e4m3) on the host: the conversions against a brute-force search over every code,
// and the reference with FP8 inputs against the same values in fp64.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include "common/attention_case.h"
#include "common/numeric.h"
#include "tileflash/attention.h"

namespace tileflash::testing {
namespace {

bool is_nan_code(int code) { return (code & 0x7F) == 0x7F; }

TEST(Fp8Conversion, EveryCodeRoundTrips) {
  for (int code = 0; code < 256; ++code) {
    const float value = detail::fp8_e4m3_to_float(static_cast<std::uint8_t>(code));
    if (is_nan_code(code)) {
      EXPECT_TRUE(std::isnan(value)) << code;
      continue;
    }
    EXPECT_EQ(detail::float_to_fp8_e4m3(value), code) << value;
  }
  EXPECT_EQ(detail::fp8_e4m3_to_float(0x7E), 448.0f);
  EXPECT_EQ(detail::fp8_e4m3_to_float(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(detail::fp8_e4m3_to_float(0x08), std::ldexp(1.0f, -6));
}

// The nearest finite code by exhaustive search, ties to the even code, beyond 448 saturated.
std::uint8_t nearest_code(float x) {
  if (std::fabs(x) >= 448.0f) return x < 0 ? 0xFE : 0x7E;
  int best = -1;
  double best_distance = std::numeric_limits<double>::infinity();
  for (int code = 0; code < 256; ++code) {
    if (is_nan_code(code) || (code & 0x80) != (std::signbit(x) ? 0x80 : 0)) continue;
    const double distance = std::fabs(static_cast<double>(detail::fp8_e4m3_to_float(static_cast<std::uint8_t>(code))) - x);
    if (distance < best_distance || (distance == best_distance && code % 2 == 0)) {
      best = code;
      best_distance = distance;
    }
  }
  return static_cast<std::uint8_t>(best);
}

TEST(Fp8Conversion, RoundsToNearestEvenAndSaturates) {
  std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<float> exponent(-12.0f, 9.5f);
  for (int i = 0; i < 20000; ++i) {
    const float x = (i % 2 ? -1.0f : 1.0f) * std::exp2(exponent(rng));
    ASSERT_EQ(detail::float_to_fp8_e4m3(x), nearest_code(x)) << x;
  }
  // Ties: 1.0625 lies halfway between 1 and 1.125 (goes to 1), 1.1875 between 1.125 and 1.25
  // (goes to 1.25); 2^-10 halfway between 0 and the smallest subnormal (goes to 0).
  EXPECT_EQ(detail::fp8_e4m3_to_float(detail::float_to_fp8_e4m3(1.0625f)), 1.0f);
  EXPECT_EQ(detail::fp8_e4m3_to_float(detail::float_to_fp8_e4m3(1.1875f)), 1.25f);
  EXPECT_EQ(detail::float_to_fp8_e4m3(std::ldexp(1.0f, -10)), 0x00);
  EXPECT_EQ(detail::float_to_fp8_e4m3(std::numeric_limits<float>::infinity()), 0x7E);
  EXPECT_EQ(detail::float_to_fp8_e4m3(-1e9f), 0xFE);
  EXPECT_TRUE(is_nan_code(detail::float_to_fp8_e4m3(std::numeric_limits<float>::quiet_NaN())));
}

// The reference with FP8 inputs and descales computes what it computes for the dequantised
// values in fp64, and rounds only the output (to its bfloat16 or float16).
void expect_reference_matches_dequantised(const CaseConfig& config) {
  AttentionCase c(config, 11);
  AttentionCase exact = c.converted(DType::float64);
  AttentionOutputs fp8 = c.new_outputs(), f64 = exact.new_outputs();
  EXPECT_EQ(forward(c.forward_params(fp8, Backend::automatic)).kernel, "reference");
  forward(exact.forward_params(f64, Backend::reference));
  ASSERT_EQ(fp8.out.dtype(), config.fp8_out_dtype);
  for (std::int64_t i = 0; i < fp8.out.numel(); ++i)
    ASSERT_EQ(fp8.out.get(i), f64.out.converted(config.fp8_out_dtype).get(i)) << i << " " << config.describe();
  for (std::int64_t i = 0; i < fp8.lse.numel(); ++i) ASSERT_EQ(fp8.lse.get(i), f64.lse.get(i)) << i;
}

TEST(ReferenceFp8, MatchesTheDequantisedInputsInFloat64) {
  CaseConfig c;
  c.dtype = DType::float8_e4m3;
  c.batch = 2;
  c.seq_q = 7;
  c.seq_k = 13;
  c.heads_q = 4;
  c.heads_kv = 2;
  c.head_dim = 16;
  c.input_stddev = 3.0;
  c.q_descale = 0.6f;
  c.k_descale = 0.35f;
  c.v_descale = 1.7f;
  c.causal = true;
  expect_reference_matches_dequantised(c);
  c.fp8_out_dtype = DType::float16;
  c.causal = false;
  c.v_descale = 0.0f;  // not passed: 1
  expect_reference_matches_dequantised(c);
  c.seqlens_q = {3, 1, 6};
  c.seqlens_k = {5, 9, 2};
  expect_reference_matches_dequantised(c);
}

}  // namespace
}  // namespace tileflash::testing
