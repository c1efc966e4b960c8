// The AMX kernel set: the AVX-512 kernels, plus a forward and a backward for bf16 inputs
// whose products run on AMX tiles from bf16 operands, with fp32 accumulation. P, dS
// are rounded to bf16 where they enter a product, the precision choice of the GPU
// kernels (and of the same-precision attention the tests measure against); softmax,
// statistics and dS = P (dP - delta) stay fp32 on AVX-512. Used only where the CPU reports AMX-BF16 and
// AVX512-BF16 and Linux grants the process the tile state.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "common/philox.h"
#include "cpu/tiled_kernels.h"

#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#define TILEFLASH_HAVE_AMX_KERNELS 1
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx512bf16,avx2,fma,amx-tile,amx-bf16")
// GCC 12's AVX-512 headers start some intrinsics from an undefined vector on purpose.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

namespace tileflash::cpu::tiled {
namespace amx {

#define TILEFLASH_TARGET \
  __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx512bf16,avx2,fma,amx-tile,amx-bf16")))

#include "cpu/vec_avx512.inl"

constexpr int kRowBlock = 12;
constexpr int kColVectors = 2;

#include "cpu/tiled_kernels.inl"

// Every product below is cut into 32 x 32 blocks of C held in four tiles (16 rows of 16
// fp32 each), with two A tiles (16 rows x 32 bf16) and two B tiles (16 pairs x 16
// columns) per 32-deep step: all eight tile registers, each A and B tile used twice.
constexpr int kTileRows = 16;
constexpr int kTileBytes = 64;
constexpr std::int64_t kBlock = 32;
static_assert(kBlockQ % kBlock == 0 && kBlockK % kBlock == 0, "tiles cover the query and key tiles exactly");
static_assert(kBf16DimMultiple % kBlock == 0, "tiles cover the padded head dimension exactly");

// GCC 12's tile intrinsics paste the tile number into the instruction text, so they take
// literals: tiles 0-3 are C (rows 0-15 / 16-31 x columns 0-15 / 16-31), 4-5 A, 6-7 B.
// They are asm statements that do not tell the compiler which memory they read or
// write: every product is fenced by compiler barriers.
inline void compiler_barrier() { asm volatile("" ::: "memory"); }

struct alignas(64) TileConfig {
  std::uint8_t palette = 1;
  std::uint8_t start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t bytes_per_row[16] = {};
  std::uint8_t rows[16] = {};
};
static_assert(sizeof(TileConfig) == 64, "the layout ldtilecfg reads");

TILEFLASH_TARGET void configure_tiles() {
  TileConfig config;
  for (int t = 0; t < 8; ++t) {
    config.bytes_per_row[t] = kTileBytes;
    config.rows[t] = kTileRows;
  }
  compiler_barrier();
  _tile_loadconfig(&config);
}

// One 32-deep step on the four C tiles: A rows at a (row stride a_stride bytes), B pair
// rows at b (stride b_stride bytes).
TILEFLASH_TARGET inline void multiply_step(const std::uint16_t* a, std::int64_t a_stride, const std::uint16_t* b,
                                           std::int64_t b_stride) {
  const auto* a_bytes = reinterpret_cast<const char*>(a);
  const auto* b_bytes = reinterpret_cast<const char*>(b);
  _tile_loadd(4, a_bytes, a_stride);
  _tile_loadd(5, a_bytes + kTileRows * a_stride, a_stride);
  _tile_loadd(6, b_bytes, b_stride);
  _tile_loadd(7, b_bytes + kTileBytes, b_stride);
  _tile_dpbf16ps(0, 4, 6);
  _tile_dpbf16ps(1, 4, 7);
  _tile_dpbf16ps(2, 5, 6);
  _tile_dpbf16ps(3, 5, 7);
}

TILEFLASH_TARGET inline void load_block(const float* c, std::int64_t ldc) {
  const auto stride = static_cast<std::int64_t>(ldc * sizeof(float));
  _tile_loadd(0, c, stride);
  _tile_loadd(1, c + 16, stride);
  _tile_loadd(2, c + kTileRows * ldc, stride);
  _tile_loadd(3, c + kTileRows * ldc + 16, stride);
}

TILEFLASH_TARGET inline void store_block(float* c, std::int64_t ldc) {
  const auto stride = static_cast<std::int64_t>(ldc * sizeof(float));
  _tile_stored(0, c, stride);
  _tile_stored(1, c + 16, stride);
  _tile_stored(2, c + kTileRows * ldc, stride);
  _tile_stored(3, c + kTileRows * ldc + 16, stride);
}

// C (m x n, fp32) (+)= A B: A (m x depth) bf16 rows of stride lda, B (depth x n) as
// pairs (depth / 2, n, 2), C rows of stride ldc. m, n and depth are multiples of 32.
TILEFLASH_TARGET void multiply(std::int64_t m, std::int64_t n, std::int64_t depth, const std::uint16_t* a,
                               std::int64_t lda, const std::uint16_t* b_pairs, float* c, std::int64_t ldc,
                               bool accumulate) {
  const std::int64_t a_stride = lda * 2, b_stride = n * 2 * 2;
  compiler_barrier();
  for (std::int64_t i = 0; i < m; i += kBlock)
    for (std::int64_t j = 0; j < n; j += kBlock) {
      if (accumulate) {
        load_block(c + i * ldc + j, ldc);
      } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
      }
      for (std::int64_t t = 0; t < depth; t += kBlock)
        multiply_step(a + i * lda + t, a_stride, b_pairs + (t / 2) * n * 2 + j * 2, b_stride);
      store_block(c + i * ldc + j, ldc);
    }
  compiler_barrier();
}

// Rows [0, kBlockQ) of an fp32 (kBlockQ x kBlockK) tile rounded to bf16, row-major.
TILEFLASH_TARGET void round_rows(const float* x, std::uint16_t* rows) {
  for (std::int64_t i = 0; i < kBlockQ * kBlockK; i += Vec::width) {
    const __m256bh rounded = _mm512_cvtneps_pbh(_mm512_loadu_ps(x + i));
    std::memcpy(rows + i, &rounded, sizeof(rounded));
  }
}

// The same tile rounded to bf16 as pairs of rows (kBlockQ / 2, kBlockK, 2): the B operand
// of a product whose depth runs over the query rows.
TILEFLASH_TARGET void round_row_pairs(const float* x, std::uint16_t* pairs) {
  // Lane 2k takes element k of the even row, lane 2k + 1 element k of the odd row.
  alignas(64) std::uint16_t order[32];
  for (int k = 0; k < 16; ++k) {
    order[2 * k] = static_cast<std::uint16_t>(k);
    order[2 * k + 1] = static_cast<std::uint16_t>(k + 16);
  }
  const __m512i interleave = _mm512_load_si512(order);
  for (std::int64_t r = 0; r < kBlockQ; r += 2)
    for (std::int64_t c = 0; c < kBlockK; c += 16) {
      const __m512bh both = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + (r + 1) * kBlockK + c),
                                                _mm512_loadu_ps(x + r * kBlockK + c));
      __m512i bits;
      std::memcpy(&bits, &both, sizeof(bits));
      _mm512_storeu_si512(pairs + r * kBlockK + 2 * c, _mm512_permutexvar_epi16(interleave, bits));
    }
}

