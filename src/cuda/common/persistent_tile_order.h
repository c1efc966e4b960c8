// The order in which the persistent Hopper forward's blocks take their work tiles. Plain
// C++ (host and device), so the CPU tests check the mapping too.
#pragma once

#include <cstdint>

#include "common/host_device.h"

namespace tileflash::cuda {

// The work tiles of a persistent launch, (row block, head, batch), in the order blocks
// take them. Without a causal band every row block has the same work and row blocks of
// one (batch, head) come together, sharing K/V in L2. With one, the heaviest row blocks
// come first, in chunks of `heavy_chunk` row blocks: every head's top chunk, then every
// head's next one, each head's rows of a chunk consecutive. Blocks take tiles in
// serpentine rounds (block b takes tile b of even rounds and tile G - 1 - b of odd ones),
// so the block that took the heaviest tile of a round takes the lightest of the next,
// and the totals even out (a plain stride left the first blocks ~10 % more work at
// d = 256, seq 16k). The chunks keep a round's tiles on few heads, so the tiles reading
// one head's K/V run together and share it in L2: with one row block of every head per
// round (seq 2k, 128 heads: 124 heads at once) each tile read its K/V from memory, ~1.1
// GB at d = 128, longer than the products (forward_tile_order picks the chunk size).
// Without a band, when the last row block of every head is partial (`partial_last`), those
// lighter tiles come after all full ones and fill the last rounds: 2048 rows make 10⅔
// blocks of 192, so every 11th tile was a short one in the middle of the order.
struct WorkTile {
  int m_block = 0, head = 0, batch = 0;
};

struct PersistentTileOrder {
  int m_blocks = 0, heads = 0, batch = 0;
  bool heavy_first = false;
  int heavy_chunk = 1;
  bool partial_last = false;  // without heavy_first: the last row block of every head goes last

  TF_HOST_DEVICE std::int64_t count() const {
    return static_cast<std::int64_t>(m_blocks) * heads * batch;
  }
  // The tile block `block` of `blocks` takes in round `round`; past the last tile (count()
  // or more) in every later round too.
  TF_HOST_DEVICE std::int64_t tile_of(std::int64_t round, int block, int blocks) const {
    return round * blocks + (round % 2 == 0 ? block : blocks - 1 - block);
  }
  TF_HOST_DEVICE WorkTile at(std::int64_t t) const {
    WorkTile w;
    if (heavy_first) {
      // Full chunks from the top row block down, then the remainder of the lowest rows.
      const std::int64_t heads_total = static_cast<std::int64_t>(heads) * batch;
      const int full_chunks = m_blocks / heavy_chunk;
      const std::int64_t full_tiles = full_chunks * heads_total * heavy_chunk;
      std::int64_t head_index;
      if (t < full_tiles) {
        const std::int64_t chunk = t / (heads_total * heavy_chunk), within = t % (heads_total * heavy_chunk);
        head_index = within / heavy_chunk;
        w.m_block = m_blocks - 1 - static_cast<int>(chunk * heavy_chunk + within % heavy_chunk);
      } else {
        const int remainder = m_blocks - full_chunks * heavy_chunk;
        head_index = (t - full_tiles) / remainder;
        w.m_block = remainder - 1 - static_cast<int>((t - full_tiles) % remainder);
      }
      w.head = static_cast<int>(head_index % heads);
      w.batch = static_cast<int>(head_index / heads);
    } else {
      const int whole = partial_last ? m_blocks - 1 : m_blocks;
      const std::int64_t whole_tiles = static_cast<std::int64_t>(whole) * heads * batch;
      std::int64_t rest;
      if (partial_last && t >= whole_tiles) {
        w.m_block = m_blocks - 1;
        rest = t - whole_tiles;
      } else {
        w.m_block = static_cast<int>(t % whole);
        rest = t / whole;
      }
      w.head = static_cast<int>(rest % heads);
      w.batch = static_cast<int>(rest / heads);
    }
    return w;
  }
};

// How many persistent blocks take the tiles of `order` on `multiprocessors` SMs: one per
// SM, unless a count down to 1/16 fewer makes whole rounds without adding a round. A partial
// last round leaves the blocks that take one tile more behind, and under a band the
// serpentine rounds then no longer pair each block's heavy tiles with light ones: 2048
// tiles of 128 rows (the grid's d = 128 at every length) on 128 blocks instead of 132 ran
// +1.0 to +1.3 % causal and +0.6 to +1.1 % non-causal at 1k-8k (d = 256, 1024 tiles: +0.4 to
// +1.5 % causal). Orders whose own end is even keep every SM: the partial row blocks last
// (−2 % with whole rounds at d = 64, 4k) and heavy-first chunks of 4 (−2 % at 16k, causal,
// d = 128 and 256); so do launches whose last round is short (4096 tiles, d = 64 causal 1k:
// 31 rounds and 4 tiles, −0.9 % on 128 blocks). H200 A/Bs, perf-notes-hopper.md v18.
TF_HOST_DEVICE std::int64_t persistent_blocks(const PersistentTileOrder& order, int multiprocessors) {
  const std::int64_t tiles = order.count();
  if (tiles <= multiprocessors) return tiles;
  if (order.partial_last || (order.heavy_first && order.heavy_chunk < 8)) return multiprocessors;
  // A last round of a few tiles (the lightest, under a band) costs less than the SMs given up.
  if (tiles % multiprocessors < multiprocessors / 4) return multiprocessors;
  const std::int64_t rounds = (tiles + multiprocessors - 1) / multiprocessors;
  for (int blocks = multiprocessors; blocks >= multiprocessors - multiprocessors / 16; --blocks)
    if (tiles % blocks == 0 && tiles / blocks == rounds) return blocks;
  return multiprocessors;
}

}  // namespace tileflash::cuda
