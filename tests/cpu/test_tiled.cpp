// The tiled CPU kernels against the fp64 reference, for every kernel set this CPU runs
// (TILEFLASH_CPU_ISA selects it), with the tolerance rule of tests/common/accuracy.h.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "common/attention_case.h"
#include "cpu/tiled_kernels.h"
#include "tileflash/attention.h"

namespace tileflash::testing {
namespace {

class Tiled : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override { setenv("TILEFLASH_CPU_ISA", GetParam(), 1); }
  void TearDown() override { unsetenv("TILEFLASH_CPU_ISA"); }

  void check(const CaseConfig& config, std::uint64_t seed, bool with_backward = true) {
    SCOPED_TRACE(std::string(cpu::tiled::best_kernels().name) + ": " + config.describe());
    AttentionCase c(config, seed);
    expect_forward_matches_reference(c, Backend::cpu);
    if (with_backward) expect_backward_matches_reference(c, Backend::cpu);
  }
};

CaseConfig shape(std::int64_t seq_q, std::int64_t seq_k, std::int64_t head_dim, std::int64_t heads_q = 2,
                 std::int64_t heads_kv = 2, std::int64_t batch = 1) {
  CaseConfig c;
  c.batch = batch;
  c.seq_q = seq_q;
  c.seq_k = seq_k;
  c.head_dim = head_dim;
  c.heads_q = heads_q;
  c.heads_kv = heads_kv;
  c.num_threads = 2;
  return c;
}

TEST_P(Tiled, OddShapes) {
  const CaseConfig cases[] = {shape(1, 1, 8),
                              shape(1, 37, 40),
                              shape(37, 1, 64),
                              shape(37, 37, 3),
                              shape(128, 128, 64),
                              shape(577, 130, 80),
                              shape(65, 577, 128, 4, 1),
                              shape(100, 63, 256),
                              shape(64, 64, 16, 3, 3, 3)};
  std::uint64_t seed = 10;
  for (const CaseConfig& c : cases) check(c, ++seed);
}

TEST_P(Tiled, LongSequence) { check(shape(1000, 1000, 64, 1, 1), 20); }

TEST_P(Tiled, CausalAndWindowsBothDirections) {
  std::uint64_t seed = 30;
  for (auto [sq, sk] : {std::pair{77, 200}, std::pair{200, 77}, std::pair{130, 130}}) {
    CaseConfig c = shape(sq, sk, 32);
    c.causal = true;
    check(c, ++seed);
    c.causal = false;
    c.window_left = 20;
    c.window_right = 5;
    check(c, ++seed);
    c.window_right = -1;
    check(c, ++seed);
    c.causal = true;
    c.window_left = 0;  // only the diagonal
    check(c, ++seed);
  }
}

TEST_P(Tiled, LogitTerms) {
  std::uint64_t seed = 40;
  CaseConfig c = shape(70, 90, 40, 4, 2, 2);
  c.softcap = 5.0f;
  c.input_stddev = 3.0;
  check(c, ++seed);
  c = shape(70, 90, 40, 4, 2, 2);
  for (auto bias : {CaseConfig::Bias::full, CaseConfig::Bias::per_head, CaseConfig::Bias::per_batch}) {
    c.bias = bias;
    check(c, ++seed);
  }
  c.bias_dtype = c.dtype;
  c.alibi = CaseConfig::Alibi::per_batch_head;
  check(c, ++seed);
  c.bias = CaseConfig::Bias::none;
  c.alibi = CaseConfig::Alibi::per_head;
  c.softmax_scale = 0.3f;
  check(c, ++seed);
}

TEST_P(Tiled, DropoutMatchesTheReferenceMask) {
  CaseConfig c = shape(90, 131, 24, 2, 1, 2);
  c.dropout_p = 0.2f;
  c.dropout_seed = 0x123456789abcdefULL;
  c.dropout_offset = (7ULL << 32) + 5;
  check(c, 50);
  c.causal = true;
  c.dropout_p = 0.7f;
  check(c, 51);
}

TEST_P(Tiled, VarlenWithEmptySequences) {
  CaseConfig c;
  c.seqlens_q = {5, 0, 130, 64, 1, 0};
  c.seqlens_k = {7, 9, 100, 0, 65, 0};
  c.heads_q = 4;
  c.heads_kv = 2;
  c.head_dim = 48;
  c.num_threads = 3;
  check(c, 60);
  c.causal = true;
  c.bias = CaseConfig::Bias::full;
  c.heads_first = true;
  check(c, 61);
}

TEST_P(Tiled, EveryFeatureTogether) {
  for (DType dtype : {DType::float32, DType::bfloat16, DType::float16}) {
    CaseConfig c;
    c.seqlens_q = {70, 0, 33};
    c.seqlens_k = {90, 12, 100};
    c.heads_q = 6;
    c.heads_kv = 2;
    c.head_dim = 40;
    c.dtype = dtype;
    c.heads_first = true;
    c.causal = true;
    c.window_left = 40;
    c.softcap = 8.0f;
    c.bias = CaseConfig::Bias::per_head;
    c.bias_dtype = dtype;
    c.alibi = CaseConfig::Alibi::per_head;
    c.dropout_p = 0.1f;
    c.dropout_seed = 99;
    c.num_threads = 2;
    check(c, 70);
  }
}

TEST_P(Tiled, LowPrecisionDtypesAndLayouts) {
  std::uint64_t seed = 80;
  for (DType dtype : {DType::bfloat16, DType::float16}) {
    for (bool heads_first : {false, true}) {
      CaseConfig c = shape(150, 201, 64, 4, 2, 2);
      c.dtype = dtype;
      c.heads_first = heads_first;
      c.causal = heads_first;
      check(c, ++seed);
    }
  }
  CaseConfig c = shape(150, 201, 128, 2, 1);
  c.heads_first = true;
  check(c, ++seed);
}

// bf16 inputs take the bf16-product forward of the AMX set (head_dim padded to 32, query
// tiles padded to whole AMX tiles, P rounded to bf16); the other sets convert to fp32.
TEST_P(Tiled, Bf16ProductsAtOddShapesAndEveryLogitTerm) {
  std::uint64_t seed = 90;
  const CaseConfig shapes[] = {shape(1, 1, 8),       shape(37, 577, 40, 4, 1), shape(577, 37, 80),
                               shape(1000, 130, 64, 1, 1), shape(100, 200, 96, 2, 2, 2), shape(33, 300, 128),
                               shape(20, 97, 256)};
  for (CaseConfig c : shapes) {
    c.dtype = DType::bfloat16;
    check(c, ++seed);
    c.causal = true;
    c.heads_first = true;
    check(c, ++seed);
  }
  CaseConfig c = shape(130, 250, 64, 4, 2, 2);
  c.dtype = DType::bfloat16;
  c.window_left = 30;
  c.window_right = 7;
  c.softcap = 5.0f;
  c.bias = CaseConfig::Bias::per_head;
  c.bias_dtype = DType::bfloat16;
  c.alibi = CaseConfig::Alibi::per_head;
  c.dropout_p = 0.15f;
  c.dropout_seed = 7;
  check(c, ++seed);
  c.input_stddev = 30.0;  // one-hot rows: the running maximum jumps between key tiles
  c.softcap = 0.0f;
  c.dropout_p = 0.0f;
  check(c, ++seed);
}

// All logits exactly 0: the running maximum is 0.0 from the first key tile on.
TEST_P(Tiled, ZeroLogitsOverManyKeyTiles) {
  CaseConfig config = shape(200, 300, 32);
  config.window_left = 150;
  AttentionCase c(config, 95);
  c.q.fill(0.0);
  expect_forward_matches_reference(c, Backend::cpu);
  expect_backward_matches_reference(c, Backend::cpu);
}

TEST_P(Tiled, HugeLogitsDoNotOverflow) {
  CaseConfig config = shape(40, 70, 16);
  config.input_stddev = 100.0;  // logits of magnitude ~1e4: P is one-hot
  config.softmax_scale = 1.0f;
  AttentionCase c(config, 90);
  expect_forward_matches_reference(c, Backend::cpu);
  // With a one-hot P, dS = P (dP - D) cancels exactly in fp64 and to fp32 rounding here
  // (|dP| ~ 10), and dq, dk multiply that by |k|, |q| ~ 100: the gradients are ~0 up
  // to 1e-6 * 10 * 100 * a few.
  AttentionOutputs o = c.new_outputs();
  forward(c.forward_params(o, Backend::cpu));
  backward(c.backward_params(o, Backend::cpu));
  AttentionCase exact = c.converted(DType::float64);
  AttentionOutputs ref = exact.new_outputs();
  forward(exact.forward_params(ref, Backend::reference));
  backward(exact.backward_params(ref, Backend::reference));
  EXPECT_LT(error_stats(o.dq, ref.dq).max_abs_error, 5e-3);
  EXPECT_LT(error_stats(o.dk, ref.dk).max_abs_error, 5e-3);
  EXPECT_LT(error_stats(o.dv, ref.dv).max_abs_error, 1e-5);
}

TEST_P(Tiled, FullyMaskedRowsGiveZerosAndMinusInfinity) {
  CaseConfig config = shape(150, 70, 32);
  config.causal = true;  // bottom-right: rows 0..79 see no key
  config.bias = CaseConfig::Bias::full;
  AttentionCase c(config, 100);
  AttentionOutputs o = c.new_outputs();
  forward(c.forward_params(o, Backend::cpu));
  backward(c.backward_params(o, Backend::cpu));
  const std::int64_t h = config.heads_q, d = config.head_dim;
  for (std::int64_t i = 0; i < 80; ++i) {
    for (std::int64_t head = 0; head < h; ++head) {
      EXPECT_EQ(o.lse.get(head * config.seq_q + i), -INFINITY);
      for (std::int64_t col = 0; col < d; ++col) {
        EXPECT_EQ(o.out.get((i * h + head) * d + col), 0.0);
        EXPECT_EQ(o.dq.get((i * h + head) * d + col), 0.0);
      }
    }
  }
  for (const HostTensor* t : {&o.out, &o.dq, &o.dk, &o.dv}) EXPECT_TRUE(t->all_finite());
  check(config, 101);
}

// An additive bias of -inf is how users pass arbitrary masks; a row masked entirely by
// the bias behaves like a row outside the band.
TEST_P(Tiled, MinusInfinityBiasMasksEntries) {
  CaseConfig config = shape(50, 130, 16);
  config.bias = CaseConfig::Bias::full;
  AttentionCase c(config, 105);
  const std::int64_t sq = config.seq_q, sk = config.seq_k;
  for (std::int64_t h = 0; h < config.heads_q; ++h)
    for (std::int64_t i = 0; i < sq; ++i)
      for (std::int64_t j = 0; j < sk; ++j)
        if (i == 7 || (i + j) % 3 == 0) c.bias.set((h * sq + i) * sk + j, -INFINITY);
  expect_forward_matches_reference(c, Backend::cpu);
  expect_backward_matches_reference(c, Backend::cpu);
  AttentionOutputs o = c.new_outputs();
  forward(c.forward_params(o, Backend::cpu));
  backward(c.backward_params(o, Backend::cpu));
  for (std::int64_t h = 0; h < config.heads_q; ++h) EXPECT_EQ(o.lse.get(h * sq + 7), -INFINITY);
  for (const HostTensor* t : {&o.out, &o.dq, &o.dk, &o.dv}) EXPECT_TRUE(t->all_finite());
}

TEST_P(Tiled, ZeroScaleAndTinyHeadDim) {
  CaseConfig c = shape(33, 101, 1, 3, 1);
  check(c, 106);
  c.head_dim = 17;
  c.softmax_scale = 0.0f;
  check(c, 107);
}

TEST_P(Tiled, EmptyBatch) {
  CaseConfig c = shape(10, 10, 8, 2, 2, 0);
  AttentionCase a(c, 110);
  AttentionOutputs o = a.new_outputs();
  forward(a.forward_params(o, Backend::cpu));
  backward(a.backward_params(o, Backend::cpu));
  EXPECT_EQ(o.out.numel(), 0);
}

void expect_bitwise_equal(const HostTensor& a, const HostTensor& b, const char* name) {
  ASSERT_EQ(a.bytes(), b.bytes());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.bytes()), 0) << name << " differs between thread counts";
}

