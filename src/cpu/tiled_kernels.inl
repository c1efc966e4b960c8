// The tiled kernels, written once over a vector type. Each instruction-set file defines,
// inside its own namespace and under its own `#pragma GCC target`:
//   Vec          with width, load, store, broadcast, zero, fma, +, -, *, max,
//                reduce_max, reduce_add and exp (exactly 0 for -inf; the vector sets give 0
//                below about -86.6);
//   kRowBlock    rows of the register-blocked product micro-kernel;
//   kColVectors  vectors of columns of that micro-kernel;
//   TILEFLASH_TARGET  the function attribute selecting the instruction set (GCC does not
//                apply `#pragma GCC target` to every function, member functions included);
// and then includes this file. Everything here has internal linkage per instruction
// set, so no function compiled for one set can be picked by the linker for another.

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// How a product treats the C it writes.
struct Output {
  float* c;
  std::int64_t ldc;
  bool accumulate;                   // C += A B, else C = A B
  const float* row_scale = nullptr;  // with accumulate: C = diag(row_scale) C + A B
};

// C (m x n) (+)= A (m x depth) * B (depth x n) for an m x (vectors * width) block.
// A is read element by element (broadcast), so any strides work: a(r, t) =
// a[r * a_row + t * a_depth]; B rows have stride ldb.
template <int Rows, int Vectors>
TILEFLASH_TARGET inline void product_block(std::int64_t depth, const float* a, std::int64_t a_row, std::int64_t a_depth,
                                           const float* b, std::int64_t ldb, Output out) {
  Vec acc[Rows][Vectors];
#pragma GCC unroll 16
  for (int r = 0; r < Rows; ++r) {
    const Vec scale = Vec::broadcast(out.row_scale ? out.row_scale[r] : 1.0f);
#pragma GCC unroll 4
    for (int v = 0; v < Vectors; ++v) {
      if (!out.accumulate)
        acc[r][v] = Vec::zero();
      else if (out.row_scale)
        acc[r][v] = Vec::load(out.c + r * out.ldc + v * Vec::width) * scale;
      else
        acc[r][v] = Vec::load(out.c + r * out.ldc + v * Vec::width);
    }
  }
  for (std::int64_t t = 0; t < depth; ++t) {
    Vec bv[Vectors];
#pragma GCC unroll 4
    for (int v = 0; v < Vectors; ++v) bv[v] = Vec::load(b + t * ldb + v * Vec::width);
    const float* at = a + t * a_depth;
#pragma GCC unroll 16
    for (int r = 0; r < Rows; ++r) {
      const Vec ar = Vec::broadcast(at[r * a_row]);
#pragma GCC unroll 4
      for (int v = 0; v < Vectors; ++v) acc[r][v] = fma(ar, bv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < Vectors; ++v) acc[r][v].store(out.c + r * out.ldc + v * Vec::width);
}

template <int Vectors, int Rows = kRowBlock>
TILEFLASH_TARGET inline void product_rows(std::int64_t rows, std::int64_t depth, const float* a, std::int64_t a_row,
                                          std::int64_t a_depth, const float* b, std::int64_t ldb, Output out) {
  if constexpr (Rows > 0) {
    for (; rows >= Rows; rows -= Rows, a += Rows * a_row) {
      product_block<Rows, Vectors>(depth, a, a_row, a_depth, b, ldb, out);
      out.c += Rows * out.ldc;
      if (out.row_scale) out.row_scale += Rows;
    }
    if (rows > 0) product_rows<Vectors, Rows - 1>(rows, depth, a, a_row, a_depth, b, ldb, out);
  }
}

template <int Vectors = kColVectors>
TILEFLASH_TARGET inline void product_cols(std::int64_t rows, std::int64_t cols, std::int64_t depth, const float* a,
                                          std::int64_t a_row, std::int64_t a_depth, const float* b, std::int64_t ldb,
                                          Output out) {
  if constexpr (Vectors > 0) {
    constexpr std::int64_t block = Vectors * Vec::width;
    for (; cols >= block; cols -= block, b += block, out.c += block)
      product_rows<Vectors>(rows, depth, a, a_row, a_depth, b, ldb, out);
    if (cols > 0) product_cols<Vectors - 1>(rows, cols, depth, a, a_row, a_depth, b, ldb, out);
  }
}

// C (rows x cols) (+)= A * B; cols is a multiple of the vector width. Column blocks outside,
// so a block of B stays in L1 while every row block passes over it.
TILEFLASH_TARGET inline void product(std::int64_t rows, std::int64_t cols, std::int64_t depth, const float* a,
                                     std::int64_t a_row, std::int64_t a_depth, const float* b, std::int64_t ldb,
                                     Output out) {
  product_cols(rows, cols, depth, a, a_row, a_depth, b, ldb, out);
}

// Whether every (row, col) of the tile is inside the band and the sequence, so the
// mask need not be evaluated per element.
TILEFLASH_TARGET bool tile_inside_band(const detail::BandMask& mask, std::int64_t row0, std::int64_t rows,
                                       std::int64_t col0) {
  if (col0 + kBlockK > mask.seq_k) return false;
  return mask.first_col(row0 + rows - 1) <= col0 && mask.end_col(row0) >= col0 + kBlockK;
}

// The columns [begin, end) of key tile col0 that row i may attend.
struct ColumnRange {
  std::int64_t begin, end;
};

// The band leaves each row one interval of columns: masking a row is two fills, not a
// test per element (diagonal and remainder tiles are common).
TILEFLASH_TARGET ColumnRange band_columns(const detail::BandMask& mask, std::int64_t i, std::int64_t col0) {
  const std::int64_t begin = std::clamp<std::int64_t>(mask.first_col(i) - col0, 0, kBlockK);
  return {begin, std::clamp<std::int64_t>(mask.end_col(i) - col0, begin, kBlockK)};
}

// Sets the entries of a (rows x kBlockK) tile s outside the band to -inf.
TILEFLASH_TARGET void mask_outside_band(const detail::BandMask& mask, std::int64_t row0, std::int64_t rows,
                                        std::int64_t col0, float* s) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const ColumnRange band = band_columns(mask, row0 + r, col0);
    std::fill(s + r * kBlockK, s + r * kBlockK + band.begin, kNegInf);
    std::fill(s + r * kBlockK + band.end, s + (r + 1) * kBlockK, kNegInf);
  }
}

