// Test utilities: error measures against an fp64 reference and the tolerance rule.
//
// The rule (FlashAttention-3's): a result passes when its max abs error against the
// fp64 reference is at most twice the error of a same-precision standard attention
// (see standard_attention_forward) against that reference, plus a small floor
// relative to the reference's magnitude.
#pragma once

#include <gtest/gtest.h>

#include "common/host_tensor.h"
#include "tileflash/params.h"

namespace tileflash::testing {

struct ErrorStats {
  double max_abs_error = 0.0;      // +inf when a NaN or a wrong infinity is found
  double relative_l2_error = 0.0;  // ||result - reference|| / ||reference||
  double max_abs_reference = 0.0;  // largest finite |reference| element
};

// Element-wise over equal-shaped tensors; equal infinities (a masked row's lse = -inf)
// count as exact.
ErrorStats error_stats(const HostTensor& result, const HostTensor& reference);

// Floor of the tolerance rule, relative to max(1, max |reference|).
double tolerance_floor(DType dtype);

// Passes when error(result) <= 2 * error(baseline) + tolerance_floor(dtype) * max(1, |ref|max).
::testing::AssertionResult within_tolerance(const char* name, const HostTensor& result, const HostTensor& baseline,
                                            const HostTensor& reference, DType dtype);

// Standard attention at the storage precision, on host tensors: S in fp32 from the stored
// inputs, P rounded to the storage dtype before P.V, outputs rounded; the backward also
// rounds dP and dS before their products. Writes params.out (and lse), or dq, dk, dv.
void standard_attention_forward(const ForwardParams& params);
void standard_attention_backward(const BackwardParams& params);

}  // namespace tileflash::testing
