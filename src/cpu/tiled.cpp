// The tiled CPU FlashAttention driver: packs K/V (and, for the backward, Q and dO) into
// fp32 tiles (bf16 tiles for a kernel set with bf16 products and bf16 inputs), then runs
// the per-tile kernels of the best instruction set over a thread pool.
//
// Forward: one task per (sequence, query head, query tile), FlashAttention-2 order (the
// key tiles inside, online softmax, one normalisation at the end), handed out a
// (sequence, kv head) unit per thread (ForwardWork); the key tiles are packed by the
// tasks that first need them, so the whole forward is one pass.
// Backward: K/V packed in a pass of their own, then one task per (sequence, kv head,
// chunk of key tiles). A task owns dK and dV of
// its key tiles (summed over the GQA group inside the task) and adds dQ into a buffer of
// its own chunk; the chunks' dQ are summed in a fixed order at the end. The chunking
// depends on the problem only, never on the thread count, so gradients are bitwise
// identical across runs and thread counts, and race-free.
#include "cpu/tiled.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/philox.h"
#include "cpu/cpu_backend.h"
#include "cpu/thread_pool.h"
#include "cpu/workspace.h"

namespace tileflash::cpu {
namespace tiled {

const KernelSet& best_kernels() {
  const char* requested = std::getenv("TILEFLASH_CPU_ISA");
  const std::string want = requested ? requested : "";
  if (want == "scalar") return scalar_kernels();
#if defined(__x86_64__) && defined(__GNUC__)
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  if (avx512 && want != "avx2") return want != "avx512" && amx_usable() ? amx_kernels() : avx512_kernels();
  if (avx2) return avx2_kernels();
#endif
  return scalar_kernels();
}

}  // namespace tiled

namespace {

using tiled::kBlockK;
using tiled::kBlockQ;

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// A tile of one sequence: query tiles of kBlockQ rows or key tiles of kBlockK columns.
struct TileRef {
  std::int64_t batch, tile;
};

// The sequences of the batch and where their rows and key tiles start in the packed buffers.
struct Layout {
  std::vector<Sequence> sequences;
  std::vector<std::int64_t> q_row_start;   // packed query rows of sequence b start here
  std::vector<std::int64_t> k_tile_start;  // packed key tiles of sequence b start here
  std::vector<std::int64_t> q_tile_start;  // its query tiles start here in query_tiles
  std::vector<TileRef> query_tiles, key_tiles;
  std::int64_t total_q_rows = 0, total_k_tiles = 0, max_k_tiles = 0;
  std::int64_t head_dim = 0, padded_dim = 0;

  Layout(const ForwardParams& params, const detail::Problem& problem, int vector_width) {
    head_dim = problem.head_dim;
    padded_dim = ceil_div(head_dim, vector_width) * vector_width;
    for (std::int64_t b = 0; b < problem.batch; ++b) {
      const Sequence s = sequence(params, problem, b);
      sequences.push_back(s);
      q_row_start.push_back(total_q_rows);
      k_tile_start.push_back(total_k_tiles);
      q_tile_start.push_back(static_cast<std::int64_t>(query_tiles.size()));
      total_q_rows += s.seq_q;
      const std::int64_t tiles = ceil_div(s.seq_k, kBlockK);
      total_k_tiles += tiles;
      max_k_tiles = std::max(max_k_tiles, tiles);
      for (std::int64_t t = 0; t < tiles; ++t) key_tiles.push_back({b, t});
      for (std::int64_t t = 0; t < ceil_div(s.seq_q, kBlockQ); ++t) query_tiles.push_back({b, t});
    }
  }
};

tiled::Logits make_logits(const ForwardParams& params, const detail::Problem& problem, const Sequence& seq,
                          std::int64_t head) {
  tiled::Logits lg;
  lg.mask = problem.mask(seq.seq_q, seq.seq_k);
  lg.bias = bias_tile(params.bias, seq, head);
  lg.softcap = problem.has_softcap ? params.softcap : 0.0f;
  lg.has_alibi = problem.has_alibi;
  lg.alibi_slope = alibi_slope(params.alibi_slopes, seq, head);
  lg.has_dropout = problem.has_dropout;
  lg.dropout_seed = params.dropout_seed;
  lg.dropout_offset = params.dropout_offset;
  lg.batch_head = static_cast<std::uint32_t>(seq.batch * problem.heads_q + head);
  lg.dropout_threshold = detail::dropout_threshold(params.dropout_p);
  lg.keep_scale = problem.has_dropout ? 1.0f / (1.0f - params.dropout_p) : 1.0f;
  return lg;
}

// Packs `count` rows of `src` starting at `first` into dst (count, padded_dim), times `scale`.
void pack_rows(const HeadRows& src, std::int64_t first, std::int64_t count, std::int64_t head_dim,
               std::int64_t padded_dim, float scale, float* dst) {
  for (std::int64_t r = 0; r < count; ++r) {
    float* row = dst + r * padded_dim;
    src.load_row(first + r, head_dim, row);
    if (scale != 1.0f)
      for (std::int64_t c = 0; c < head_dim; ++c) row[c] *= scale;
    std::fill(row + head_dim, row + padded_dim, 0.0f);
  }
}

// One key tile: `cols` (head_dim, kBlockK), a key per column, and/or `rows` (kBlockK, padded_dim);
// zero past the sequence. `row_buffer` (padded_dim floats) holds a key when `rows` is not wanted.
void pack_key_tile(const HeadRows& src, std::int64_t tile, std::int64_t seq_k, std::int64_t head_dim,
                   std::int64_t padded_dim, float* cols, float* rows, float* row_buffer) {
  const std::int64_t first = tile * kBlockK, count = std::min(kBlockK, seq_k - first);
  for (std::int64_t j = 0; j < count; ++j) {
    float* row = rows ? rows + j * padded_dim : row_buffer;
    src.load_row(first + j, head_dim, row);
    if (rows) std::fill(row + head_dim, row + padded_dim, 0.0f);
    if (cols)
      for (std::int64_t c = 0; c < head_dim; ++c) cols[c * kBlockK + j] = row[c];
  }
  // Keys past the sequence must be exact zeros: 0 * garbage could be NaN.
  if (cols)
    for (std::int64_t c = 0; c < head_dim; ++c) std::fill(cols + c * kBlockK + count, cols + (c + 1) * kBlockK, 0.0f);
  if (rows) std::fill(rows + count * padded_dim, rows + kBlockK * padded_dim, 0.0f);
}

// Packed key/value tiles of every (kv head, sequence), one slot per (kv head, key tile):
// which layouts are filled depends on the pass. The forward packs a slot on first use
// (PackOnFirstUse), the backward all of them up front (pack_all).
struct PackedKeys {
  const ForwardParams& params;
  const detail::Problem& problem;
  const Layout& layout;
  bool backward;
  std::int64_t cols_size, rows_size, tiles;
  Workspace k_cols, k_rows, v_cols, v_rows;

