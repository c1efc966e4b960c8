// The CUDA forward against the CPU fp64 reference: a grid of shapes (odd sizes, every
// head-dim tile), every feature, dropout masks bit-identical to the CPU's, the cases the
// kernels refuse, and one 128k-token sequence. Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/attention_case.h"
#include "gpu/feature_cases.h"
#include "gpu/gpu_util.h"
#include "tileflash/attention.h"

namespace tileflash::testing {
namespace {

#if TILEFLASH_TESTS_WITH_CUDA

// The kernel the selector must pick: the Hopper one on sm_90 for everything but the logit
// extras (softcap, bias, ALiBi, dropout), which stay on the Ampere-class kernel.
std::string expected_forward_kernel(const CaseConfig& c) {
  return gpu::hopper_path_active() && !gpu::uses_logit_extras(c) ? "sm90" : "sm80";
}

// GPU result, same-precision standard attention and fp64 reference, under the tolerance
// rule; every output element must have been written (the poison is NaN).
void expect_gpu_matches_reference(const CaseConfig& config, std::uint64_t seed) {
  AttentionCase c(config, seed);
  if (!gpu::forward_supported_on_gpu(c)) return;
  AttentionCase exact = c.converted(DType::float64);
  AttentionOutputs result = c.new_outputs(), baseline = c.new_outputs(), reference = exact.new_outputs();
  EXPECT_EQ(gpu::forward_on_gpu(c.forward_params(result, Backend::cuda)).kernel, expected_forward_kernel(config))
      << config.describe();
  standard_attention_forward(c.forward_params(baseline, Backend::reference));
  forward(exact.forward_params(reference, Backend::reference));
  EXPECT_TRUE(within_tolerance("out", result.out, baseline.out, reference.out, config.dtype)) << config.describe();
  if (config.with_lse)
    EXPECT_TRUE(within_tolerance("lse", result.lse, baseline.lse, reference.lse, DType::float32)) << config.describe();
}

TEST(CudaForward, ShapeGrid) {
  SKIP_WITHOUT_GPU();
  std::uint64_t seed = 100;
  gpu::on_each_kernel_path([&] {
    for (DType dtype : {DType::bfloat16, DType::float16})
      for (const CaseConfig& c : gpu::shape_grid_cases(dtype, {8, 40, 64, 80, 96, 128, 176, 200, 256}))
        expect_gpu_matches_reference(c, ++seed);
  });
}

// The persistent Hopper forward with three blocks: each walks dozens of row blocks.
TEST(CudaForward, PersistentBlocksWalkSeveralRowBlocks) {
  SKIP_WITHOUT_GPU();
  const gpu::PersistentBlockCap three_blocks(3);
  std::uint64_t seed = 800;
  for (DType dtype : {DType::bfloat16, DType::float16})
    for (std::int64_t head_dim : {64, 80, 128, 256})
      for (const CaseConfig& c : gpu::persistent_walk_cases(dtype, head_dim)) expect_gpu_matches_reference(c, ++seed);
}

TEST(CudaForward, EveryFeature) {
  SKIP_WITHOUT_GPU();
  std::uint64_t seed = 200;
  gpu::on_each_kernel_path([&] {
    for (DType dtype : {DType::bfloat16, DType::float16})
      for (std::int64_t head_dim : {64, 80, 128}) {
        const CaseConfig base = gpu::base_case(dtype, head_dim);
        gpu::CaseVariants variants{base, gpu::shared_feature_cases(base)};
        variants.add([](CaseConfig& c) { c.window_right = 0; c.window_left = 0; });
        variants.add([](CaseConfig& c) { c.heads_q = 4; c.heads_kv = 1; });
        variants.add([](CaseConfig& c) { c.with_lse = false; });
        // Large logits (~1e3 in bf16). In fp16 the fp32 sums of q.k then carry absolute
        // errors near 1e-3, which the same-precision baseline meets only by the luck of its
        // summation order, so fp16 takes logits ~1e2.
        variants.add([&](CaseConfig& c) {
          c.input_stddev = dtype == DType::bfloat16 ? 30.0 : 8.0;
          c.seq_q = 100;
        });
        for (const CaseConfig& c : variants.cases) expect_gpu_matches_reference(c, ++seed);
      }
  });
}

// Logits spread over tens of units across ~12 key tiles: a row's reference maximum lags
// behind by up to 2^8 in some tiles and jumps past it in others (OnlineSoftmax's lazy
// rescale), with lse, causal and not.
TEST(CudaForward, LaggingReferenceMaximum) {
  SKIP_WITHOUT_GPU();
  std::uint64_t seed = 900;
  gpu::on_each_kernel_path([&] {
    for (DType dtype : {DType::bfloat16, DType::float16})
      for (std::int64_t head_dim : {64, 96, 256})
        for (double stddev : {2.0, 3.0}) {
          CaseConfig c = gpu::base_case(dtype, head_dim);
          c.seq_q = 257;
          c.seq_k = 1500;
          c.causal = stddev == 3.0;
          c.input_stddev = stddev;
          expect_gpu_matches_reference(c, ++seed);
        }
  });
}

// From 1024 query rows (2048 under a band mask), head dims up to 64 take the Hopper forward's tall tile (192 rows,
// three consumer warpgroups, each computing only the key tiles its rows need). Row counts
// that leave a partial last tile (2048: one warpgroup without rows; 2100: one with 52),
// which the persistent order takes last without a mask; GQA, causal with seq_q != seq_k,
// causal over two sequences, a sliding window, both dtypes.
TEST(CudaForward, TallTileFromLongSequences) {
  SKIP_WITHOUT_GPU();
  std::uint64_t seed = 700;
  for (int variant = 0; variant < 5; ++variant) {
    CaseConfig c = gpu::base_case(variant == 2 ? DType::float16 : DType::bfloat16, variant == 2 ? 40 : 64);
    c.batch = variant == 4 ? 2 : 1;
    c.heads_q = 2;
    c.heads_kv = 1;
    c.seq_q = variant == 3 ? 2048 : variant == 4 ? 2100 : 8200;
    c.seq_k = variant == 1 ? 9001 : variant == 3 ? 3001 : variant == 4 ? 2100 : 8200;
    c.causal = variant == 1 || variant == 4;
    if (variant == 2) {
      c.window_left = 1000;
      c.window_right = 0;
    }
    expect_gpu_matches_reference(c, ++seed);
  }
}

// Under a causal or window band, with more work tiles than multiprocessors, the Hopper
// forward's tall tile takes its tiles from a counter in device memory (zeroed per call):
// every tile computed once, by whichever block is free. Causal with seq_q != seq_k, GQA,
// a window (fp16), varlen, two calls in a row on one stream; and the 128-row tiles (d = 64
// at 1100 rows, d = 128) that keep the fixed rounds.
TEST(CudaForward, DynamicTileOrderUnderBands) {
  SKIP_WITHOUT_GPU();
  std::uint64_t seed = 1000;
  for (int variant = 0; variant < 5; ++variant) {
    CaseConfig c = gpu::base_case(variant == 3 ? DType::float16 : DType::bfloat16, variant == 2 ? 128 : 64);
    c.batch = 2;
    c.heads_q = 16;
    c.heads_kv = 4;
    c.seq_q = variant == 1 || variant == 3 ? 2100 : 1100;
    c.seq_k = variant == 1 ? 2500 : variant == 3 ? 2100 : 1300;
    c.causal = variant != 3;
    if (variant == 3) {
      c.window_left = 300;
      c.window_right = 40;
    }
    if (variant == 4) {
      c.seqlens_q = {2100, 700, 2500};
      c.seqlens_k = {2100, 900, 2500};
    }
    expect_gpu_matches_reference(c, ++seed);
    expect_gpu_matches_reference(c, ++seed);
  }
}

// The tiles of sm_86/89/120 (99 KiB of shared memory per block) and of sm_80 (163 KiB),
// run on this GPU under a cap: the plain path's base tiles are otherwise only used where
// the device has less shared memory than the large ones need.
TEST(CudaForward, SmallerSharedMemoryTiles) {
  SKIP_WITHOUT_GPU();
  std::uint64_t seed = 900;
  const gpu::AmperePathOnly ampere;
  for (int cap : {99 * 1024, 163 * 1024}) {
    gpu::SharedMemoryCap limit(cap);
    for (DType dtype : {DType::bfloat16, DType::float16})
      for (std::int64_t head_dim : {40, 64, 80, 128, 200, 256})
        for (bool causal : {false, true}) {
          CaseConfig c = gpu::base_case(dtype, head_dim);
          c.seq_q = causal ? 577 : 129;
          c.seq_k = causal ? 1000 : 577;
          c.causal = causal;
          expect_gpu_matches_reference(c, ++seed);
        }
  }
}

// With V = identity (seq_k = head_dim, one key per output column), out[i, j] is the
// dropped-out P[i, j]: zero exactly where the entry was dropped. The GPU's zero pattern
// must equal the fp64 reference's bit for bit.
TEST(CudaForward, DropoutMaskIsBitIdenticalToCpu) {
  SKIP_WITHOUT_GPU();
  for (std::int64_t head_dim : {64, 128}) {
    CaseConfig config = gpu::base_case(DType::bfloat16, head_dim);
    config.seq_q = 301;
    config.seq_k = head_dim;
    config.input_stddev = 0.1;  // every P entry far above zero
    config.dropout_p = 0.4f;
    config.dropout_seed = 0xDEADBEEF12345ull + static_cast<std::uint64_t>(head_dim);
    config.dropout_offset = 0x2000000010ull;
    AttentionCase c(config, 300 + head_dim);
    if (!gpu::forward_supported_on_gpu(c)) continue;
    for (std::int64_t b = 0; b < config.batch; ++b)
      for (std::int64_t j = 0; j < config.seq_k; ++j)
        for (std::int64_t h = 0; h < config.heads_kv; ++h)
          for (std::int64_t d = 0; d < head_dim; ++d)
            c.v.set(((b * config.seq_k + j) * config.heads_kv + h) * head_dim + d, j == d ? 1.0 : 0.0);
    AttentionCase exact = c.converted(DType::float64);
    AttentionOutputs result = c.new_outputs(), reference = exact.new_outputs();
    gpu::forward_on_gpu(c.forward_params(result, Backend::cuda));
    forward(exact.forward_params(reference, Backend::reference));
    std::int64_t mismatches = 0, dropped = 0;
    for (std::int64_t i = 0; i < reference.out.numel(); ++i) {
      const bool reference_dropped = reference.out.get(i) == 0.0;
      dropped += reference_dropped;
      mismatches += reference_dropped != (result.out.get(i) == 0.0);
    }
    EXPECT_EQ(mismatches, 0) << config.describe();
    const double rate = static_cast<double>(dropped) / static_cast<double>(reference.out.numel());
    EXPECT_NEAR(rate, config.dropout_p, 0.02) << config.describe();
  }
}

TEST(CudaForward, RunsAreBitwiseRepeatable) {
  SKIP_WITHOUT_GPU();
  for (float dropout_p : {0.1f, 0.0f}) {  // the Ampere-class kernel, and the Hopper one on sm_90
    CaseConfig config = gpu::base_case(DType::bfloat16, 128);
    config.causal = true;
    config.dropout_p = dropout_p;
    AttentionCase c(config, 400);
    if (!gpu::forward_supported_on_gpu(c)) return;
    AttentionOutputs first = c.new_outputs(), second = c.new_outputs();
    gpu::forward_on_gpu(c.forward_params(first, Backend::cuda));
    gpu::forward_on_gpu(c.forward_params(second, Backend::cuda));
    ASSERT_EQ(first.out.bytes(), second.out.bytes());
    EXPECT_EQ(std::memcmp(first.out.data(), second.out.data(), first.out.bytes()), 0) << config.describe();
    EXPECT_EQ(std::memcmp(first.lse.data(), second.lse.data(), first.lse.bytes()), 0) << config.describe();
  }
}

// The error a cuda call raises, or "" when it ran.
std::string error_argument(const ForwardParams& host) {
  try {
    gpu::forward_on_gpu(host);
  } catch (const Error& e) {
    return e.argument();
  }
  return "";
}

// A malformed block cap is an error naming the variable, not a silent default.
TEST(CudaForward, PersistentBlockCapIsChecked) {
  SKIP_WITHOUT_GPU();
  if (!gpu::hopper_path_active()) GTEST_SKIP() << "the cap applies to the Hopper forward only";
  AttentionCase c(gpu::base_case(DType::bfloat16, 64), 510);
  AttentionOutputs o = c.new_outputs();
  for (const char* malformed : {"3x", "-1", "0", ""}) {
    const gpu::ScopedEnvironment cap(gpu::kPersistentBlocksVariable, malformed);
    EXPECT_EQ(error_argument(c.forward_params(o, Backend::cuda)), gpu::kPersistentBlocksVariable)
        << '"' << malformed << '"';
  }
}

TEST(CudaForward, RefusesWhatItCannotRun) {
  SKIP_WITHOUT_GPU();
  CaseConfig config = gpu::base_case(DType::float32, 64);
  AttentionCase fp32(config, 500);
  AttentionOutputs o32 = fp32.new_outputs();
  EXPECT_EQ(error_argument(fp32.forward_params(o32, Backend::cuda)), "q") << "float32 on cuda";

  config.dtype = DType::bfloat16;
  config.head_dim = 36;  // not a multiple of 8: rows are not 16-byte vectors
  AttentionCase odd(config, 501);
  AttentionOutputs oo = odd.new_outputs();
  EXPECT_EQ(error_argument(odd.forward_params(oo, Backend::cuda)), "q") << "head_dim 36";

  config.head_dim = 264;
  AttentionCase wide(config, 502);
  AttentionOutputs ow = wide.new_outputs();
  EXPECT_EQ(error_argument(wide.forward_params(ow, Backend::cuda)), "q") << "head_dim 264";

  // Alignment: select on device views without running anything.
  config.head_dim = 64;
  AttentionCase aligned(config, 503);
  AttentionOutputs oa = aligned.new_outputs();
  std::vector<gpu::DeviceBuffer> keep;
  ForwardParams p = gpu::to_device(aligned.forward_params(oa, Backend::cuda), keep);
  const auto selected_argument = [](const ForwardParams& params) -> std::string {
    try {
      select_forward(params);
    } catch (const Error& e) {
      return e.argument();
    }
    return "";
  };
  for (TensorView* t : {&p.q, &p.k, &p.v, &p.out}) t->shape[3] = 56;
  p.q.data = static_cast<std::uint16_t*>(p.q.data) + 8;  // 16 bytes in: still aligned
  EXPECT_EQ(selected_argument(p), "");
  p.k.data = static_cast<std::uint16_t*>(p.k.data) + 1;
  EXPECT_EQ(selected_argument(p), "k") << "misaligned base";
  p.k.data = static_cast<std::uint16_t*>(p.k.data) - 1;
  p.v.stride[1] -= 4;  // rows no longer 16 bytes apart
  EXPECT_EQ(selected_argument(p), "v") << "misaligned stride";
}

TEST(CudaForward, RejectsBadDeviceOffsets) {
  SKIP_WITHOUT_GPU();
  CaseConfig config = gpu::base_case(DType::bfloat16, 64);
  config.seqlens_q = {10, 20};
  config.seqlens_k = {10, 20};
  AttentionCase c(config, 600);
  AttentionOutputs o = c.new_outputs();
  ForwardParams p = c.forward_params(o, Backend::cuda);
  p.max_seqlen_q = p.max_seqlen_k = 20;
  c.cu_seqlens_k.set(1, 31);  // 31 > 30 = the next entry: decreasing offsets
  EXPECT_EQ(error_argument(p), "cu_seqlens_k");
  c.cu_seqlens_k.set(1, 10);
  p.max_seqlen_q = 15;  // a sequence of 20 exceeds it
  EXPECT_EQ(error_argument(p), "cu_seqlens_q");
}

// One causal sequence of 128k tokens: a few rows against an fp64 computation of just
// those rows (the full reference would be 2^34 scores).
TEST(CudaForward, LongSequence128k) {
  SKIP_WITHOUT_GPU();
  CaseConfig config;
  config.dtype = DType::bfloat16;
  config.batch = 1;
  config.seq_q = config.seq_k = 131072;
  config.heads_q = config.heads_kv = 1;
  config.head_dim = 64;
  config.causal = true;
  AttentionCase c(config, 700);
  if (!gpu::forward_supported_on_gpu(c)) return;
  AttentionOutputs o = c.new_outputs();
  gpu::forward_on_gpu(c.forward_params(o, Backend::cuda));
  const double scale = 1.0 / std::sqrt(64.0);
  for (std::int64_t row : {std::int64_t{0}, std::int64_t{65537}, config.seq_q - 1}) {
    std::vector<double> logits(static_cast<std::size_t>(row + 1));
    double max_logit = -INFINITY;
    for (std::int64_t j = 0; j <= row; ++j) {
      double dot = 0.0;
      for (int d = 0; d < 64; ++d) dot += c.q.get(row * 64 + d) * c.k.get(j * 64 + d);
      logits[j] = dot * scale;
      max_logit = std::max(max_logit, logits[j]);
    }
    double sum = 0.0;
    std::vector<double> expected(64, 0.0);
    for (std::int64_t j = 0; j <= row; ++j) {
      const double p = std::exp(logits[j] - max_logit);
      sum += p;
      for (int d = 0; d < 64; ++d) expected[d] += p * c.v.get(j * 64 + d);
    }
    for (int d = 0; d < 64; ++d)
      EXPECT_NEAR(o.out.get(row * 64 + d), expected[d] / sum, 2e-2) << "row " << row << " column " << d;
    EXPECT_NEAR(o.lse.get(row), max_logit + std::log(sum), 1e-3) << "row " << row;
  }
}

// A handful of small shapes over every feature, quick enough for compute-sanitizer
// (memcheck, racecheck): --gtest_filter=CudaForwardSanitizer.*
TEST(CudaForwardSanitizer, SmallGrid) {
  SKIP_WITHOUT_GPU();
  std::uint64_t seed = 800;
  gpu::on_each_kernel_path([&] {
  for (std::int64_t head_dim : {40, 64, 128, 256}) {
    CaseConfig c = gpu::base_case(DType::bfloat16, head_dim);
    c.seq_q = 70;
    c.seq_k = 130;
    c.batch = 1;
    expect_gpu_matches_reference(c, ++seed);
    c.causal = true;
    c.bias = CaseConfig::Bias::per_head;
    c.alibi = CaseConfig::Alibi::per_head;
    c.softcap = 10.0f;
    c.dropout_p = 0.2f;
    expect_gpu_matches_reference(c, ++seed);
    c.seqlens_q = {33, 0, 70};
    c.seqlens_k = {1, 20, 130};
    c.bias = CaseConfig::Bias::none;
    expect_gpu_matches_reference(c, ++seed);
    c.alibi = CaseConfig::Alibi::none;
    c.softcap = 0.0f;
    c.dropout_p = 0.0f;
    expect_gpu_matches_reference(c, ++seed);
  }
  });
}

#else

TEST(CudaForward, NotBuilt) { GTEST_SKIP() << "tileflash was built without CUDA"; }

#endif  // TILEFLASH_TESTS_WITH_CUDA

}  // namespace
}  // namespace tileflash::testing
