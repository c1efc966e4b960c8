// The parts of tileflash-bench that every reported number depends on: the FLOP
// count (ANCHORS.md's convention, and the library's own bottom-right mask when
// seq_q != seq_k), the dtype/layout packing, the strided views and the median.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "bench.h"
#include "common/attention_math.h"
#include "common/numeric.h"
#include "host_data.h"

namespace tileflash::bench {
namespace {

double counted_pairs(std::int64_t seq_q, std::int64_t seq_k) {
  const detail::BandMask mask{seq_q, seq_k, -1, 0};
  double pairs = 0;
  for (std::int64_t i = 0; i < seq_q; ++i)
    for (std::int64_t j = 0; j < seq_k; ++j) pairs += mask.allowed(i, j) ? 1 : 0;
  return pairs;
}

Case make_case(std::int64_t seq_q, std::int64_t seq_k, bool causal) {
  Case c;
  c.batch = 3;
  c.heads_q = 5;
  c.heads_kv = 1;
  c.head_dim = 24;
  c.seq_q = seq_q;
  c.seq_k = seq_k;
  c.causal = causal;
  return c;
}

TEST(BenchFlops, NonCausalCountsEveryPair) {
  const Case c = make_case(37, 577, false);
  EXPECT_EQ(attended_pairs(c), 37.0 * 577.0);
  EXPECT_EQ(case_flops(c), 4.0 * 3 * 5 * 37 * 577 * 24);
}

TEST(BenchFlops, CausalSquareIsHalfAsInTheAnchors) {
  EXPECT_EQ(attended_pairs(make_case(1000, 1000, true)), 500000.0);
  EXPECT_EQ(attended_pairs(make_case(1, 1, true)), 0.5);
}

TEST(BenchFlops, CausalRectangularCountsTheLibrarysUnmaskedPairs) {
  std::mt19937 rng{std::random_device{}()};
  std::uniform_int_distribution<std::int64_t> length(1, 300);
  for (auto [seq_q, seq_k] : {std::pair<std::int64_t, std::int64_t>{37, 100}, {100, 37}, {1, 577}, {577, 1}}) {
    EXPECT_EQ(attended_pairs(make_case(seq_q, seq_k, true)), counted_pairs(seq_q, seq_k)) << seq_q << "x" << seq_k;
  }
  for (int trial = 0; trial < 20; ++trial) {
    const std::int64_t seq_q = length(rng), seq_k = length(rng);
    if (seq_q == seq_k) continue;
    EXPECT_EQ(attended_pairs(make_case(seq_q, seq_k, true)), counted_pairs(seq_q, seq_k)) << seq_q << "x" << seq_k;
  }
}

TEST(BenchFlops, BackwardIsTwoAndAHalfForwards) {
  Case c = make_case(577, 577, true);
  const double forward = case_flops(c);
  c.direction = Direction::backward;
  EXPECT_DOUBLE_EQ(case_flops(c), 2.5 * forward);
  c.direction = Direction::forward_backward;
  EXPECT_DOUBLE_EQ(case_flops(c), 3.5 * forward);
}

TEST(BenchMedian, OddAndEvenCounts) {
  EXPECT_EQ(median({5.0, 1.0, 3.0}), 3.0);
  EXPECT_EQ(median({4.0, 1.0, 3.0, 2.0}), 2.5);
  EXPECT_EQ(median({7.0}), 7.0);
}

class BenchPacking : public ::testing::TestWithParam<Layout> {};

// Every logical element lands where the view says it is, in every dtype, and comes back.
TEST_P(BenchPacking, ViewAddressesThePackedElement) {
  const Layout layout = GetParam();
  const Shape4 shape{2, 37, 3, 24};
  const std::vector<float> values = random_values(shape.numel(), std::random_device{}());
  for (DType dtype : {DType::float32, DType::float16, DType::bfloat16, DType::float64, DType::float8_e4m3}) {
    SCOPED_TRACE(short_dtype_name(dtype));
    std::vector<std::byte> storage = pack(values, shape, dtype, layout);
    ASSERT_EQ(storage.size(), values.size() * dtype_size(dtype));
    const TensorView view = make_view(storage.data(), shape, dtype, layout, DeviceType::cpu);
    ASSERT_EQ(view.shape[1], shape.seq);
    ASSERT_EQ(view.shape[2], shape.heads);
    EXPECT_EQ(view.stride[3], 1);
    for (std::int64_t b = 0; b < shape.batch; ++b)
      for (std::int64_t s = 0; s < shape.seq; ++s)
        for (std::int64_t h = 0; h < shape.heads; ++h)
          for (std::int64_t d = 0; d < shape.dim; ++d) {
            const std::int64_t offset = b * view.stride[0] + s * view.stride[1] + h * view.stride[2] + d;
            const std::byte* element = storage.data() + offset * static_cast<std::int64_t>(dtype_size(dtype));
            const float expected = values[((b * shape.seq + s) * shape.heads + h) * shape.dim + d];
            float stored = 0.0f;
            std::uint16_t half = 0;
            double wide = 0.0;
            switch (dtype) {
              case DType::float32: std::memcpy(&stored, element, 4); break;
              case DType::float64:
                std::memcpy(&wide, element, 8);
                stored = static_cast<float>(wide);
                break;
              case DType::float16:
                std::memcpy(&half, element, 2);
                stored = detail::fp16_to_float(half);
                break;
              case DType::float8_e4m3:
                stored = detail::fp8_e4m3_to_float(std::to_integer<std::uint8_t>(*element));
                break;
              default:
                std::memcpy(&half, element, 2);
                stored = detail::bf16_to_float(half);
            }
            // Round to nearest: half an ulp relative to the value, and below the normal range
            // (fp16: 2^-14, e4m3: 2^-6) half the subnormal spacing in absolute terms. The
            // inputs are N(0, 1), far below e4m3's saturation at 448.
            const float relative = dtype == DType::bfloat16      ? 1.0f / 256
                                   : dtype == DType::float16     ? 1.0f / 2048
                                   : dtype == DType::float8_e4m3 ? 1.0f / 16
                                                                 : 0.0f;
            const float absolute = dtype == DType::float16       ? std::ldexp(1.0f, -25)
                                   : dtype == DType::float8_e4m3 ? std::ldexp(1.0f, -10)
                                                                 : 0.0f;
            ASSERT_LE(std::fabs(stored - expected), relative * std::fabs(expected) + absolute)
                << b << ' ' << s << ' ' << h << ' ' << d;
          }
    const std::vector<float> back = unpack(storage.data(), shape, dtype, layout);
    const std::vector<std::byte> again = pack(back, shape, dtype, layout);
    EXPECT_EQ(again, storage) << "pack(unpack(x)) must reproduce x exactly";
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, BenchPacking, ::testing::Values(Layout::bshd, Layout::bhsd),
                         [](const ::testing::TestParamInfo<Layout>& info) { return std::string(layout_name(info.param)); });

TEST(BenchInputs, RandomValuesAreFreshPerSeedAndNormalised) {
  const std::vector<float> a = random_values(100000, 1), b = random_values(100000, 2), a_again = random_values(100000, 1);
  EXPECT_EQ(a, a_again);
  EXPECT_NE(a, b);
  double sum = 0, squares = 0;
  for (float x : a) sum += x, squares += static_cast<double>(x) * x;
  EXPECT_NEAR(sum / a.size(), 0.0, 0.02);
  EXPECT_NEAR(squares / a.size(), 1.0, 0.03);
}

}  // namespace
}  // namespace tileflash::bench