  PackedKeys(const ForwardParams& params_, const detail::Problem& problem_, const Layout& layout_, bool backward_)
      : params(params_),
        problem(problem_),
        layout(layout_),
        backward(backward_),
        cols_size(layout.head_dim * kBlockK),
        rows_size(kBlockK * layout.padded_dim),
        tiles(problem.heads_kv * layout.total_k_tiles),
        k_cols(tiles * cols_size),
        k_rows(backward ? tiles * rows_size : 0),
        v_cols(backward ? tiles * cols_size : 0),
        v_rows(backward ? 0 : tiles * rows_size) {}

  std::int64_t slot(std::int64_t kv_head, std::int64_t b, std::int64_t kt) const {
    return kv_head * layout.total_k_tiles + layout.k_tile_start[b] + kt;
  }

  void pack(std::int64_t at, float* row_buffer) const {
    const std::int64_t g = at / layout.total_k_tiles;
    const TileRef t = layout.key_tiles[at % layout.total_k_tiles];
    const Sequence& seq = layout.sequences[t.batch];
    pack_key_tile(head_rows(params.k, problem, seq, g, false), t.tile, seq.seq_k, layout.head_dim, layout.padded_dim,
                  k_cols.data() + at * cols_size, backward ? k_rows.data() + at * rows_size : nullptr, row_buffer);
    pack_key_tile(head_rows(params.v, problem, seq, g, false), t.tile, seq.seq_k, layout.head_dim, layout.padded_dim,
                  backward ? v_cols.data() + at * cols_size : nullptr,
                  backward ? nullptr : v_rows.data() + at * rows_size, row_buffer);
  }