// softmax_step for a tile of unscaled products that needs no logit term or dropout, only
// the band mask (every tile without softcap, bias, ALiBi or dropout): the scale rides on
// the exponent's argument, with log2 e folded in (2^(scale log2e s - log2e max), max
// taken over the unscaled products, scale > 0, so a masked -inf stays -inf), and P goes
// to bf16 straight from the exp.
TILEFLASH_TARGET void plain_softmax_step(const detail::BandMask& mask, std::int64_t row0, std::int64_t rows,
                                         std::int64_t col0, float scale, float* s, std::uint16_t* p,
                                         const SoftmaxState& st) {
  constexpr int W = Vec::width;
  if (!tile_inside_band(mask, row0, rows, col0)) mask_outside_band(mask, row0, rows, col0, s);
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = s + r * kBlockK;
    Vec vmax = Vec::load(row);
    for (std::int64_t c = W; c < kBlockK; c += W) vmax = max(vmax, Vec::load(row + c));
    st.new_max[r] = std::max(st.row_max[r], vmax.reduce_max() * scale);
    // A row that has seen no key yet shifts by 0: exp(-inf - 0) = 0, not NaN.
    st.shift[r] = st.new_max[r] == kNegInf ? 0.0f : st.new_max[r];
  }
  rescale_statistics(st);
  const __m512 vscale = _mm512_set1_ps(scale * Vec::kLog2E);
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = s + r * kBlockK;
    const __m512 vshift = _mm512_set1_ps(st.shift[r] * Vec::kLog2E);
    Vec vsum = Vec::zero();
    for (std::int64_t c = 0; c < kBlockK; c += W) {
      const Vec e = Vec{_mm512_fmsub_ps(_mm512_loadu_ps(row + c), vscale, vshift)}.exp2();
      vsum = vsum + e;
      const __m256bh rounded = _mm512_cvtneps_pbh(e.v);
      std::memcpy(p + r * kBlockK + c, &rounded, sizeof(rounded));
    }
    st.row_sum[r] += vsum.reduce_add();
    st.row_max[r] = st.new_max[r];
  }
}

