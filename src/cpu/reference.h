// The materialised attention of the reference backend, in two precisions:
//  - exact:   fp64 everywhere (the ground truth, reference_forward/backward);
//  - storage: "standard attention" at the storage precision: S and every product
//             accumulated in fp32 from the stored inputs, P, dP and dS rounded to the
//             storage dtype before they enter the next product, outputs rounded.
//             Tests measure how far such a plain implementation lands from the exact
//             one and allow an optimised kernel a small multiple of that error.
#pragma once

#include "api/problem.h"
#include "tileflash/params.h"

namespace tileflash::cpu {

enum class MaterializedPrecision { exact, storage };

void materialized_forward(const ForwardParams& params, const detail::Problem& problem, MaterializedPrecision precision);
void materialized_backward(const BackwardParams& params, const detail::Problem& problem,
                           MaterializedPrecision precision);

}  // namespace tileflash::cpu