  void pack_all(int threads) const {
    parallel_for(tiles, threads, [&](std::int64_t at, int) {
      std::vector<float> row_buffer(layout.padded_dim);
      pack(at, row_buffer.data());
    });
  }
};

// Raw bf16 rows (no conversion) for the kernel sets with bf16 products.
const std::uint16_t* bf16_row(const HeadRows& src, std::int64_t row) {
  return static_cast<const std::uint16_t*>(src.row_address(row));
}

// One key tile as the B operand of a bf16 product over the head dims (K^T, V^T): pairs of
// head dims (padded_dim / 2, kBlockK, 2), a transpose of 4-byte pairs; zero past the
// sequence and head_dim.
void pack_dim_pairs(const HeadRows& src, std::int64_t tile, std::int64_t seq_k, std::int64_t head_dim,
                    std::int64_t padded_dim, std::uint16_t* dst) {
  const std::int64_t first = tile * kBlockK, count = std::min(kBlockK, seq_k - first);
  std::fill(dst, dst + padded_dim * kBlockK, std::uint16_t{0});
  for (std::int64_t j = 0; j < count; ++j) {
    const std::uint16_t* row = bf16_row(src, first + j);
    for (std::int64_t pair = 0; pair < head_dim / 2; ++pair)
      std::memcpy(dst + 2 * (pair * kBlockK + j), row + 2 * pair, 2 * sizeof(std::uint16_t));
    if (head_dim % 2) dst[2 * ((head_dim / 2) * kBlockK + j)] = row[head_dim - 1];
  }
}

// One key tile as the B operand of a bf16 product over the keys (V, K): pairs of keys
// (kBlockK / 2, padded_dim, 2), two rows interleaved; zero past the sequence and head_dim.
void pack_key_pairs(const HeadRows& src, std::int64_t tile, std::int64_t seq_k, std::int64_t head_dim,
                    std::int64_t padded_dim, std::uint16_t* dst) {
  const std::int64_t first = tile * kBlockK, count = std::min(kBlockK, seq_k - first);
  for (std::int64_t j = 0; j < kBlockK; j += 2) {
    std::uint16_t* out = dst + j * padded_dim;
    std::int64_t written = 0;
    if (j + 1 < count) {
      const std::uint16_t *even = bf16_row(src, first + j), *odd = bf16_row(src, first + j + 1);
      for (std::int64_t c = 0; c < head_dim; ++c) {
        const std::uint32_t both = even[c] | std::uint32_t{odd[c]} << 16;  // x86: the even key first
        std::memcpy(out + 2 * c, &both, sizeof(both));
      }
      written = 2 * head_dim;
    } else if (j < count) {
      const std::uint16_t* even = bf16_row(src, first + j);
      for (std::int64_t c = 0; c < head_dim; ++c) {
        out[2 * c] = even[c];
        out[2 * c + 1] = 0;
      }
      written = 2 * head_dim;
    }
    std::fill(out + written, out + 2 * padded_dim, std::uint16_t{0});
  }
}

// Key/value tiles of every (kv head, sequence) as bf16 B operands, two bf16 per float of
// the workspaces, one slot per (kv head, key tile) as in PackedKeys. Forward: K^T (dim
// pairs), V (key pairs). Backward: K^T and V^T (dim pairs), K (key pairs).
struct PackedKeysBf16 {
  const ForwardParams& params;
  const detail::Problem& problem;
  const Layout& layout;
  bool backward;
  std::int64_t tile_size, tiles;
  Workspace k_dims, v_pairs, k_keys;

  PackedKeysBf16(const ForwardParams& params_, const detail::Problem& problem_, const Layout& layout_, bool backward_)
      : params(params_),
        problem(problem_),
        layout(layout_),
        backward(backward_),
        tile_size(layout.padded_dim * kBlockK),
        tiles(problem.heads_kv * layout.total_k_tiles),
        k_dims(tiles * tile_size / 2),
        v_pairs(tiles * tile_size / 2),
        k_keys(backward ? tiles * tile_size / 2 : 0) {}

  std::uint16_t* k_dim_data() const { return reinterpret_cast<std::uint16_t*>(k_dims.data()); }
  std::uint16_t* v_data() const { return reinterpret_cast<std::uint16_t*>(v_pairs.data()); }
  std::uint16_t* k_key_data() const { return reinterpret_cast<std::uint16_t*>(k_keys.data()); }
  std::int64_t slot(std::int64_t kv_head, std::int64_t b, std::int64_t kt) const {
    return kv_head * layout.total_k_tiles + layout.k_tile_start[b] + kt;
  }

  void pack(std::int64_t at) const {
    const std::int64_t g = at / layout.total_k_tiles, d = layout.head_dim, pd = layout.padded_dim;
    const TileRef t = layout.key_tiles[at % layout.total_k_tiles];
    const Sequence& seq = layout.sequences[t.batch];
    const HeadRows k = head_rows(params.k, problem, seq, g, false), v = head_rows(params.v, problem, seq, g, false);
    const std::int64_t offset = at * tile_size;
    pack_dim_pairs(k, t.tile, seq.seq_k, d, pd, k_dim_data() + offset);
    if (backward) {
      pack_dim_pairs(v, t.tile, seq.seq_k, d, pd, v_data() + offset);
      pack_key_pairs(k, t.tile, seq.seq_k, d, pd, k_key_data() + offset);
    } else {
      pack_key_pairs(v, t.tile, seq.seq_k, d, pd, v_data() + offset);
    }
  }

  void pack_all(int threads) const {
    parallel_for(tiles, threads, [&](std::int64_t at, int) { pack(at); });
  }
};

// Packs the forward's key tiles from inside its tasks instead of in a pass of their own:
// a task first claims and packs the tiles it needs that no task has claimed yet (the
// tasks that start on one head share its packing), then waits for those others are
// still packing. There is no barrier between packing and products, and a tile is packed
// shortly before it is read, while it is still in cache. Packing cannot throw, so a
// claimed tile always becomes ready.
class PackOnFirstUse {
 public:
  explicit PackOnFirstUse(std::int64_t slots) : state_(new std::atomic<std::uint8_t>[std::max<std::int64_t>(slots, 1)]) {
    for (std::int64_t i = 0; i < slots; ++i) state_[i].store(kUnpacked, std::memory_order_relaxed);
  }