// Applies softcap, bias, ALiBi and the mask to a (rows x kBlockK) tile of scaled products
// s (row stride kBlockK); masked entries become -inf. With `tanh_out`, stores
// tanh(s / softcap) for the backward's chain rule.
TILEFLASH_TARGET void apply_logit_terms(const Logits& lg, std::int64_t row0, std::int64_t rows, std::int64_t col0,
                                        float* s, float* tanh_out) {
  const bool plain = lg.softcap <= 0.0f && !lg.bias.defined() && !lg.has_alibi;
  if (plain && tile_inside_band(lg.mask, row0, rows, col0)) return;
  mask_outside_band(lg.mask, row0, rows, col0, s);
  if (plain) return;
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t i = row0 + r;
    float* row = s + r * kBlockK;
    const ColumnRange band = band_columns(lg.mask, i, col0);
    for (std::int64_t cc = band.begin; cc < band.end; ++cc) {
      const std::int64_t j = col0 + cc;
      float x = row[cc];
      if (lg.softcap > 0.0f) {
        const float t = std::tanh(x / lg.softcap);
        if (tanh_out) tanh_out[r * kBlockK + cc] = t;
        x = lg.softcap * t;
      }
      if (lg.bias.defined()) x += static_cast<float>(lg.bias.load(i, j));
      if (lg.has_alibi) x += detail::alibi_bias(lg.alibi_slope, lg.mask, i, j);
      row[cc] = x;
    }
  }
}

// Multiplies a row of kBlockK probabilities by the dropout keep mask and `kept_value`.
TILEFLASH_TARGET void apply_dropout(const Logits& lg, std::int64_t i, std::int64_t col0, const float* p, float* out,
                                    float kept_value) {
  for (std::int64_t cc = 0; cc < kBlockK; cc += 4) {
    const detail::Philox4 bits =
        detail::dropout_bits(lg.dropout_seed, lg.dropout_offset, lg.batch_head, static_cast<std::uint32_t>(i),
                             static_cast<std::uint32_t>((col0 + cc) >> 2));
    for (int w = 0; w < 4; ++w)
      out[cc + w] = detail::philox_word(bits, w) >= lg.dropout_threshold ? p[cc + w] * kept_value : 0.0f;
  }
}

// Running statistics of the online softmax over the key tiles of one query tile; the
// arrays live in the scratch right after the (kBlockQ x kBlockK) score tile.
struct SoftmaxState {
  float* row_max;  // running maximum (-inf until a row sees a key)
  float* row_sum;  // running normaliser, relative to row_max
  float* shift;    // this tile's exponent shift (the new maximum, 0 if -inf)
  float* rescale;  // exp(old maximum - new maximum): what O is multiplied by before adding P V
  float* new_max;  // running maximum including this tile