TEST_P(Tiled, ThreadCountDoesNotChangeTheResult) {
  CaseConfig config = shape(300, 260, 64, 2, 1, 1);
  config.causal = true;
  config.dropout_p = 0.1f;
  std::vector<AttentionOutputs> runs;
  for (int threads : {1, 3, 8}) {
    config.num_threads = threads;
    AttentionCase c(config, 120);
    AttentionOutputs o = c.new_outputs();
    forward(c.forward_params(o, Backend::cpu));
    backward(c.backward_params(o, Backend::cpu));
    runs.push_back(std::move(o));
  }
  for (std::size_t r = 1; r < runs.size(); ++r) {
    expect_bitwise_equal(runs[0].out, runs[r].out, "out");
    expect_bitwise_equal(runs[0].lse, runs[r].lse, "lse");
    expect_bitwise_equal(runs[0].dq, runs[r].dq, "dq");
    expect_bitwise_equal(runs[0].dk, runs[r].dk, "dk");
    expect_bitwise_equal(runs[0].dv, runs[r].dv, "dv");
  }
}

// More threads than (sequence, kv head) units: 16 threads over 4 units, so 12 threads
// take tasks from units other threads own, and the forward's tasks claim, pack and wait
// for the same key tiles of a GQA group at once (key tiles are packed on first use).
TEST_P(Tiled, ManyThreadsShareTheKeyTilesOfAGqaGroup) {
  std::uint64_t seed = 130;
  for (DType dtype : {DType::float32, DType::bfloat16}) {
    for (bool causal : {false, true}) {
      CaseConfig c = shape(400, 700, 64, 6, 2, 2);
      c.dtype = dtype;
      c.causal = causal;
      c.num_threads = 16;
      check(c, ++seed, /*with_backward=*/false);
    }
  }
}