  // Slots [begin, end) packed by pack(slot) (here or by another task) once this returns.
  template <class Pack>
  void ensure(std::int64_t begin, std::int64_t end, const Pack& pack) const {
    for (std::int64_t i = begin; i < end; ++i) {
      std::uint8_t expected = kUnpacked;
      if (state_[i].load(std::memory_order_relaxed) == kUnpacked &&
          state_[i].compare_exchange_strong(expected, kPacking, std::memory_order_relaxed)) {
        pack(i);
        // Release: whoever sees kPacked sees the packed tile.
        state_[i].store(kPacked, std::memory_order_release);
      }
    }
    for (std::int64_t i = begin; i < end; ++i)
      while (state_[i].load(std::memory_order_acquire) != kPacked) std::this_thread::yield();
  }

 private:
  static constexpr std::uint8_t kUnpacked = 0, kPacking = 1, kPacked = 2;
  std::unique_ptr<std::atomic<std::uint8_t>[]> state_;
};

// How the forward's (query head, query tile) tasks reach the threads. A unit is one
// (sequence, kv head) with every query tile of every query head of its GQA group, the
// costliest tiles (rows times key tiles visited) first. A thread claims a whole unit and
// works through it, so the key tiles it packs for the unit stay in its own L2 for the
// unit's other tasks. Once no unit is left unclaimed, threads take tasks from the unit
// with the most left (costliest first there too), so the end of the call is not one
// thread's unit. Measured on the 16-core Xeon host (bf16, d=128, seq 1024, 16 heads, 16
// threads, per-task timestamps): when any thread took any (head, tile) task, a task
// after the first wave still spent 46 us of its ~200 us packing key tiles or waiting for
// another thread to finish packing them, and its tile steps ran 23 % slower than on one
// thread (key tiles read from the core that packed them); with units, 2 us and 10 %, and
// the forward ran 1.04-1.66x faster over the seq 1024/4096 grid.
class ForwardWork {
 public:
  struct Task {
    std::int64_t head, query_tile;  // query_tile indexes Layout::query_tiles
  };
  // What one thread is working through.
  struct Cursor {
    std::int64_t unit = -1;
  };

  ForwardWork(const Layout& layout, const detail::Problem& problem)
      : group_(problem.group_size()), heads_kv_(problem.heads_kv), layout_(layout) {
    const auto batch = static_cast<std::int64_t>(layout.sequences.size());
    tile_order_.resize(layout.query_tiles.size());
    std::vector<std::int64_t> unit_cost(batch * heads_kv_, 0);
    for (std::int64_t b = 0; b < batch; ++b) {
      const Sequence& seq = layout.sequences[b];
      const std::int64_t first = layout.q_tile_start[b], tiles = ceil_div(seq.seq_q, kBlockQ);
      std::vector<std::int64_t> cost(tiles);
      for (std::int64_t t = 0; t < tiles; ++t) {
        const std::int64_t row0 = t * kBlockQ, rows = std::min(kBlockQ, seq.seq_q - row0);
        const tiled::KeyTileRange kt = tiled::key_tiles_of(problem.mask(seq.seq_q, seq.seq_k), row0, rows);
        cost[t] = rows * std::max<std::int64_t>(kt.end - kt.begin, 0);
        for (std::int64_t g = 0; g < heads_kv_; ++g) unit_cost[b * heads_kv_ + g] += cost[t];
      }
      auto order = tile_order_.begin() + first;
      for (std::int64_t t = 0; t < tiles; ++t) order[t] = first + t;
      std::stable_sort(order, order + tiles,
                       [&](std::int64_t x, std::int64_t y) { return cost[x - first] > cost[y - first]; });
    }
    units_.resize(unit_cost.size());
    for (std::size_t u = 0; u < units_.size(); ++u) units_[u] = static_cast<std::int64_t>(u);
    std::stable_sort(units_.begin(), units_.end(),
                     [&](std::int64_t x, std::int64_t y) { return unit_cost[x] > unit_cost[y]; });
    next_task_.reset(new std::atomic<std::int64_t>[std::max<std::size_t>(units_.size(), 1)]);
    for (std::size_t u = 0; u < units_.size(); ++u) next_task_[u].store(0, std::memory_order_relaxed);
  }

  // The thread's next task; false once every task has been handed out.
  bool next(Cursor& cursor, Task& task) {
    for (;;) {
      if (cursor.unit >= 0) {
        const std::int64_t i = next_task_[cursor.unit].fetch_add(1, std::memory_order_relaxed);
        if (i < size(cursor.unit)) {
          task = at(cursor.unit, i);
          return true;
        }
      }
      const std::int64_t claimed = next_unit_.fetch_add(1, std::memory_order_relaxed);
      if (claimed < static_cast<std::int64_t>(units_.size())) {
        cursor.unit = units_[claimed];
        continue;
      }
      cursor.unit = fullest_unit();
      if (cursor.unit < 0) return false;
    }
  }

