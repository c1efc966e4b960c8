// The plan that cuts the last round of the Hopper backward's key blocks into query-range
// pieces (src/cuda/common/tail_split.h), checked on the CPU: what it cuts, that the cut
// never ends later in its own model, and that pieces cover a block's walk exactly.
#include <gtest/gtest.h>

#include <cstdint>

#include "cuda/common/tail_split.h"

namespace tileflash::testing {
namespace {

using cuda::plan_tail_split;
using cuda::TailSplit;

// The end of a launch in the plan's model: the whole rounds of uncut blocks, then the
// rounds of pieces (the uncut blocks fill whole rounds, checked below).
std::int64_t modeled_end(std::int64_t blocks, int iterations, int sms, const TailSplit& plan) {
  const std::int64_t whole = blocks - plan.blocks;
  std::int64_t end = (whole + sms - 1) / sms * (iterations + cuda::kBlockFixedIterations);
  if (plan.active())
    end += (static_cast<std::int64_t>(plan.blocks) * plan.pieces + sms - 1) / sms *
           ((iterations + plan.pieces - 1) / plan.pieces + cuda::kBlockFixedIterations + cuda::kPieceCombineIterations);
  return end;
}

TEST(TailSplit, CutsOnlyAPartialLastRound) {
  EXPECT_FALSE(plan_tail_split(132 * 16, 32, 132).active());  // whole rounds
  EXPECT_FALSE(plan_tail_split(4096, 1, 132).active());       // one iteration: nothing to cut
  EXPECT_FALSE(plan_tail_split(0, 32, 132).active());
  EXPECT_FALSE(plan_tail_split(130, 2, 132).active());  // pieces of one iteration cost more than they save

  // d = 64 at 16k tokens: 31 rounds and 4 blocks; those 4 are cut into 16 pieces each.
  const TailSplit d64 = plan_tail_split(4096, 32, 132);
  EXPECT_EQ(d64.blocks, 4);
  EXPECT_EQ(d64.first_block, 4092);
  EXPECT_EQ(d64.pieces, 16);
  // d = 128: 15 rounds and 68 blocks; halves would make 136 pieces, one round too many.
  const TailSplit d128 = plan_tail_split(2048, 32, 132);
  EXPECT_EQ(d128.blocks, 68);
  EXPECT_EQ(d128.first_block, 2048 - 68);
  EXPECT_EQ(d128.pieces, 3);
  // Fewer blocks than SMs: all of them are the last round.
  const TailSplit small = plan_tail_split(18, 20, 132);
  EXPECT_EQ(small.blocks, 18);
  EXPECT_EQ(small.first_block, 0);
  EXPECT_GT(small.pieces, 1);
}

TEST(TailSplit, NeverEndsLaterInItsModel) {
  for (const int sms : {5, 7, 114, 132})
    for (const std::int64_t blocks : {1, 3, 17, 131, 133, 200, 1000, 2048, 4096})
      for (const int iterations : {1, 2, 3, 8, 16, 31, 64, 256}) {
        const TailSplit plan = plan_tail_split(blocks, iterations, sms);
        const TailSplit none{blocks, 0, 1};
        ASSERT_LE(modeled_end(blocks, iterations, sms, plan), modeled_end(blocks, iterations, sms, none))
            << blocks << " blocks, " << iterations << " iterations, " << sms << " SMs";
        if (!plan.active()) continue;
        ASSERT_LE(plan.pieces, iterations);
        ASSERT_LE(plan.pieces, cuda::kMaxPieces);
        ASSERT_EQ(plan.first_block + plan.blocks, blocks);
        ASSERT_EQ(plan.first_block % sms, 0);
        ASSERT_LT(plan.blocks, sms);
      }
}

TEST(TailSplit, PiecesCoverTheWalk) {
  for (const int iterations : {1, 2, 7, 20, 33, 256})
    for (int pieces = 1; pieces <= iterations && pieces <= cuda::kMaxPieces; ++pieces) {
      int next = 0;
      for (int piece = 0; piece < pieces; ++piece) {
        const cuda::IterationRange range = cuda::piece_iterations(iterations, piece, pieces);
        ASSERT_EQ(range.begin, next);
        ASSERT_GT(range.end, range.begin) << iterations << " iterations, piece " << piece << " of " << pieces;
        next = range.end;
      }
      ASSERT_EQ(next, iterations);
    }
}

}  // namespace
}  // namespace tileflash::testing
