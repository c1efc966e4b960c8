// The test utilities themselves: storage rounding, poisoning, views and error measures.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "common/accuracy.h"
#include "common/host_tensor.h"

namespace tileflash::testing {
namespace {

TEST(HostTensor, StoresRoundedToItsDtype) {
  HostTensor t(DType::bfloat16, {3});
  t.set(0, 1.0 + 1.0 / 256.0);  // halfway between two bf16 values: ties to even (1.0)
  t.set(1, 1.0 + 3.0 / 256.0);  // ties to even (1 + 4/256)
  t.set(2, -2.5);
  EXPECT_EQ(t.get(0), 1.0);
  EXPECT_EQ(t.get(1), 1.0 + 4.0 / 256.0);
  EXPECT_EQ(t.get(2), -2.5);
  HostTensor h(DType::float16, {1});
  h.set(0, 70000.0);  // beyond the fp16 range
  EXPECT_TRUE(std::isinf(h.get(0)));
}

TEST(HostTensor, PoisonAndFreshRandomValues) {
  HostTensor t(DType::float32, {4, 5});
  t.fill_normal(3);
  EXPECT_TRUE(t.all_finite());
  HostTensor same(DType::float32, {4, 5}), other(DType::float32, {4, 5});
  same.fill_normal(3);
  other.fill_normal(4);
  EXPECT_EQ(error_stats(same, t).max_abs_error, 0.0);
  EXPECT_GT(error_stats(other, t).max_abs_error, 0.0);
  t.poison();
  for (std::int64_t i = 0; i < t.numel(); ++i) EXPECT_TRUE(std::isnan(t.get(i)));
  EXPECT_FALSE(t.all_finite());
}

TEST(HostTensor, ViewDescribesTheBuffer) {
  HostTensor t(DType::float16, {2, 3, 4, 5});
  const TensorView v = t.view();
  EXPECT_EQ(v.rank, 4);
  EXPECT_EQ(v.data, t.data());
  EXPECT_EQ(v.stride[0], 60);
  EXPECT_EQ(v.stride[3], 1);
  EXPECT_EQ(t.bytes(), 2u * 120u);
  const TensorView heads_first = v.transposed(1, 2);
  EXPECT_EQ(heads_first.shape[1], 4);
  EXPECT_EQ(heads_first.stride[1], 5);
}

TEST(Accuracy, ErrorStatsTreatEqualInfinitiesAsExactAndNaNAsFailure) {
  HostTensor ref(DType::float32, {3}), res(DType::float32, {3});
  ref.set(0, -INFINITY);
  res.set(0, -INFINITY);
  ref.set(1, 2.0);
  res.set(1, 2.5);
  ref.set(2, 1.0);
  res.set(2, 1.0);
  ErrorStats s = error_stats(res, ref);
  EXPECT_DOUBLE_EQ(s.max_abs_error, 0.5);
  EXPECT_DOUBLE_EQ(s.max_abs_reference, 2.0);
  res.set(2, std::numeric_limits<double>::quiet_NaN());
  EXPECT_TRUE(std::isinf(error_stats(res, ref).max_abs_error));
}

TEST(Accuracy, ToleranceIsTwiceTheBaselineErrorPlusAFloor) {
  HostTensor ref(DType::float64, {2}), baseline(DType::float64, {2}), res(DType::float64, {2});
  ref.set(0, 1.0);
  ref.set(1, -1.0);
  baseline.set(0, 1.01);
  baseline.set(1, -1.0);
  res.set(0, 1.0);
  res.set(1, -1.019);
  EXPECT_TRUE(within_tolerance("x", res, baseline, ref, DType::float32));
  res.set(1, -1.021);
  EXPECT_FALSE(within_tolerance("x", res, baseline, ref, DType::float32));
  res.set(1, -1.0);
  baseline.set(1, std::numeric_limits<double>::quiet_NaN());
  EXPECT_FALSE(within_tolerance("x", res, baseline, ref, DType::float32));
}

}  // namespace
}  // namespace tileflash::testing