  TILEFLASH_TARGET explicit SoftmaxState(float* stats)
      : row_max(stats),
        row_sum(stats + kBlockQ),
        shift(stats + 2 * kBlockQ),
        rescale(stats + 3 * kBlockQ),
        new_max(stats + 4 * kBlockQ) {
    std::fill(row_max, row_max + kBlockQ, kNegInf);
    std::fill(row_sum, row_sum + kBlockQ, 0.0f);
    std::fill(shift, shift + kBlockQ, 0.0f);
  }
};

// With st.shift set from the new maxima: st.rescale, and the normalisers rescaled.
TILEFLASH_TARGET void rescale_statistics(const SoftmaxState& st) {
  for (std::int64_t r = 0; r < kBlockQ; r += Vec::width) {
    const Vec factor = (Vec::load(st.row_max + r) - Vec::load(st.shift + r)).exp();
    factor.store(st.rescale + r);
    (Vec::load(st.row_sum + r) * factor).store(st.row_sum + r);
  }
}

// Turns the scaled products s of key tile col0 into unnormalised probabilities (dropout
// applied, 1 / (1 - p) not yet) and updates the statistics; fills st.rescale for every
// one of the kBlockQ rows.
TILEFLASH_TARGET void softmax_step(const Logits& lg, std::int64_t row0, std::int64_t rows, std::int64_t col0, float* s,
                                   const SoftmaxState& st) {
  constexpr int W = Vec::width;
  static_assert(kBlockQ % W == 0, "row statistics are processed a vector of rows at a time");
  apply_logit_terms(lg, row0, rows, col0, s, nullptr);
  // Row maxima first, then the rescale factors a vector of rows at a time: the
  // horizontal reductions of different rows overlap and no scalar exp is needed.
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = s + r * kBlockK;
    Vec vmax = Vec::load(row);
    for (std::int64_t c = W; c < kBlockK; c += W) vmax = max(vmax, Vec::load(row + c));
    st.new_max[r] = std::max(st.row_max[r], vmax.reduce_max());
    st.shift[r] = st.new_max[r] == kNegInf ? 0.0f : st.new_max[r];
  }
  rescale_statistics(st);
  for (std::int64_t r = 0; r < rows; ++r) {
    float* row = s + r * kBlockK;
    const Vec vshift = Vec::broadcast(st.shift[r]);
    Vec vsum = Vec::zero();
    for (std::int64_t c = 0; c < kBlockK; c += W) {
      const Vec p = (Vec::load(row + c) - vshift).exp();
      p.store(row + c);
      vsum = vsum + p;
    }
    st.row_sum[r] += vsum.reduce_add();
    st.row_max[r] = st.new_max[r];
    // The normaliser counts dropped entries too; 1 / (1 - p) is applied at the end.
    if (lg.has_dropout) apply_dropout(lg, row0 + r, col0, row, row, 1.0f);
  }
}

// O /= the normaliser (times 1 / (1 - p)); lse; rows that saw no key get 0 and -inf.
TILEFLASH_TARGET void finish_softmax(const Logits& lg, std::int64_t rows, std::int64_t pd, const SoftmaxState& st,
                                     float* out, float* lse) {
  for (std::int64_t r = 0; r < rows; ++r) {
    float* o = out + r * pd;
    if (st.row_sum[r] == 0.0f) {
      std::fill(o, o + pd, 0.0f);
      lse[r] = kNegInf;
      continue;
    }
    const Vec inv = Vec::broadcast(lg.keep_scale / st.row_sum[r]);
    for (std::int64_t c = 0; c < pd; c += Vec::width) (Vec::load(o + c) * inv).store(o + c);
    lse[r] = st.row_max[r] + std::log(st.row_sum[r]);
  }
}

TILEFLASH_TARGET void forward_tile(const ForwardTileArgs& a) {
  const std::int64_t pd = a.padded_dim;
  float* s = a.scratch;
  const SoftmaxState st(s + kBlockQ * kBlockK);
  const KeyTileRange tiles = key_tiles_of(a.logits.mask, a.row0, a.rows);
  // The first key tile writes O = P V, so O needs zeros only where no key tile is seen.
  if (tiles.begin >= tiles.end) std::fill(a.out, a.out + a.rows * pd, 0.0f);
  for (std::int64_t kt = tiles.begin; kt < tiles.end; ++kt) {
    product(a.rows, kBlockK, a.head_dim, a.q, pd, 1, a.k_cols + kt * a.head_dim * kBlockK, kBlockK,
            {s, kBlockK, false});
    softmax_step(a.logits, a.row0, a.rows, kt * kBlockK, s, st);
    // O = diag(rescale) O + P V
    const bool first = kt == tiles.begin;
    product(a.rows, pd, kBlockK, s, kBlockK, 1, a.v_rows + kt * kBlockK * pd, pd,
            {a.out, pd, !first, first ? nullptr : st.rescale});
  }
  finish_softmax(a.logits, a.rows, pd, st, a.out, a.lse);
}

