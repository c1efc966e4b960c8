// The tiled CPU FlashAttention driver: packs K/V (and, for the backward, Q and dO) into
// fp32 tiles once, then runs the per-tile kernels of the best instruction set over a
// thread pool.
//
// Forward: one task per (sequence, query head, query tile), FlashAttention-2 order (the
// key tiles inside, online softmax, one normalisation at the end).
// Backward: one task per (sequence, kv head, chunk of key tiles). A task owns dK and dV of
// its key tiles (summed over the GQA group inside the task) and adds dQ into a buffer of
// its own chunk; the chunks' dQ are summed in a fixed order at the end. The chunking
// depends on the problem only, never on the thread count, so gradients are bitwise
// identical across runs and thread counts, and race-free.
#include "cpu/tiled.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/philox.h"
#include "cpu/cpu_backend.h"
#include "cpu/thread_pool.h"
#include "tileflash/error.h"

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
  if (avx512 && want != "avx2") return avx512_kernels();
  if (avx2) return avx2_kernels();
#endif
  return scalar_kernels();
}

}  // namespace tiled

namespace {

using tiled::kBlockK;
using tiled::kBlockQ;

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// The sequences of the batch and where their rows and key tiles start in the packed buffers.
struct Layout {
  std::vector<Sequence> sequences;
  std::vector<std::int64_t> q_row_start;   // packed query rows of sequence b start here
  std::vector<std::int64_t> k_tile_start;  // packed key tiles of sequence b start here
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
      total_q_rows += s.seq_q;
      const std::int64_t tiles = ceil_div(s.seq_k, kBlockK);
      total_k_tiles += tiles;
      max_k_tiles = std::max(max_k_tiles, tiles);
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
    for (std::int64_t c = 0; c < head_dim; ++c) row[c] = scale * static_cast<float>(src.load(first + r, c));
    std::fill(row + head_dim, row + padded_dim, 0.0f);
  }
}

// One key tile: `cols` (head_dim, kBlockK), a key per column, and/or `rows` (kBlockK, padded_dim);
// zero past the sequence.
void pack_key_tile(const HeadRows& src, std::int64_t tile, std::int64_t seq_k, std::int64_t head_dim,
                   std::int64_t padded_dim, float* cols, float* rows) {
  const std::int64_t first = tile * kBlockK, count = std::min(kBlockK, seq_k - first);
  if (cols) std::fill(cols, cols + head_dim * kBlockK, 0.0f);
  if (rows) std::fill(rows, rows + kBlockK * padded_dim, 0.0f);
  for (std::int64_t j = 0; j < count; ++j) {
    for (std::int64_t c = 0; c < head_dim; ++c) {
      const float x = static_cast<float>(src.load(first + j, c));
      if (cols) cols[c * kBlockK + j] = x;
      if (rows) rows[j * padded_dim + c] = x;
    }
  }
}

// Packed key/value tiles of every (kv head, sequence): which layouts are filled depends on the pass.
struct PackedKeys {
  std::vector<float> k_cols, k_rows, v_cols, v_rows;
  std::int64_t cols_size = 0, rows_size = 0;

  PackedKeys(const ForwardParams& params, const detail::Problem& problem, const Layout& layout, int threads,
             bool backward) {
    cols_size = layout.head_dim * kBlockK;
    rows_size = kBlockK * layout.padded_dim;
    const std::int64_t tiles = problem.heads_kv * layout.total_k_tiles;
    k_cols.resize(tiles * cols_size);
    if (backward) {
      k_rows.resize(tiles * rows_size);
      v_cols.resize(tiles * cols_size);
    } else {
      v_rows.resize(tiles * rows_size);
    }
    // (kv head, sequence) pairs, each packing its tiles.
    parallel_for(problem.heads_kv * problem.batch, threads, [&](std::int64_t task, int) {
      const std::int64_t g = task / problem.batch, b = task % problem.batch;
      const Sequence& seq = layout.sequences[b];
      const HeadRows k = head_rows(params.k, problem, seq, g, false);
      const HeadRows v = head_rows(params.v, problem, seq, g, false);
      for (std::int64_t kt = 0; kt < ceil_div(seq.seq_k, kBlockK); ++kt) {
        const std::int64_t slot = g * layout.total_k_tiles + layout.k_tile_start[b] + kt;
        pack_key_tile(k, kt, seq.seq_k, layout.head_dim, layout.padded_dim, k_cols.data() + slot * cols_size,
                      backward ? k_rows.data() + slot * rows_size : nullptr);
        pack_key_tile(v, kt, seq.seq_k, layout.head_dim, layout.padded_dim,
                      backward ? v_cols.data() + slot * cols_size : nullptr,
                      backward ? nullptr : v_rows.data() + slot * rows_size);
      }
    });
  }