// Calls from several threads take turns on the one pool (its workers join each job
// without a lock); each caller must get its own result.
TEST(TiledThreadPool, ConcurrentCallersGetTheirOwnResults) {
  std::vector<std::thread> callers;
  for (int k = 0; k < 3; ++k)
    callers.emplace_back([k] {
      CaseConfig c = shape(200 + 37 * k, 300, 64, 4, 2);
      c.causal = k % 2 == 1;
      c.num_threads = 4;
      AttentionCase a(c, 140 + static_cast<std::uint64_t>(k));
      expect_forward_matches_reference(a, Backend::cpu);
      expect_backward_matches_reference(a, Backend::cpu);
    });
  for (std::thread& t : callers) t.join();
}

// The AMX set is chosen exactly where the CPU and the OS allow it; elsewhere asking for
// it gives the best other set, and the bf16 forward stays off.
TEST(TiledKernelChoice, AmxOnlyWhereUsable) {
  setenv("TILEFLASH_CPU_ISA", "amx", 1);
  const cpu::tiled::KernelSet& chosen = cpu::tiled::best_kernels();
  unsetenv("TILEFLASH_CPU_ISA");
  RecordProperty("kernel_set", chosen.name);
  EXPECT_EQ(std::string(chosen.name) == "amx", cpu::tiled::amx_usable()) << chosen.name;
  EXPECT_EQ(chosen.forward_tile_bf16 != nullptr, cpu::tiled::amx_usable()) << chosen.name;
  EXPECT_EQ(std::string(cpu::tiled::best_kernels().name), std::string(chosen.name));
}

INSTANTIATE_TEST_SUITE_P(KernelSets, Tiled, ::testing::Values("scalar", "avx2", "avx512", "amx"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace tileflash::testing
