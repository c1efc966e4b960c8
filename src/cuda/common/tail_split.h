// Which blocks of a launch of equal blocks run cut into pieces. Plain C++ (host and
// device), so the CPU tests check the plan too.
//
// One block per SM, blocks taken in launch order as SMs free up: `blocks` equal blocks on
// `multiprocessors` SMs end with a last round of `blocks % multiprocessors` blocks while
// the other SMs idle (the Hopper backward at 16k tokens: 4096 blocks on 132 SMs are 31
// rounds and 4 blocks, 2048 are 15 rounds and 68). Cutting those last blocks' query
// ranges into `pieces` lets the last round spread over the idle SMs; each piece then adds
// its partial dK and dV to memory and the last piece of a block to finish writes the sum.
#pragma once

#include <cstdint>

#include "common/host_device.h"

namespace tileflash::cuda {

struct TailSplit {
  std::int64_t first_block = 0;  // launch index of the first cut block; blocks from here on are cut
  int blocks = 0;                // how many (the last ones of the launch)
  int pieces = 1;                // query ranges per cut block

  TF_HOST_DEVICE bool active() const { return blocks > 0; }
};

// A block costs its iterations plus a fixed part (the K/V load, the first iteration's
// unoverlapped work, the dK/dV epilogue), about two iterations; a piece one more for
// adding and reading back its partial sums. The plan takes the piece count (up to 16,
// each piece at least one iteration) that ends the last round soonest in that model, and
// cuts nothing unless it gains at least one iteration's time.
constexpr int kBlockFixedIterations = 2;
constexpr int kPieceCombineIterations = 1;
constexpr int kMaxPieces = 16;

TF_HOST_DEVICE TailSplit plan_tail_split(std::int64_t blocks, int iterations_per_block, int multiprocessors) {
  TailSplit plan;
  plan.first_block = blocks;
  if (blocks <= 0 || iterations_per_block <= 1 || multiprocessors <= 0) return plan;
  const std::int64_t last_round = blocks % multiprocessors == 0 ? 0 : blocks % multiprocessors;
  if (last_round == 0) return plan;
  const std::int64_t whole = iterations_per_block + kBlockFixedIterations;
  std::int64_t best = whole - 1;  // a cut must gain at least one iteration
  for (int pieces = 2; pieces <= kMaxPieces && pieces <= iterations_per_block; ++pieces) {
    const std::int64_t rounds = (last_round * pieces + multiprocessors - 1) / multiprocessors;
    const std::int64_t piece = (iterations_per_block + pieces - 1) / pieces + kBlockFixedIterations + kPieceCombineIterations;
    if (rounds * piece < best) {
      best = rounds * piece;
      plan.pieces = pieces;
    }
  }
  if (plan.pieces > 1) {
    plan.blocks = static_cast<int>(last_round);
    plan.first_block = blocks - last_round;
  }
  return plan;
}

// Iterations [begin, end) of a block's walk that its piece `piece` of `pieces` takes.
struct IterationRange {
  int begin = 0, end = 0;
};
TF_HOST_DEVICE IterationRange piece_iterations(int iterations, int piece, int pieces) {
  return {static_cast<int>(static_cast<std::int64_t>(iterations) * piece / pieces),
          static_cast<int>(static_cast<std::int64_t>(iterations) * (piece + 1) / pieces)};
}

}  // namespace tileflash::cuda