  std::int64_t slot(const Layout& layout, std::int64_t kv_head, std::int64_t b, std::int64_t kt) const {
    return kv_head * layout.total_k_tiles + layout.k_tile_start[b] + kt;
  }
};

// Whether any row of query tile [row0, row0 + rows) may attend a column of key tile col0.
bool tiles_meet(const detail::BandMask& mask, std::int64_t row0, std::int64_t rows, std::int64_t col0) {
  return mask.first_col(row0) < col0 + kBlockK && mask.end_col(row0 + rows - 1) > col0 &&
         mask.first_col(row0) < mask.end_col(row0 + rows - 1);
}

}  // namespace

namespace tiled {

void forward(const ForwardParams& params, const detail::Problem& problem, const KernelSet& kernels) {
  const Layout layout(params, problem, kernels.vector_width);
  const int threads = resolve_thread_count(params.num_threads);
  const PackedKeys keys(params, problem, layout, threads, /*backward=*/false);
  const std::int64_t pd = layout.padded_dim, d = layout.head_dim;

  struct QueryTile {
    std::int64_t batch, tile;
  };
  std::vector<QueryTile> query_tiles;
  for (std::int64_t b = 0; b < problem.batch; ++b)
    for (std::int64_t t = 0; t < ceil_div(layout.sequences[b].seq_q, kBlockQ); ++t) query_tiles.push_back({b, t});

  const std::int64_t per_thread = 2 * kBlockQ * pd + kBlockQ + kForwardScratchFloats;
  std::vector<float> scratch(static_cast<std::size_t>(per_thread) * threads);
  const auto num_tiles = static_cast<std::int64_t>(query_tiles.size());
  parallel_for(num_tiles * problem.heads_q, threads, [&](std::int64_t task, int thread) {
    const QueryTile qt = query_tiles[task % num_tiles];
    const std::int64_t h = task / num_tiles;
    const Sequence& seq = layout.sequences[qt.batch];
    float* q = scratch.data() + per_thread * thread;
    float* out = q + kBlockQ * pd;
    float* lse = out + kBlockQ * pd;
    ForwardTileArgs a;
    a.row0 = qt.tile * kBlockQ;
    a.rows = std::min(kBlockQ, seq.seq_q - a.row0);
    pack_rows(head_rows(params.q, problem, seq, h, true), a.row0, a.rows, d, pd, problem.scale, q);
    a.q = q;
    const std::int64_t g = h / problem.group_size();
    const std::int64_t first_slot = keys.slot(layout, g, qt.batch, 0);
    a.k_cols = keys.k_cols.data() + first_slot * keys.cols_size;
    a.v_rows = keys.v_rows.data() + first_slot * keys.rows_size;
    a.head_dim = d;
    a.padded_dim = pd;
    a.logits = make_logits(params, problem, seq, h);
    a.out = out;
    a.lse = lse;
    a.scratch = lse + kBlockQ;
    kernels.forward_tile(a);
    const HeadRows out_rows = head_rows(params.out, problem, seq, h, true);
    for (std::int64_t r = 0; r < a.rows; ++r)
      for (std::int64_t c = 0; c < d; ++c) out_rows.store(a.row0 + r, c, out[r * pd + c]);
    if (problem.has_lse) {
      const LseRow lse_out = lse_row(params.lse, problem, seq, h);
      for (std::int64_t r = 0; r < a.rows; ++r) lse_out[a.row0 + r] = lse[r];
    }
  });
}

void backward(const BackwardParams& params, const detail::Problem& problem, const KernelSet& kernels) {
  const Layout layout(params, problem, kernels.vector_width);
  const int threads = resolve_thread_count(params.num_threads);
  const PackedKeys keys(params, problem, layout, threads, /*backward=*/true);
  const std::int64_t pd = layout.padded_dim, d = layout.head_dim, rows_total = layout.total_q_rows;
  const std::int64_t hq = problem.heads_q, group = problem.group_size();

  // Packed per (query head, packed row): q * scale, dO, lse and D = rowsum(dO o O).
  std::vector<float> q(hq * rows_total * pd), dout(hq * rows_total * pd), lse(hq * rows_total),
      delta(hq * rows_total);
  parallel_for(hq * problem.batch, threads, [&](std::int64_t task, int) {
    const std::int64_t h = task / problem.batch, b = task % problem.batch;
    const Sequence& seq = layout.sequences[b];
    const std::int64_t base = h * rows_total + layout.q_row_start[b];
    pack_rows(head_rows(params.q, problem, seq, h, true), 0, seq.seq_q, d, pd, problem.scale, q.data() + base * pd);
    pack_rows(head_rows(params.dout, problem, seq, h, true), 0, seq.seq_q, d, pd, 1.0f, dout.data() + base * pd);
    const HeadRows out = head_rows(params.out, problem, seq, h, true);
    const LseRow lse_in = lse_row(params.lse, problem, seq, h);
    for (std::int64_t i = 0; i < seq.seq_q; ++i) {
      float sum = 0.0f;
      for (std::int64_t c = 0; c < d; ++c) sum += dout[(base + i) * pd + c] * static_cast<float>(out.load(i, c));
      delta[base + i] = sum;
      lse[base + i] = lse_in[i];
    }
  });

  const std::int64_t pairs = problem.batch * problem.heads_kv;
  // Enough tasks to feed a many-core host when there are few (sequence, kv head) pairs;
  // each extra chunk costs one more fp32 dQ buffer.
  constexpr std::int64_t kBackwardTaskTarget = 32;
  const std::int64_t chunks = pairs == 0 ? 1
                                         : std::clamp<std::int64_t>(ceil_div(kBackwardTaskTarget, pairs), 1,
                                                                    std::max<std::int64_t>(1, layout.max_k_tiles));
  std::vector<float> dq_partial(chunks * hq * rows_total * pd, 0.0f);
  const std::int64_t per_thread = 2 * kBlockK * pd + kBackwardScratchFloats;
  std::vector<float> scratch(static_cast<std::size_t>(per_thread) * threads);

  parallel_for(pairs * chunks, threads, [&](std::int64_t task, int thread) {
    const std::int64_t chunk = task % chunks, pair = task / chunks;
    const std::int64_t b = pair % problem.batch, g = pair / problem.batch;
    const Sequence& seq = layout.sequences[b];
    float* dk = scratch.data() + per_thread * thread;
    float* dv = dk + kBlockK * pd;
    const HeadRows dk_out = head_rows(params.dk, problem, seq, g, false);
    const HeadRows dv_out = head_rows(params.dv, problem, seq, g, false);
    for (std::int64_t kt = chunk; kt < ceil_div(seq.seq_k, kBlockK); kt += chunks) {
      std::fill(dk, dk + 2 * kBlockK * pd, 0.0f);
      const std::int64_t slot = keys.slot(layout, g, b, kt);
      BackwardTileArgs a;
      a.k_cols = keys.k_cols.data() + slot * keys.cols_size;
      a.k_rows = keys.k_rows.data() + slot * keys.rows_size;
      a.v_cols = keys.v_cols.data() + slot * keys.cols_size;
      a.col0 = kt * kBlockK;
      a.head_dim = d;
      a.padded_dim = pd;
      a.dk = dk;
      a.dv = dv;
      a.scratch = dv + kBlockK * pd;
      for (std::int64_t h = g * group; h < (g + 1) * group; ++h) {
        a.logits = make_logits(params, problem, seq, h);
        const std::int64_t base = h * rows_total + layout.q_row_start[b];
        for (a.row0 = 0; a.row0 < seq.seq_q; a.row0 += kBlockQ) {
          a.rows = std::min(kBlockQ, seq.seq_q - a.row0);
          if (!tiles_meet(a.logits.mask, a.row0, a.rows, a.col0)) continue;
          const std::int64_t row = base + a.row0;
          a.q = q.data() + row * pd;
          a.dout = dout.data() + row * pd;
          a.lse = lse.data() + row;
          a.delta = delta.data() + row;
          a.dq = dq_partial.data() + (chunk * hq * rows_total + row) * pd;
          kernels.backward_tile(a);
        }
      }
      const std::int64_t cols = std::min(kBlockK, seq.seq_k - a.col0);
      for (std::int64_t j = 0; j < cols; ++j) {
        for (std::int64_t c = 0; c < d; ++c) {
          dk_out.store(a.col0 + j, c, dk[j * pd + c]);
          dv_out.store(a.col0 + j, c, dv[j * pd + c]);
        }
      }
    }
  });

  parallel_for(hq * problem.batch, threads, [&](std::int64_t task, int) {
    const std::int64_t h = task / problem.batch, b = task % problem.batch;
    const Sequence& seq = layout.sequences[b];
    const std::int64_t base = h * rows_total + layout.q_row_start[b];
    const HeadRows dq = head_rows(params.dq, problem, seq, h, true);
    for (std::int64_t i = 0; i < seq.seq_q; ++i) {
      for (std::int64_t c = 0; c < d; ++c) {
        float sum = 0.0f;
        for (std::int64_t chunk = 0; chunk < chunks; ++chunk)
          sum += dq_partial[(chunk * hq * rows_total + base + i) * pd + c];
        dq.store(i, c, problem.scale * sum);
      }
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
