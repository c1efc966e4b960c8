// The persistent Hopper forward's tile order (src/cuda/common/persistent_tile_order.h),
// checked on the CPU: every tile exactly once, the heaviest row blocks first in chunks of
// one head's consecutive rows, and serpentine rounds that cover each round's tiles.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <tuple>

#include "cuda/common/persistent_tile_order.h"

namespace tileflash::testing {
namespace {

using cuda::PersistentTileOrder;
using cuda::WorkTile;

TEST(PersistentTileOrder, TakesEveryTileOnce) {
  for (const auto& [heavy_first, partial_last] : {std::pair{false, false}, std::pair{false, true}, std::pair{true, false}})
    for (const int m_blocks : {1, 3, 8, 9, 17, 64, 130})
      for (const auto& [heads, batch] : {std::pair{1, 1}, std::pair{3, 2}, std::pair{16, 8}})
        for (const int chunk : {1, 4, 8}) {
          const PersistentTileOrder order{m_blocks, heads, batch, heavy_first, chunk, partial_last};
          std::set<std::tuple<int, int, int>> seen;
          for (std::int64_t t = 0; t < order.count(); ++t) {
            const WorkTile w = order.at(t);
            ASSERT_TRUE(w.m_block >= 0 && w.m_block < m_blocks && w.head >= 0 && w.head < heads && w.batch >= 0 &&
                        w.batch < batch)
                << "tile " << t << " of m_blocks " << m_blocks << " chunk " << chunk;
            seen.insert({w.m_block, w.head, w.batch});
          }
          EXPECT_EQ(static_cast<std::int64_t>(seen.size()), order.count())
              << "m_blocks " << m_blocks << " heads " << heads << " batch " << batch << " chunk " << chunk
              << " heavy_first " << heavy_first << " partial_last " << partial_last;
        }
}

// Without a band, one head's row blocks come together in ascending order.
TEST(PersistentTileOrder, PlainOrderKeepsAHeadsRowsTogether) {
  const PersistentTileOrder order{5, 3, 2, false, 8};
  for (std::int64_t t = 0; t < order.count(); ++t) {
    const WorkTile w = order.at(t);
    EXPECT_EQ(w.m_block, t % 5);
    EXPECT_EQ(w.head + 3 * w.batch, t / 5);
  }
}

// With partial_last, every head's other row blocks (ascending, one head at a time) come
// before any head's last one.
TEST(PersistentTileOrder, PartialLastPutsEveryHeadsLastRowBlockAtTheEnd) {
  const int m_blocks = 4, heads = 3, batch = 2;
  const PersistentTileOrder order{m_blocks, heads, batch, false, 8, true};
  const std::int64_t whole_tiles = (m_blocks - 1) * heads * batch;
  for (std::int64_t t = 0; t < order.count(); ++t) {
    const WorkTile w = order.at(t);
    if (t < whole_tiles) {
      EXPECT_EQ(w.m_block, t % (m_blocks - 1)) << "tile " << t;
      EXPECT_EQ(w.head + heads * w.batch, t / (m_blocks - 1)) << "tile " << t;
    } else {
      EXPECT_EQ(w.m_block, m_blocks - 1) << "tile " << t;
      EXPECT_EQ(w.head + heads * w.batch, t - whole_tiles) << "tile " << t;
    }
  }
}

// With a band: chunks of `heavy_chunk` row blocks from the top down, every head's chunk
// before the next chunk of any head; within a chunk one head's rows consecutive and
// descending.
TEST(PersistentTileOrder, HeavyFirstInChunksOfOneHead) {
  for (const int m_blocks : {8, 9, 20, 64, 70}) {
    const int chunk = 8, heads = 3, batch = 2;
    const PersistentTileOrder order{m_blocks, heads, batch, true, chunk};
    const auto chunk_of = [&](int m_block) { return (m_blocks - 1 - m_block) / chunk; };
    for (std::int64_t t = 1; t < order.count(); ++t) {
      const WorkTile before = order.at(t - 1), w = order.at(t);
      ASSERT_LE(chunk_of(before.m_block), chunk_of(w.m_block)) << "m_blocks " << m_blocks << " tile " << t;
      if (chunk_of(before.m_block) == chunk_of(w.m_block) && before.head == w.head && before.batch == w.batch)
        EXPECT_EQ(w.m_block, before.m_block - 1) << "m_blocks " << m_blocks << " tile " << t;
    }
    // The first tiles are the first head's top chunk.
    for (int i = 0; i < chunk && i < m_blocks; ++i) {
      const WorkTile w = order.at(i);
      EXPECT_EQ(w.m_block, m_blocks - 1 - i);
      EXPECT_EQ(w.head, 0);
      EXPECT_EQ(w.batch, 0);
    }
  }
}

TEST(PersistentTileOrder, SerpentineRoundsCoverEachRound) {
  const PersistentTileOrder order{16, 8, 1, true, 8};
  const int blocks = 12;
  for (std::int64_t round = 0; round < 3; ++round) {
    std::set<std::int64_t> tiles;
    for (int b = 0; b < blocks; ++b) tiles.insert(order.tile_of(round, b, blocks));
    EXPECT_EQ(*tiles.begin(), round * blocks);
    EXPECT_EQ(*tiles.rbegin(), round * blocks + blocks - 1);
    EXPECT_EQ(static_cast<int>(tiles.size()), blocks);
  }
  EXPECT_EQ(order.tile_of(1, 0, blocks), 2 * blocks - 1);  // block 0 takes the round's lightest tile
}

// The persistent grid: one block per SM unless a slightly smaller count makes whole rounds
// without an extra one (not for the orders that even out their own end); never more
// blocks than tiles or SMs.
TEST(PersistentTileOrder, BlocksMakeWholeRoundsWhereTheyCan) {
  const auto plain = [](std::int64_t tiles) { return PersistentTileOrder{static_cast<int>(tiles), 1, 1}; };
  EXPECT_EQ(cuda::persistent_blocks(plain(2048), 132), 128);  // 16 rounds either way
  EXPECT_EQ(cuda::persistent_blocks(PersistentTileOrder{16, 16, 8, true, 8}, 132), 128);  // causal, chunks of 8
  EXPECT_EQ(cuda::persistent_blocks(PersistentTileOrder{128, 16, 1, true, 4}, 132), 132);  // chunks of 4
  EXPECT_EQ(cuda::persistent_blocks(PersistentTileOrder{22, 32, 4, false, 8, true}, 132), 132);  // partial last
  EXPECT_EQ(cuda::persistent_blocks(plain(2112), 132), 132);  // already whole
  EXPECT_EQ(cuda::persistent_blocks(plain(4096), 132), 132);  // 31 rounds and 4 tiles: the short round stays
  EXPECT_EQ(cuda::persistent_blocks(plain(100), 132), 100);
  EXPECT_EQ(cuda::persistent_blocks(plain(1254), 132), 132);  // no divisor in 124..132 without a 10th round
  for (const int sms : {7, 78, 114, 132})
    for (std::int64_t tiles = 1; tiles < 5000; tiles += 7) {
      const std::int64_t blocks = cuda::persistent_blocks(plain(tiles), sms);
      ASSERT_GE(blocks, 1);
      ASSERT_LE(blocks, std::min<std::int64_t>(tiles, sms));
      const std::int64_t rounds = (tiles + sms - 1) / sms;
      ASSERT_EQ((tiles + blocks - 1) / blocks, tiles <= sms ? 1 : rounds) << tiles << " tiles, " << sms << " SMs";
      if (blocks != sms && tiles > sms) {
        ASSERT_EQ(tiles % blocks, 0);
        ASSERT_GE(tiles % sms, sms / 4);
      }
    }
}

}  // namespace
}  // namespace tileflash::testing
