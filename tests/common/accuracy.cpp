#include "common/accuracy.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "api/problem.h"
#include "cpu/reference.h"

namespace tileflash::testing {

ErrorStats error_stats(const HostTensor& result, const HostTensor& reference) {
  ErrorStats stats;
  double diff_sq = 0.0, ref_sq = 0.0;
  for (std::int64_t i = 0; i < reference.numel(); ++i) {
    const double r = reference.get(i), x = result.get(i);
    if (std::isinf(r) || std::isinf(x) || std::isnan(x) || std::isnan(r)) {
      if (!(std::isinf(r) && x == r)) stats.max_abs_error = INFINITY;
      continue;
    }
    const double e = std::abs(x - r);
    stats.max_abs_error = std::max(stats.max_abs_error, e);
    stats.max_abs_reference = std::max(stats.max_abs_reference, std::abs(r));
    diff_sq += e * e;
    ref_sq += r * r;
  }
  stats.relative_l2_error = ref_sq > 0.0 ? std::sqrt(diff_sq / ref_sq) : std::sqrt(diff_sq);
  return stats;
}

double tolerance_floor(DType dtype) {
  switch (dtype) {
    case DType::float16:
      return 2e-4;
    case DType::bfloat16:
    case DType::float8_e4m3:  // the output is bfloat16 or float16
      return 1e-3;
    case DType::float64:
      return 1e-12;
    default:
      return 2e-6;
  }
}

::testing::AssertionResult within_tolerance(const char* name, const HostTensor& result, const HostTensor& baseline,
                                            const HostTensor& reference, DType dtype) {
  if (result.numel() != reference.numel() || baseline.numel() != reference.numel())
    return ::testing::AssertionFailure() << name << ": element counts differ";
  const ErrorStats r = error_stats(result, reference);
  const ErrorStats b = error_stats(baseline, reference);
  // An unwritten (NaN) baseline element would make the allowance infinite.
  if (!std::isfinite(b.max_abs_error))
    return ::testing::AssertionFailure() << name << ": the same-precision baseline itself disagrees with the reference "
                                         << "(NaN or infinity)";
  const double allowed = 2.0 * b.max_abs_error + tolerance_floor(dtype) * std::max(1.0, r.max_abs_reference);
  std::ostringstream msg;
  msg << name << ": max abs error " << r.max_abs_error << " (relative L2 " << r.relative_l2_error
      << "), standard attention at the same precision " << b.max_abs_error << ", allowed " << allowed
      << ", |reference| max " << r.max_abs_reference;
  if (r.max_abs_error <= allowed) return ::testing::AssertionSuccess() << msg.str();
  return ::testing::AssertionFailure() << msg.str();
}

void standard_attention_forward(const ForwardParams& params) {
  cpu::materialized_forward(params, detail::validate_forward(params), cpu::MaterializedPrecision::storage);
}

void standard_attention_backward(const BackwardParams& params) {
  cpu::materialized_backward(params, detail::validate_backward(params), cpu::MaterializedPrecision::storage);
}

}  // namespace tileflash::testing