 private:
  std::int64_t size(std::int64_t unit) const {
    const std::int64_t b = unit / heads_kv_;
    return group_ * ceil_div(layout_.sequences[b].seq_q, kBlockQ);
  }
  Task at(std::int64_t unit, std::int64_t i) const {
    const std::int64_t b = unit / heads_kv_, g = unit % heads_kv_;
    return {g * group_ + i % group_, tile_order_[layout_.q_tile_start[b] + i / group_]};
  }
  // The unit with the most tasks not yet handed out, or -1 when none has any.
  std::int64_t fullest_unit() const {
    std::int64_t best = -1, most = 0;
    for (std::int64_t u : units_) {
      const std::int64_t left = size(u) - next_task_[u].load(std::memory_order_relaxed);
      if (left > most) {
        most = left;
        best = u;
      }
    }
    return best;
  }

  std::int64_t group_, heads_kv_;
  const Layout& layout_;
  std::vector<std::int64_t> tile_order_;  // per sequence, its query tiles costliest first
  std::vector<std::int64_t> units_;       // b * heads_kv + g, costliest first
  std::unique_ptr<std::atomic<std::int64_t>[]> next_task_;
  std::atomic<std::int64_t> next_unit_{0};
};

// Whether any row of query tile [row0, row0 + rows) may attend a column of key tile col0.
bool tiles_meet(const detail::BandMask& mask, std::int64_t row0, std::int64_t rows, std::int64_t col0) {
  return mask.first_col(row0) < col0 + kBlockK && mask.end_col(row0 + rows - 1) > col0 &&
         mask.first_col(row0) < mask.end_col(row0 + rows - 1);
}

// Writes a finished query tile: its rows of O (padded to pd columns) and, when asked for, lse.
void store_forward_rows(const ForwardParams& params, const detail::Problem& problem, const Sequence& seq,
                        std::int64_t head, std::int64_t row0, std::int64_t rows, std::int64_t pd, const float* out,
                        const float* lse) {
  const HeadRows out_rows = head_rows(params.out, problem, seq, head, true);
  for (std::int64_t r = 0; r < rows; ++r) out_rows.store_row(row0 + r, problem.head_dim, out + r * pd);
  if (problem.has_lse) {
    const LseRow lse_out = lse_row(params.lse, problem, seq, head);
    for (std::int64_t r = 0; r < rows; ++r) lse_out[row0 + r] = lse[r];
  }
}

}  // namespace

namespace tiled {

void forward(const ForwardParams& params, const detail::Problem& problem, const KernelSet& kernels) {
  // A kernel set with bf16 products gets bf16 operands: key tiles as pairs, Q copied
  // unscaled (the kernel applies the softmax scale to the fp32 products).
  const bool bf16 = kernels.forward_tile_bf16 && problem.dtype == DType::bfloat16;
  const Layout layout(params, problem, bf16 ? static_cast<int>(kBf16DimMultiple) : kernels.vector_width);
  const int threads = resolve_thread_count(params.num_threads);
  std::optional<PackedKeys> keys;
  std::optional<PackedKeysBf16> keys_bf16;
  if (bf16)
    keys_bf16.emplace(params, problem, layout, /*backward=*/false);
  else
    keys.emplace(params, problem, layout, /*backward=*/false);
  const PackOnFirstUse packing(problem.heads_kv * layout.total_k_tiles);
  ForwardWork work(layout, problem);
  const std::int64_t pd = layout.padded_dim, d = layout.head_dim;

  // Per thread: O, lse, the query tile (bf16 or fp32), the kernel's scratch, and for the
  // fp32 packing a key row.
  const std::int64_t q_floats = bf16 ? kBlockQ * pd / 2 : kBlockQ * pd;
  const std::int64_t kernel_floats = bf16 ? kForwardBf16ScratchFloats : kForwardScratchFloats + pd;
  const std::int64_t per_thread = kBlockQ * pd + kBlockQ + q_floats + kernel_floats;
  Workspace scratch(per_thread * threads);
  auto run = [&](const ForwardWork::Task& t, int thread) {
    const std::int64_t h = t.head, g = h / problem.group_size();
    const TileRef qt = layout.query_tiles[t.query_tile];
    const Sequence& seq = layout.sequences[qt.batch];
    const std::int64_t row0 = qt.tile * kBlockQ, rows = std::min(kBlockQ, seq.seq_q - row0);
    float* out = scratch.data() + per_thread * thread;
    float* lse = out + kBlockQ * pd;
    float* q = lse + kBlockQ;
    float* kernel_scratch = q + q_floats;
    const Logits logits = make_logits(params, problem, seq, h);
    const KeyTileRange needed = key_tiles_of(logits.mask, row0, rows);
    const HeadRows q_rows = head_rows(params.q, problem, seq, h, true);
    if (bf16) {
      const std::int64_t first_slot = keys_bf16->slot(g, qt.batch, 0);
      packing.ensure(first_slot + needed.begin, first_slot + needed.end,
                     [&](std::int64_t slot) { keys_bf16->pack(slot); });
      ForwardTileBf16Args a;
      auto* q16 = reinterpret_cast<std::uint16_t*>(q);
      std::fill(q16, q16 + kBlockQ * pd, std::uint16_t{0});
      for (std::int64_t r = 0; r < rows; ++r) std::copy_n(bf16_row(q_rows, row0 + r), d, q16 + r * pd);
      a.q = q16;
      a.scale = problem.scale;
      a.row0 = row0;
      a.rows = rows;
      a.k_pairs = keys_bf16->k_dim_data() + first_slot * keys_bf16->tile_size;
      a.v_pairs = keys_bf16->v_data() + first_slot * keys_bf16->tile_size;
      a.padded_dim = pd;
      a.logits = logits;
      a.out = out;
      a.lse = lse;
      a.scratch = kernel_scratch;
      kernels.forward_tile_bf16(a);
    } else {
      float* row_buffer = kernel_scratch + kForwardScratchFloats;
      const std::int64_t first_slot = keys->slot(g, qt.batch, 0);
      packing.ensure(first_slot + needed.begin, first_slot + needed.end,
                     [&](std::int64_t slot) { keys->pack(slot, row_buffer); });
      ForwardTileArgs a;
      pack_rows(q_rows, row0, rows, d, pd, problem.scale, q);
      a.q = q;
      a.row0 = row0;
      a.rows = rows;
      a.k_cols = keys->k_cols.data() + first_slot * keys->cols_size;
      a.v_rows = keys->v_rows.data() + first_slot * keys->rows_size;
      a.head_dim = d;
      a.padded_dim = pd;
      a.logits = logits;
      a.out = out;
      a.lse = lse;
      a.scratch = kernel_scratch;
      kernels.forward_tile(a);
    }
    store_forward_rows(params, problem, seq, h, row0, rows, pd, out, lse);
  };
  // One pool task per thread; each takes tasks from `work` until none are left.
  parallel_for(threads, threads, [&](std::int64_t, int thread) {
    ForwardWork::Cursor cursor;
    ForwardWork::Task task;
    while (work.next(cursor, task)) run(task, thread);
  });
}

void backward(const BackwardParams& params, const detail::Problem& problem, const KernelSet& kernels) {
  // A kernel set with bf16 products gets bf16 operands: key tiles as pairs, query tiles
  // as rows and transposed, dK and dV accumulated transposed.
  const bool bf16 = kernels.backward_tile_bf16 && problem.dtype == DType::bfloat16;
  const Layout layout(params, problem, bf16 ? static_cast<int>(kBf16DimMultiple) : kernels.vector_width);
  const int threads = resolve_thread_count(params.num_threads);
  std::optional<PackedKeys> keys;
  std::optional<PackedKeysBf16> keys_bf16;
  if (bf16)
    keys_bf16.emplace(params, problem, layout, /*backward=*/true).pack_all(threads);
  else
    keys.emplace(params, problem, layout, /*backward=*/true).pack_all(threads);
  const std::int64_t pd = layout.padded_dim, d = layout.head_dim, rows_total = layout.total_q_rows;
  const std::int64_t hq = problem.heads_q, group = problem.group_size();

  const std::int64_t pairs = problem.batch * problem.heads_kv;
  const std::int64_t partial_stride = hq * rows_total * pd;  // between the chunks' dQ buffers
  // Enough tasks to feed a many-core host when there are few (sequence, kv head) pairs;
  // each extra chunk costs one more fp32 dQ buffer, so their total is capped (a few
  // long heads then get fewer, larger tasks). Both limits depend on the problem alone.
  constexpr std::int64_t kBackwardTaskTarget = 64;
  constexpr std::int64_t kPartialBudgetFloats = std::int64_t{64} << 20;  // 256 MiB
  std::int64_t chunks = pairs == 0 ? 1 : ceil_div(kBackwardTaskTarget, pairs);
  chunks = std::min({chunks, layout.max_k_tiles, kPartialBudgetFloats / std::max<std::int64_t>(partial_stride, 1)});
  chunks = std::max<std::int64_t>(chunks, 1);

  // Per (query head, packed row): lse, D = rowsum(dO o O), the chunks' dQ accumulators
  // zeroed, and q * scale and dO in fp32; or, for bf16 operands, per (query head, query
  // tile): Q, Q^T, dO, dO^T (kBlockQ rows each, zero padded, Q not scaled).
  const auto num_q_tiles = static_cast<std::int64_t>(layout.query_tiles.size());
  const std::int64_t fp32_rows = bf16 ? 0 : hq * rows_total * pd;
  const std::int64_t bf16_tile = kBlockQ * pd;  // bf16 elements of one operand of one query tile
  Workspace q(fp32_rows), dout(fp32_rows), lse(hq * rows_total), delta(hq * rows_total),
      dq_partial(chunks * partial_stride), query_bf16(bf16 ? hq * num_q_tiles * 4 * bf16_tile / 2 : 0);
  auto query_operands = [&](std::int64_t h, std::int64_t tile_index) {
    return reinterpret_cast<std::uint16_t*>(query_bf16.data()) + (h * num_q_tiles + tile_index) * 4 * bf16_tile;
  };
  parallel_for(hq * num_q_tiles, threads, [&](std::int64_t task, int) {
    const std::int64_t h = task / num_q_tiles;
    const TileRef t = layout.query_tiles[task % num_q_tiles];
    const Sequence& seq = layout.sequences[t.batch];
    const std::int64_t row0 = t.tile * kBlockQ, rows = std::min(kBlockQ, seq.seq_q - row0);
    const std::int64_t base = h * rows_total + layout.q_row_start[t.batch] + row0;
    const HeadRows q_in = head_rows(params.q, problem, seq, h, true);
    const HeadRows dout_in = head_rows(params.dout, problem, seq, h, true);
    if (bf16) {
      std::uint16_t* operands = query_operands(h, task % num_q_tiles);
      std::fill(operands, operands + 4 * bf16_tile, std::uint16_t{0});
      std::uint16_t *q_rows = operands, *q_t = q_rows + bf16_tile;
      std::uint16_t *dout_rows = q_t + bf16_tile, *dout_t = dout_rows + bf16_tile;
      for (std::int64_t r = 0; r < rows; ++r) {
        const std::uint16_t* q_row = bf16_row(q_in, row0 + r);
        const std::uint16_t* dout_row = bf16_row(dout_in, row0 + r);
        std::copy_n(q_row, d, q_rows + r * pd);
        std::copy_n(dout_row, d, dout_rows + r * pd);
        for (std::int64_t c = 0; c < d; ++c) {
          q_t[c * kBlockQ + r] = q_row[c];
          dout_t[c * kBlockQ + r] = dout_row[c];
        }
      }
    } else {
      pack_rows(q_in, row0, rows, d, pd, problem.scale, q.data() + base * pd);
      pack_rows(dout_in, row0, rows, d, pd, 1.0f, dout.data() + base * pd);
    }
    const HeadRows out = head_rows(params.out, problem, seq, h, true);
    const LseRow lse_in = lse_row(params.lse, problem, seq, h);
    std::vector<float> out_row(d), dout_row(d);
    for (std::int64_t r = 0; r < rows; ++r) {
      out.load_row(row0 + r, d, out_row.data());
      dout_in.load_row(row0 + r, d, dout_row.data());
      float sum = 0.0f;
      for (std::int64_t c = 0; c < d; ++c) sum += dout_row[c] * out_row[c];
      delta.data()[base + r] = sum;
      lse.data()[base + r] = lse_in[row0 + r];
    }
    for (std::int64_t chunk = 0; chunk < chunks; ++chunk) {
      float* partial = dq_partial.data() + chunk * partial_stride + base * pd;
      std::fill(partial, partial + rows * pd, 0.0f);
    }
  });

  const std::int64_t per_thread =
      2 * kBlockK * pd + (bf16 ? backward_bf16_scratch_floats(pd) : kBackwardScratchFloats);
  Workspace scratch(per_thread * threads);

  // Chunk-major order: under a causal mask the first key tiles see the most query rows,
  // so the chunks that hold them (lower indices) go first.
  parallel_for(pairs * chunks, threads, [&](std::int64_t task, int thread) {
    const std::int64_t chunk = task / pairs, pair = task % pairs;
    const std::int64_t b = pair % problem.batch, g = pair / problem.batch;
    const Sequence& seq = layout.sequences[b];
    float* dk = scratch.data() + per_thread * thread;  // (kBlockK, pd), or transposed with bf16 operands
    float* dv = dk + kBlockK * pd;
    const HeadRows dk_out = head_rows(params.dk, problem, seq, g, false);
    const HeadRows dv_out = head_rows(params.dv, problem, seq, g, false);
    std::vector<float> dk_row(d), dv_row(d);
    // fp32 operands: the kernel's fp32 dK/dV sums run over one query tile only and are
    // folded into fp64 totals after each, so a key's gradient over thousands of query rows
    // is not one fp32 chain (its rounding error would grow with the sequence, beyond that
    // of a blocked matrix product; a 1000-row causal case exceeded the tolerance rule).
    std::vector<double> totals(bf16 ? 0 : 2 * kBlockK * pd);
    const auto fold_into_totals = [&] {
      for (std::int64_t i = 0; i < 2 * kBlockK * pd; ++i) {
        totals[i] += dk[i];
        dk[i] = 0.0f;
      }
    };
    for (std::int64_t kt = chunk; kt < ceil_div(seq.seq_k, kBlockK); kt += chunks) {
      std::fill(dk, dk + 2 * kBlockK * pd, 0.0f);
      std::fill(totals.begin(), totals.end(), 0.0);
      const std::int64_t col0 = kt * kBlockK;
      BackwardTileArgs a;
      BackwardTileBf16Args a16;
      if (bf16) {
        const std::int64_t at = keys_bf16->slot(g, b, kt) * keys_bf16->tile_size;
        a16.k_pairs = keys_bf16->k_dim_data() + at;
        a16.v_pairs = keys_bf16->v_data() + at;
        a16.k_key_pairs = keys_bf16->k_key_data() + at;
        a16.scale = problem.scale;
        a16.col0 = col0;
        a16.padded_dim = pd;
        a16.dk_t = dk;
        a16.dv_t = dv;
        a16.scratch = dv + kBlockK * pd;
      } else {
        const std::int64_t slot = keys->slot(g, b, kt);
        a.k_cols = keys->k_cols.data() + slot * keys->cols_size;
        a.k_rows = keys->k_rows.data() + slot * keys->rows_size;
        a.v_cols = keys->v_cols.data() + slot * keys->cols_size;
        a.col0 = col0;
        a.head_dim = d;
        a.padded_dim = pd;
        a.dk = dk;
        a.dv = dv;
        a.scratch = dv + kBlockK * pd;
      }
      for (std::int64_t h = g * group; h < (g + 1) * group; ++h) {
        const Logits logits = make_logits(params, problem, seq, h);
        const std::int64_t base = h * rows_total + layout.q_row_start[b];
        for (std::int64_t row0 = 0; row0 < seq.seq_q; row0 += kBlockQ) {
          const std::int64_t rows = std::min(kBlockQ, seq.seq_q - row0);
          if (!tiles_meet(logits.mask, row0, rows, col0)) continue;
          const std::int64_t row = base + row0;
          float* dq = dq_partial.data() + chunk * partial_stride + row * pd;
          if (bf16) {
            const std::uint16_t* operands = query_operands(h, layout.q_tile_start[b] + row0 / kBlockQ);
            a16.q = operands;
            a16.q_t = operands + bf16_tile;
            a16.dout = operands + 2 * bf16_tile;
            a16.dout_t = operands + 3 * bf16_tile;
            a16.lse = lse.data() + row;
            a16.delta = delta.data() + row;
            a16.row0 = row0;
            a16.rows = rows;
            a16.logits = logits;
            a16.dq = dq;
            kernels.backward_tile_bf16(a16);
          } else {
            a.q = q.data() + row * pd;
            a.dout = dout.data() + row * pd;
            a.lse = lse.data() + row;
            a.delta = delta.data() + row;
            a.row0 = row0;
            a.rows = rows;
            a.logits = logits;
            a.dq = dq;
            kernels.backward_tile(a);
            fold_into_totals();
          }
        }
      }
      const std::int64_t cols = std::min(kBlockK, seq.seq_k - col0);
      for (std::int64_t j = 0; j < cols; ++j) {
        if (bf16) {
          // Transposed accumulators; the softmax scale of dK = scale dS^T Q goes in here.
          for (std::int64_t c = 0; c < d; ++c) {
            dk_row[c] = dk[c * kBlockK + j] * problem.scale;
            dv_row[c] = dv[c * kBlockK + j];
          }
          dk_out.store_row(col0 + j, d, dk_row.data());
          dv_out.store_row(col0 + j, d, dv_row.data());
        } else {
          for (std::int64_t c = 0; c < d; ++c) {
            dk_row[c] = static_cast<float>(totals[j * pd + c]);
            dv_row[c] = static_cast<float>(totals[kBlockK * pd + j * pd + c]);
          }
          dk_out.store_row(col0 + j, d, dk_row.data());
          dv_out.store_row(col0 + j, d, dv_row.data());
        }
      }
    }
  });

  parallel_for(hq * num_q_tiles, threads, [&](std::int64_t task, int) {
    const std::int64_t h = task / num_q_tiles;
    const TileRef t = layout.query_tiles[task % num_q_tiles];
    const Sequence& seq = layout.sequences[t.batch];
    const std::int64_t row0 = t.tile * kBlockQ, rows = std::min(kBlockQ, seq.seq_q - row0);
    const std::int64_t base = h * rows_total + layout.q_row_start[t.batch] + row0;
    const HeadRows dq = head_rows(params.dq, problem, seq, h, true);
    std::vector<float> sum(pd);
    for (std::int64_t r = 0; r < rows; ++r) {
      std::fill(sum.begin(), sum.end(), 0.0f);
      for (std::int64_t chunk = 0; chunk < chunks; ++chunk) {
        const float* partial = dq_partial.data() + chunk * partial_stride + (base + r) * pd;
        for (std::int64_t c = 0; c < pd; ++c) sum[c] += partial[c];
      }
      for (std::int64_t c = 0; c < d; ++c) sum[c] *= problem.scale;
      dq.store_row(row0 + r, d, sum.data());
    }
  });
}

}  // namespace tiled

void tiled_forward(const ForwardParams& params, const detail::Problem& problem) {
  tiled::forward(params, problem, tiled::best_kernels());
}

void tiled_backward(const BackwardParams& params, const detail::Problem& problem) {
  tiled::backward(params, problem, tiled::best_kernels());
}

}  // namespace tileflash::cpu