// P = exp(S - lse) of a (rows x kBlockK) tile of scaled products s, in place, logit
// terms applied (tanh of the softcap kept in tanh_s); rows that saw no key give 0.
TILEFLASH_TARGET void recompute_probabilities(const Logits& lg, std::int64_t row0, std::int64_t rows,
                                              std::int64_t col0, const float* lse, float* s, float* tanh_s) {
  apply_logit_terms(lg, row0, rows, col0, s, tanh_s);
  for (std::int64_t r = 0; r < rows; ++r) {
    float* row = s + r * kBlockK;
    if (lse[r] == kNegInf) {
      std::fill(row, row + kBlockK, 0.0f);
      continue;
    }
    const Vec shift = Vec::broadcast(lse[r]);
    for (std::int64_t c = 0; c < kBlockK; c += Vec::width) (Vec::load(row + c) - shift).exp().store(row + c);
  }
}

// P with dropout applied (into p_kept), or P itself without dropout.
TILEFLASH_TARGET const float* kept_probabilities(const Logits& lg, std::int64_t row0, std::int64_t rows,
                                                 std::int64_t col0, const float* p, float* p_kept) {
  if (!lg.has_dropout) return p;
  for (std::int64_t r = 0; r < rows; ++r)
    apply_dropout(lg, row0 + r, col0, p + r * kBlockK, p_kept + r * kBlockK, lg.keep_scale);
  return p_kept;
}

// dS = P o (dP - delta), through dropout and softcap, from dP in place.
TILEFLASH_TARGET void score_gradient(const Logits& lg, std::int64_t rows, const float* delta_rows, const float* p,
                                     const float* p_kept, const float* tanh_s, float* ds) {
  for (std::int64_t r = 0; r < rows; ++r) {
    float* g = ds + r * kBlockK;
    const float* pr = p + r * kBlockK;
    const Vec delta = Vec::broadcast(delta_rows[r]);
    if (lg.has_dropout) {
      // dP of the undropped P: the keep mask and 1 / (1 - p), read off P_kept / P.
      const float* kept = p_kept + r * kBlockK;
      for (std::int64_t c = 0; c < kBlockK; ++c) g[c] = kept[c] != 0.0f ? g[c] * lg.keep_scale : 0.0f;
    }
    for (std::int64_t c = 0; c < kBlockK; c += Vec::width) {
      const Vec pc = Vec::load(pr + c);
      (pc * (Vec::load(g + c) - delta)).store(g + c);
    }
    if (lg.softcap > 0.0f) {
      const float* t = tanh_s + r * kBlockK;
      for (std::int64_t c = 0; c < kBlockK; ++c) g[c] = pr[c] == 0.0f ? 0.0f : g[c] * (1.0f - t[c] * t[c]);
    }
  }
}

TILEFLASH_TARGET void backward_tile(const BackwardTileArgs& a) {
  const std::int64_t pd = a.padded_dim, d = a.head_dim;
  float* p = a.scratch;                    // S, then P
  float* p_kept = p + kBlockQ * kBlockK;   // P with dropout applied
  float* ds = p_kept + kBlockQ * kBlockK;  // dP, then dS
  float* tanh_s = ds + kBlockQ * kBlockK;  // softcap only

  product(a.rows, kBlockK, d, a.q, pd, 1, a.k_cols, kBlockK, {p, kBlockK, false});
  recompute_probabilities(a.logits, a.row0, a.rows, a.col0, a.lse, p, tanh_s);
  const float* pv = kept_probabilities(a.logits, a.row0, a.rows, a.col0, p, p_kept);
  // dV += P_kept^T dO
  product(kBlockK, pd, a.rows, pv, 1, kBlockK, a.dout, pd, {a.dv, pd, true});
  // dP = dO V^T
  product(a.rows, kBlockK, d, a.dout, pd, 1, a.v_cols, kBlockK, {ds, kBlockK, false});
  score_gradient(a.logits, a.rows, a.delta, p, p_kept, tanh_s, ds);
  // dK += dS^T (scale q); dQ += dS K
  product(kBlockK, pd, a.rows, ds, 1, kBlockK, a.q, pd, {a.dk, pd, true});
  product(a.rows, pd, kBlockK, ds, kBlockK, 1, a.k_rows, pd, {a.dq, pd, true});
}

}  // namespace
