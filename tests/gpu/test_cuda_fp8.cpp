// The Hopper FP8 (e4m3) forward against the fp64 reference of the dequantised inputs, under
// the tolerance rule with a same-precision standard attention (P rounded to e4m3); the
// shapes cover odd lengths, GQA, causal and windowed bands, varlen, every head-dim tile of
// the build, both output dtypes and absent descales. Skips without an sm_90 GPU.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/attention_case.h"
#include "gpu/gpu_util.h"
#include "tileflash/attention.h"

namespace tileflash::testing {
namespace {

#if TILEFLASH_TESTS_WITH_CUDA

#define SKIP_WITHOUT_HOPPER()                                                       \
  do {                                                                              \
    SKIP_WITHOUT_GPU();                                                             \
    if (!gpu::hopper_path_active()) GTEST_SKIP() << "FP8 runs on the sm_90 forward"; \
  } while (0)

CaseConfig fp8_case(std::int64_t head_dim) {
  CaseConfig c;
  c.dtype = DType::float8_e4m3;
  c.head_dim = head_dim;
  c.input_stddev = 3.0;  // logits of a few units after the descales below
  c.q_descale = 0.6f;
  c.k_descale = 0.35f;
  c.v_descale = 1.7f;
  return c;
}

void expect_fp8_matches_reference(const CaseConfig& config, std::uint64_t seed) {
  AttentionCase c(config, seed);
  if (!gpu::forward_supported_on_gpu(c)) return;
  AttentionCase exact = c.converted(DType::float64);
  AttentionOutputs result = c.new_outputs(), baseline = c.new_outputs(), reference = exact.new_outputs();
  EXPECT_EQ(gpu::forward_on_gpu(c.forward_params(result, Backend::cuda)).kernel, "sm90") << config.describe();
  standard_attention_forward(c.forward_params(baseline, Backend::reference));
  forward(exact.forward_params(reference, Backend::reference));
  EXPECT_TRUE(within_tolerance("out", result.out, baseline.out, reference.out, c.out_dtype())) << config.describe();
  // The floor of FP8, not of float32, for the log-sum-exp: Hopper's FP8 wgmma keeps about
  // 14 significant bits while it accumulates Q K^T (DeepSeek-V3's report; 16-bit wgmma
  // accumulates in full fp32), which the baseline's fp32 S does not model. Measured on an
  // H200: at most 3.1e-3 at |lse| up to 10, where the floor allows 1e-2.
  if (config.with_lse)
    EXPECT_TRUE(within_tolerance("lse", result.lse, baseline.lse, reference.lse, DType::float8_e4m3))
        << config.describe();
}

TEST(CudaForwardFp8, ShapesAgainstReference) {
  SKIP_WITHOUT_HOPPER();
  struct Shape {
    std::int64_t batch, seq_q, seq_k, heads_q, heads_kv;
  };
  const Shape shapes[] = {{2, 1, 37, 4, 2}, {1, 577, 577, 2, 2}, {2, 37, 300, 4, 1}, {1, 300, 130, 2, 2},
                          {1, 128, 4097, 2, 1}};
  std::uint64_t seed = 100;
  for (std::int64_t head_dim : {64, 80, 128, 256})
    for (const Shape& s : shapes)
      for (bool causal : {false, true}) {
        CaseConfig c = fp8_case(head_dim);
        c.batch = s.batch;
        c.seq_q = s.seq_q;
        c.seq_k = s.seq_k;
        c.heads_q = s.heads_q;
        c.heads_kv = s.heads_kv;
        c.causal = causal;
        c.fp8_out_dtype = seed % 2 ? DType::float16 : DType::bfloat16;
        expect_fp8_matches_reference(c, ++seed);
      }
}

TEST(CudaForwardFp8, WindowsVarlenAndAbsentDescales) {
  SKIP_WITHOUT_HOPPER();
  CaseConfig c = fp8_case(128);
  c.batch = 2;
  c.seq_q = 333;
  c.seq_k = 901;
  c.heads_q = 6;
  c.heads_kv = 2;
  c.window_left = 100;
  c.window_right = 17;
  expect_fp8_matches_reference(c, 1);

  c.q_descale = c.k_descale = c.v_descale = 0.0f;
  c.input_stddev = 0.7;
  c.window_left = c.window_right = -1;
  expect_fp8_matches_reference(c, 2);

  // Sequences that end inside a group of 16 keys and an empty one: the transposed V's
  // gaps between sequences must read as zeros.
  CaseConfig v = fp8_case(64);
  v.seqlens_q = {1, 37, 200, 0, 130, 5};
  v.seqlens_k = {5, 37, 450, 3, 129, 0};
  v.heads_q = 4;
  v.heads_kv = 2;
  for (bool causal : {false, true}) {
    v.causal = causal;
    expect_fp8_matches_reference(v, causal ? 4 : 3);
  }
  v.head_dim = 256;
  expect_fp8_matches_reference(v, 5);
}

TEST(CudaForwardFp8, PersistentBlocksWalkSeveralTiles) {
  SKIP_WITHOUT_HOPPER();
  const gpu::PersistentBlockCap cap(3);
  CaseConfig c = fp8_case(128);
  c.batch = 3;
  c.seq_q = 700;
  c.seq_k = 650;
  c.heads_q = 2;
  c.heads_kv = 1;
  for (bool causal : {false, true}) {
    c.causal = causal;
    expect_fp8_matches_reference(c, causal ? 7 : 6);
  }
}

// The calls the FP8 path refuses get an error naming the argument; none falls back.
TEST(CudaForwardFp8, RefusalsNameTheArgument) {
  SKIP_WITHOUT_HOPPER();
  const auto expect_error = [](CaseConfig config, const std::string& argument, const std::string& words) {
    AttentionCase c(config, 9);
    AttentionOutputs o = c.new_outputs();
    try {
      gpu::forward_on_gpu(c.forward_params(o, Backend::cuda));
      ADD_FAILURE() << "no error for " << config.describe();
    } catch (const Error& e) {
      EXPECT_EQ(e.argument(), argument) << e.what();
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  CaseConfig c = fp8_case(64);
  c.softcap = 20.0f;
  expect_error(c, "softcap", "not supported with float8_e4m3fn");
  c = fp8_case(40);
  expect_error(c, "q", "multiple of 16");
  c = fp8_case(64);
  {
    const gpu::AmperePathOnly ampere;
    expect_error(c, "q", "Hopper (sm_90) forward only");
  }
}

#endif  // TILEFLASH_TESTS_WITH_CUDA

}  // namespace
}  // namespace tileflash::testing