TILEFLASH_TARGET void forward_tile_bf16(const ForwardTileBf16Args& a) {
  constexpr int W = Vec::width;
  const std::int64_t pd = a.padded_dim;
  const Logits& lg = a.logits;
  float* s = a.scratch;
  const SoftmaxState st(s + kBlockQ * kBlockK);
  auto* p = reinterpret_cast<std::uint16_t*>(a.scratch + kForwardScratchFloats);
  // Rows past a.rows are carried through P V as zeros (their O stays 0 and is never read).
  std::fill(p + a.rows * kBlockK, p + kBlockQ * kBlockK, std::uint16_t{0});
  const bool no_terms = lg.softcap <= 0.0f && !lg.bias.defined() && !lg.has_alibi && !lg.has_dropout && a.scale > 0.0f;
  const Vec scale = Vec::broadcast(a.scale);
  configure_tiles();
  const KeyTileRange tiles = key_tiles_of(lg.mask, a.row0, a.rows);
  // The first key tile writes O (= P V) rather than adding to it, so O is neither zeroed
  // nor rescaled before it: only a query tile that sees no key needs the zeros.
  if (tiles.begin >= tiles.end) std::fill(a.out, a.out + kBlockQ * pd, 0.0f);
  for (std::int64_t kt = tiles.begin; kt < tiles.end; ++kt) {
    const std::int64_t col0 = kt * kBlockK;
    const bool first = kt == tiles.begin;
    multiply(kBlockQ, kBlockK, pd, a.q, pd, a.k_pairs + kt * pd * kBlockK, s, kBlockK, false);
    if (no_terms) {
      plain_softmax_step(lg.mask, a.row0, a.rows, col0, a.scale, s, p, st);
    } else {
      for (std::int64_t i = 0; i < a.rows * kBlockK; i += W) (Vec::load(s + i) * scale).store(s + i);
      softmax_step(lg, a.row0, a.rows, col0, s, st);
      for (std::int64_t i = 0; i < a.rows * kBlockK; i += W) {
        const __m256bh rounded = _mm512_cvtneps_pbh(_mm512_loadu_ps(s + i));
        std::memcpy(p + i, &rounded, sizeof(rounded));
      }
    }
    // Rows past a.rows hold zeros, which no factor changes.
    for (std::int64_t r = 0; r < a.rows && !first; ++r) {
      // Once a row's maximum settles its factor is exactly 1.
      if (st.rescale[r] == 1.0f) continue;
      const Vec factor = Vec::broadcast(st.rescale[r]);
      for (std::int64_t c = 0; c < pd; c += W) (Vec::load(a.out + r * pd + c) * factor).store(a.out + r * pd + c);
    }
    multiply(kBlockQ, pd, kBlockK, p, kBlockK, a.v_pairs + kt * kBlockK * pd, a.out, pd, !first);
  }
  // Lets the OS skip saving the tile registers when this thread is switched out.
  _tile_release();
  finish_softmax(lg, a.rows, pd, st, a.out, a.lse);
}

TILEFLASH_TARGET void backward_tile_bf16(const BackwardTileBf16Args& a) {
  constexpr int W = Vec::width;
  constexpr std::int64_t tile = kBlockQ * kBlockK;
  const std::int64_t pd = a.padded_dim;
  float* p = a.scratch;       // S, then P
  float* p_kept = p + tile;   // P with dropout applied
  float* ds = p_kept + tile;  // dP, then dS
  float* tanh_s = ds + tile;  // softcap only
  auto* p_pairs = reinterpret_cast<std::uint16_t*>(a.scratch + kBackwardScratchFloats);
  std::uint16_t* ds_pairs = p_pairs + tile;
  std::uint16_t* ds_rows = ds_pairs + tile;
  float* dq = a.scratch + kBackwardScratchFloats + 3 * tile / 2;  // (kBlockQ, pd)

  configure_tiles();
  multiply(kBlockQ, kBlockK, pd, a.q, pd, a.k_pairs, p, kBlockK, false);
  const Vec scale = Vec::broadcast(a.scale);
  for (std::int64_t i = 0; i < a.rows * kBlockK; i += W) (Vec::load(p + i) * scale).store(p + i);
  recompute_probabilities(a.logits, a.row0, a.rows, a.col0, a.lse, p, tanh_s);
  // Rows past a.rows enter the products over the query rows: they must be zeros.
  std::fill(p + a.rows * kBlockK, p + tile, 0.0f);
  const float* pv = kept_probabilities(a.logits, a.row0, a.rows, a.col0, p, p_kept);
  if (pv == p_kept) std::fill(p_kept + a.rows * kBlockK, p_kept + tile, 0.0f);
  round_row_pairs(pv, p_pairs);
  // dV^T += dO^T P_kept
  multiply(pd, kBlockK, kBlockQ, a.dout_t, kBlockQ, p_pairs, a.dv_t, kBlockK, true);
  // dP = dO V^T
  multiply(kBlockQ, kBlockK, pd, a.dout, pd, a.v_pairs, ds, kBlockK, false);
  score_gradient(a.logits, a.rows, a.delta, p, p_kept, tanh_s, ds);
  std::fill(ds + a.rows * kBlockK, ds + tile, 0.0f);
  round_row_pairs(ds, ds_pairs);
  round_rows(ds, ds_rows);
  // dK^T += Q^T dS; dQ = dS K, added to the caller's rows (its buffer ends at a.rows)
  multiply(pd, kBlockK, kBlockQ, a.q_t, kBlockQ, ds_pairs, a.dk_t, kBlockK, true);
  multiply(kBlockQ, pd, kBlockK, ds_rows, kBlockK, a.k_key_pairs, dq, pd, false);
  _tile_release();
  for (std::int64_t i = 0; i < a.rows * pd; i += W) (Vec::load(a.dq + i) + Vec::load(dq + i)).store(a.dq + i);
}

#undef TILEFLASH_TARGET

}  // namespace amx
}  // namespace tileflash::cpu::tiled

#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif

namespace tileflash::cpu::tiled {

bool amx_usable() {
#if defined(TILEFLASH_HAVE_AMX_KERNELS)
  static const bool usable = [] {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    const bool amx_bf16 = (edx >> 22) & 1u, amx_tile = (edx >> 24) & 1u;
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    if (!amx_bf16 || !amx_tile || !avx512) return false;
    if (!__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) || !((eax >> 5) & 1u)) return false;  // AVX512-BF16
    // Linux hands out the 8 KiB tile state only on request (ARCH_REQ_XCOMP_PERM for
    // XFEATURE_XTILEDATA); without it the first tile instruction faults.
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return usable;
#else
  return false;
#endif
}

const KernelSet& amx_kernels() {
#if defined(TILEFLASH_HAVE_AMX_KERNELS)
  static const KernelSet set{"amx",         amx::Vec::width,           amx::forward_tile,
                             amx::backward_tile, amx::forward_tile_bf16, amx::backward_tile_bf16};
  return set;
#else
  return avx512_kernels();
#endif
}

}  // namespace tileflash::cpu::tiled
