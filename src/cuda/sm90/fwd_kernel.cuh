// The Hopper FlashAttention forward kernel (sm_90a): TMA loads completing on mbarriers,
// wgmma from shared memory, producer/consumer warp specialisation.
//
// A persistent block walks work tiles of kBlockM query rows of one (batch, head).
// Warpgroup 0 is the producer: one thread issues every TMA copy (each tile's Q, then its
// K and V tiles through a ring of kStages slots, each slot with a "full" barrier the copy
// completes and an "empty" barrier the consumers release). The other warpgroups are
// consumers of 64 query rows each: per key tile S = Q K^T (wgmma, both operands in shared
// memory), the band mask and the online softmax in registers (shared with the
// Ampere-class kernel: wgmma's accumulator layout per warp is mma.sync's), then O += P V
// with P straight from registers; the softmax of one tile overlaps the P V product of the
// one before. With FP8 inputs (Tile::kFp8) the products read one-byte operands, V arrives
// transposed (fp8_values.h) and P is rounded to e4m3 before the P V product.
#pragma once

#include <cuda.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <type_traits>

#include "common/attention_math.h"
#include "cuda/common/fragment.cuh"
#include "cuda/common/mask.cuh"
#include "cuda/common/softmax.cuh"
#include "cuda/common/stream_workspace.h"
#include "cuda/common/tile_scheduler.cuh"
#include "cuda/sm80/launch_args.h"
#include "cuda/sm90/fp8_values.h"
#include "cuda/sm90/fwd_launch.h"
#include "cuda/sm90/hopper.cuh"
#include "cuda/sm90/pipeline.cuh"
#include "cuda/sm90/wgmma_generated.cuh"

namespace tileflash::cuda::sm90 {

// Shared memory of one block: Q, kStages K slots, kStages V slots (each as 64-column
// swizzle atoms, 1024-byte aligned), then the barriers.
template <class Tile>
struct ForwardSharedMemory {
  unsigned char* base;

  __device__ unsigned char* q() const { return base; }
  __device__ unsigned char* k(int stage) const { return base + Tile::kQBytes + stage * Tile::kKVBytes; }
  __device__ unsigned char* v(int stage) const {
    return base + Tile::kQBytes + (Tile::kStages + stage) * Tile::kKVBytes;
  }
  __device__ std::uint64_t* barriers() const {
    return reinterpret_cast<std::uint64_t*>(base + Tile::kQBytes + 2 * Tile::kStages * Tile::kKVBytes);
  }
  __device__ std::uint64_t* q_full() const { return barriers(); }
  __device__ std::uint64_t* q_empty() const { return barriers() + 1; }
  __device__ std::uint64_t* k_full(int stage) const { return barriers() + 2 + stage; }
  __device__ std::uint64_t* k_empty(int stage) const { return barriers() + 2 + Tile::kStages + stage; }
  __device__ std::uint64_t* v_full(int stage) const { return barriers() + 2 + 2 * Tile::kStages + stage; }
  __device__ std::uint64_t* v_empty(int stage) const { return barriers() + 2 + 3 * Tile::kStages + stage; }
  // The tile index handoff of kDynamicOrder: two slots, each with its barriers.
  __device__ std::uint64_t* tile_full(int slot) const { return barriers() + 2 + 4 * Tile::kStages + slot; }
  __device__ std::uint64_t* tile_empty(int slot) const { return barriers() + 4 + 4 * Tile::kStages + slot; }
  __device__ unsigned* tile_index(int slot) const {
    return reinterpret_cast<unsigned*>(barriers() + 6 + 4 * Tile::kStages) + slot;
  }
};

// The consumer warpgroups issue their wgmma in turn, round robin: warpgroup c waits on
// named barrier 1 + c, which the previous warpgroup arrives at once it has issued its
// products. Barrier 0 is __syncthreads().
template <int kConsumers>
struct WarpgroupTurns {
  int consumer;

  __device__ __forceinline__ void wait() const { named_barrier_sync(1 + consumer, 256); }
  __device__ __forceinline__ void pass() const { named_barrier_arrive(1 + (consumer + 1) % kConsumers, 256); }
  // The last consumer hands the first its first turn...
  __device__ __forceinline__ void start() const {
    if (consumer == kConsumers - 1) named_barrier_arrive(1, 256);
  }
  // ...and the first takes back the turn the last passes after its final products, so no
  // arrival is left pending on a barrier when the block exits.
  __device__ __forceinline__ void finish() const {
    if (consumer == 0) wait();
  }
};

// Everything a block needs to know about one work tile; the producer and the consumers
// derive it alike from the tile's coordinates.
struct ForwardWork {
  SequenceSlice seq;
  int head = 0, batch = 0;
  int row_begin = 0, rows_valid = 0;  // rows_valid <= 0: the tile lies past its sequence's end
  detail::BandMask mask;
  KeyTileRange keys;
  int tma_batch = 0;  // varlen tensors are one packed batch entry addressed by row
};

template <int kBlockM, int kBlockN>
__device__ __forceinline__ ForwardWork forward_work(const sm80::AttentionArgs& args, const WorkTile& tile) {
  ForwardWork w;
  w.head = tile.head;
  w.batch = tile.batch;
  w.seq = sequence_slice(args, tile.batch);
  w.row_begin = tile.m_block * kBlockM;
  w.rows_valid = w.seq.seq_q - w.row_begin < kBlockM ? w.seq.seq_q - w.row_begin : kBlockM;
  w.mask = detail::BandMask{w.seq.seq_q, w.seq.seq_k, args.window_left, args.window_right};
  if (w.rows_valid > 0) w.keys = key_tiles_for_rows<kBlockN>(w.mask, w.row_begin, w.row_begin + w.rows_valid);
  w.tma_batch = args.cu_seqlens_q != nullptr ? 0 : tile.batch;
  return w;
}

// The producer: one thread issues every copy of the block's work tiles. With kDynamicOrder
// it also decides which tiles those are and hands each index to the consumers.
template <class Tile>
__device__ __forceinline__ void produce_tiles(const ForwardTensorMaps& maps, const sm80::AttentionArgs& args,
                                              const ForwardSharedMemory<Tile>& smem,
                                              unsigned* tile_counter) {
  constexpr int kBlockM = Tile::kBlockM, kBlockN = Tile::kBlockN;
  const PersistentTileOrder order = forward_tile_order<kBlockM>(args);
  prefetch_tensor_map(&maps.q);
  prefetch_tensor_map(&maps.k);
  prefetch_tensor_map(&maps.v);
  RingPosition<Tile::kStages> slot;
  RingPosition<1> q_slot;  // one Q slot, whose barriers change phase every tile
  RingPosition<2> tile_slot;
  std::int64_t t = order.tile_of(0, blockIdx.x, gridDim.x);
  for (std::int64_t round = 0;; ++round) {
    if constexpr (Tile::kDynamicOrder) {
      // The consumers learn each tile (and the end: an index past the last tile) from here.
      mbarrier_wait(smem.tile_empty(tile_slot.stage), tile_slot.parity ^ 1u);
      *smem.tile_index(tile_slot.stage) = static_cast<unsigned>(t);
      mbarrier_arrive(smem.tile_full(tile_slot.stage));
      tile_slot.advance();
    }
    if (t >= order.count()) break;
    const ForwardWork work = forward_work<kBlockM, kBlockN>(args, order.at(t));
    // With a counter, the next tile is taken once this one's last copy is issued, a few key
    // tiles before the consumers finish it, so the block that frees up first takes the next
    // heaviest tile of the order.
    const auto take_next = [&] {
      t = Tile::kDynamicOrder && tile_counter != nullptr ? gridDim.x + atomicAdd(tile_counter, 1u)
                                                          : order.tile_of(round + 1, blockIdx.x, gridDim.x);
    };
    if (work.keys.empty()) {
      take_next();
      continue;
    }
    const int kv_head = work.head / (args.heads_q / args.heads_kv);
    const int transposed_key0 =
        static_cast<int>(transposed_key_begin(args.cu_seqlens_k != nullptr, work.seq.k_begin, work.batch));
    // The Q slot is free once every consumer warp's last Q K^T of the previous tile is done.
    mbarrier_wait_idle(smem.q_empty(), q_slot.parity ^ 1u);
    load_tile<Tile, kBlockM>(smem.q(), &maps.q, smem.q_full(), work.seq.q_begin + work.row_begin, work.head,
                             work.tma_batch);
    q_slot.advance();
    // Key tiles last to first, as the consumers visit them; K and V have their own
    // slots so the next K can land while this V is still being read.
    for (int n = work.keys.end - 1; n >= work.keys.begin; --n, slot.advance()) {
      const int key_row = work.seq.k_begin + n * kBlockN;
      mbarrier_wait_idle(smem.k_empty(slot.stage), slot.parity ^ 1u);
      load_tile<Tile, kBlockN>(smem.k(slot.stage), &maps.k, smem.k_full(slot.stage), key_row, kv_head,
                               work.tma_batch);
      mbarrier_wait_idle(smem.v_empty(slot.stage), slot.parity ^ 1u);
      if constexpr (Tile::kFp8)
        load_transposed_values<Tile>(smem.v(slot.stage), &maps.v, smem.v_full(slot.stage),
                                     transposed_key0 + n * kBlockN, kv_head, work.tma_batch);
      else
        load_tile<Tile, kBlockN>(smem.v(slot.stage), &maps.v, smem.v_full(slot.stage), key_row, kv_head,
                                 work.tma_batch);
    }
    take_next();
  }
}

// P of one 32-key step as the FP8 A operand: register r holds, for row group r % 2, the
// four positions 4t .. 4t + 3 of key half r / 2 (lane t of the quad). Those positions are
// this lane's accumulator columns 2t, 2t + 1, 2t + 8, 2t + 9 of the half, in that order;
// V^T holds their keys at those positions (transposed_key_of_position).
template <int kNTiles>
__device__ __forceinline__ void fp8_accumulator_as_a(const AccumulatorTile<1, kNTiles>& acc, int kk,
                                                     std::uint32_t (&a)[4]) {
  const auto pack4 = [](float x0, float x1, float x2, float x3) {
    const std::uint32_t low = __nv_cvt_float2_to_fp8x2(make_float2(x0, x1), __NV_SATFINITE, __NV_E4M3);
    const std::uint32_t high = __nv_cvt_float2_to_fp8x2(make_float2(x2, x3), __NV_SATFINITE, __NV_E4M3);
    return low | (high << 16);
  };
#pragma unroll
  for (int half = 0; half < 2; ++half)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const auto& first = acc.value[0][4 * kk + 2 * half];
      const auto& second = acc.value[0][4 * kk + 2 * half + 1];
      a[2 * half + h] = pack4(first[2 * h], first[2 * h + 1], second[2 * h], second[2 * h + 1]);
    }
}

// A per-tensor scale of FP8 inputs (absent: 1).
__device__ __forceinline__ float descale_value(const float* scale) { return scale != nullptr ? *scale : 1.0f; }

// A consumer warpgroup: its 64 rows of every work tile of the block. Element is the type of
// Q, K, V and the output, or with Tile::kFp8 that of the output alone.
template <class Tile, class Element>
__device__ __forceinline__ void consume_tiles(const sm80::AttentionArgs& args, const ForwardSharedMemory<Tile>& smem,
                                              int consumer) {
  constexpr int kBlockM = Tile::kBlockM, kBlockN = Tile::kBlockN, kHeadDim = Tile::kHeadDim;
  constexpr int kStages = Tile::kStages;
  const PersistentTileOrder order = forward_tile_order<kBlockM>(args);
  const int lane = static_cast<int>(threadIdx.x % 32);
  const int warp_row0 = 64 * consumer + 16 * (static_cast<int>(threadIdx.x / 32) % 4);
  using Input = std::conditional_t<Tile::kFp8, __nv_fp8_e4m3, Element>;
  constexpr int kKStep = Tile::kKStep;
  // FP8: the logits' scale takes the inputs' per-tensor factors of Q and K, the output's
  // normalisation that of V.
  const float to_log2 =
      Tile::kFp8 ? args.scale * descale_value(args.q_descale) * descale_value(args.k_descale) * kLog2e
                 : args.scale * kLog2e;
  const float output_factor = Tile::kFp8 ? descale_value(args.v_descale) : 1.0f;

  AccumulatorTile<1, kHeadDim / 8> out;
  AccumulatorTile<1, kBlockN / 8> scores;
  std::uint32_t p[kBlockN / kKStep][4];
  OnlineSoftmax<1, (Tile::kLazyRescale ? kLazyRescaleLag : 0), Tile::kPairwiseRowReductions> softmax;

  // The wgmma descriptors of every k-step are advanced by one add from these (a descriptor
  // built from an address costs 4-5 instructions, 16 of them per key tile at d = 64).
  const std::uint64_t q_descriptor = k_major_descriptor(ptx::smem_address(smem.q()) + 64 * consumer * 128);
  const std::uint64_t k_descriptor = k_major_descriptor(ptx::smem_address(smem.k(0)));
  const std::uint64_t v_descriptor = Tile::kFp8 ? k_major_descriptor(ptx::smem_address(smem.v(0)))
                                                : n_major_descriptor(ptx::smem_address(smem.v(0)), kBlockN * 128);
  // S = Q K^T of the key tile in `slot`, issued as one wgmma group (not waited for).
  const auto issue_scores = [&](const RingPosition<kStages>& slot) {
    const std::uint64_t k_tile = advance_descriptor(k_descriptor, slot.stage * Tile::kKVBytes);
    mbarrier_wait(smem.k_full(slot.stage), slot.parity);
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < kHeadDim / kKStep; ++ks) {
      const std::uint32_t offset = 32 * (ks % 4);
      Wgmma<Input, kBlockN>::ss(scores, advance_descriptor(q_descriptor, (ks / 4) * kBlockM * 128 + offset),
                                advance_descriptor(k_tile, (ks / 4) * kBlockN * 128 + offset), ks > 0);
    }
    wgmma_commit();
  };
  // O += P V of the key tile in `slot`, one wgmma group (not waited for).
  const auto issue_output = [&](const RingPosition<kStages>& slot) {
    const std::uint64_t v_tile = advance_descriptor(v_descriptor, slot.stage * Tile::kKVBytes);
    mbarrier_wait(smem.v_full(slot.stage), slot.parity);
    wgmma_fence();
    if constexpr (Tile::kFp8) {
      // V^T: kHeadDim rows of 128-key atoms; a 32-key step is 32 bytes along the row.
#pragma unroll
      for (int kk = 0; kk < kBlockN / kKStep; ++kk)
        Wgmma<Input, kHeadDim>::rs(out, p[kk], advance_descriptor(v_tile, (kk / 4) * kHeadDim * 128 + 32 * (kk % 4)),
                                   1);
    } else {
#pragma unroll
      for (int kk = 0; kk < kBlockN / 16; ++kk)
        Wgmma<Input, kHeadDim>::rs(out, p[kk], advance_descriptor(v_tile, kk * 16 * 128), 1);
    }
    wgmma_commit();
  };
  // Each warp releases its share of a slot once its wgmma reading the slot are complete.
  const auto release = [&](std::uint64_t* empty) {
    __syncwarp();
    if (lane == 0) mbarrier_arrive(empty);
  };
  const auto scores_to_p = [&] {
#pragma unroll
    for (int kk = 0; kk < kBlockN / kKStep; ++kk) {
      if constexpr (Tile::kFp8) fp8_accumulator_as_a(scores, kk, p[kk]);
      else accumulator_as_a<Element>(scores, 0, kk, p[kk]);
    }
  };

  // Two overlaps keep the tensor cores busy while the exponentials run. Within a
  // warpgroup, the scores of key tile n are exponentiated while the tensor cores run the
  // P V product of tile n + 1 (the output is rescaled only once that product is done,
  // under the next scores product). Between warpgroups, the consumers take turns to issue
  // their products (WarpgroupTurns), so one's softmax runs under the other's products
  // instead of all of them waiting on the tensor cores at once.
  const WarpgroupTurns<Tile::kConsumerWarpgroups> turns{consumer};
  turns.start();
  RingPosition<kStages> slot;
  RingPosition<1> q_slot;
  RingPosition<2> tile_slot;
  for (std::int64_t round = 0;; ++round) {
    // Under a band the tiles' work differs, so the fixed rounds of PersistentTileOrder leave
    // blocks idle at the end (modelled 5-8 % of the call at 2k-4k rows in the tall tile);
    // with kDynamicOrder the producer hands over the tiles it takes from a counter. The
    // handoff alone cost 2-5 % where the work is even or the tiles are 128 rows (H200 A/B,
    // perf-notes-hopper.md v17), so it is not done there.
    std::int64_t t;
    if constexpr (Tile::kDynamicOrder) {
      mbarrier_wait(smem.tile_full(tile_slot.stage), tile_slot.parity);
      // Read by lane 0 alone, the lane whose arrival releases the slot (an arrival orders
      // only its own thread's reads before the producer's next write), and passed on by a
      // warp reduction: redux.sync writes a uniform register, so ptxas knows the tile is
      // warp-uniform and keeps the work tile's coordinates in uniform registers.
      t = __reduce_max_sync(0xffffffffu, lane == 0 ? *smem.tile_index(tile_slot.stage) : 0u);
      if (lane == 0) mbarrier_arrive(smem.tile_empty(tile_slot.stage));
      tile_slot.advance();
    } else {
      t = order.tile_of(round, blockIdx.x, gridDim.x);
    }
    if (t >= order.count()) break;
    const ForwardWork work = forward_work<kBlockM, kBlockN>(args, order.at(t));
    if (work.rows_valid <= 0) continue;
    const KeyTileRange& keys = work.keys;
    // With kWarpgroupKeyTiles, this warpgroup's own key tiles: a subset of the block's,
    // fewer where its 64 rows need fewer (the upper rows of a causal diagonal tile, rows
    // past the sequence end in the last row tile, the lower rows of a window). It keeps
    // its turns and frees its share of the other tiles' slots without computing them.
    KeyTileRange own = keys;
    if constexpr (Tile::kWarpgroupKeyTiles) {
      const int own_row_end = 64 * consumer + 64 < work.rows_valid ? 64 * consumer + 64 : work.rows_valid;
      own = key_tiles_for_rows<kBlockN>(work.mask, work.row_begin + 64 * consumer, work.row_begin + own_row_end);
      if (own.empty()) own.begin = own.end = keys.begin;
    }
    const RowIntervals<1> rows(work.mask, work.row_begin + warp_row0);
    const auto mask_scores = [&](int n) {
      if (own.needs_mask(n)) apply_row_intervals(scores, rows, n * kBlockN);
    };
    const auto skip_key_tile = [&] {
      turns.wait();
      turns.pass();
      mbarrier_wait(smem.k_full(slot.stage), slot.parity);
      release(smem.k_empty(slot.stage));
      mbarrier_wait(smem.v_full(slot.stage), slot.parity);
      release(smem.v_empty(slot.stage));
      slot.advance();
    };
    out.fill(0.0f);
    softmax.init();
    if (!keys.empty()) {
      mbarrier_wait(smem.q_full(), q_slot.parity);
      q_slot.advance();
      for (int n = keys.end - 1; n >= own.end; --n) skip_key_tile();
    }
    if (!own.empty()) {
      turns.wait();
      issue_scores(slot);
      turns.pass();
      wgmma_wait<0>();
      pin_accumulators(scores);
      release(smem.k_empty(slot.stage));
      mask_scores(own.end - 1);
      float correction[2];
      bool moved = softmax.exponentiate(scores, to_log2, correction);
      // Waits for the P V product in flight, if any, releases the V slot it read, and
      // turns the exponentiated scores into P.
      bool output_in_flight = false;
      RingPosition<kStages> output_slot;
      const auto finish_output = [&] {
        wgmma_wait<0>();
        pin_accumulators(out);
        if (output_in_flight) release(smem.v_empty(output_slot.stage));
        scores_to_p();
      };
      if constexpr (!Tile::kOutputWaitAtNextTrip) finish_output();
      for (int n = own.end - 2; n >= own.begin; --n) {
        if constexpr (Tile::kOutputWaitAtNextTrip) finish_output();
        output_slot = slot;
        output_in_flight = true;
        slot.advance();
        turns.wait();
        pin_accumulators(scores);
        issue_scores(slot);
        if (moved) softmax.rescale(out, correction);
        pin_accumulators(out);
        issue_output(output_slot);
        turns.pass();
        wgmma_wait<1>();  // the scores group, committed first, has completed
        pin_accumulators(scores);
        release(smem.k_empty(slot.stage));
        mask_scores(n);
        moved = softmax.exponentiate(scores, to_log2, correction);
        if constexpr (!Tile::kOutputWaitAtNextTrip) finish_output();
      }
      if constexpr (Tile::kOutputWaitAtNextTrip) finish_output();
      // Every Q K^T of this tile is complete: the producer may load the next tile's Q.
      release(smem.q_empty());
      if (moved) softmax.rescale(out, correction);
      pin_accumulators(out);
      turns.wait();
      issue_output(slot);
      turns.pass();
      wgmma_wait<0>();
      pin_accumulators(out);
      release(smem.v_empty(slot.stage));
      slot.advance();
    } else if (!keys.empty()) {
      // The turn in which the others issue their last P V.
      release(smem.q_empty());
      turns.wait();
      turns.pass();
    }
    for (int n = own.begin - 1; n >= keys.begin; --n) skip_key_tile();

    // Epilogue: normalise and store each lane's pairs of columns; head-dim columns past
    // head_dim (zero-filled by TMA) and rows past the sequence end are not written. Rows
    // with no allowed key get zeros and a log-sum-exp of -inf.
    softmax.finalize();
    const int group = lane_group(), pair = 2 * lane_in_group();
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = warp_row0 + 8 * h + group;
      if (row >= work.rows_valid) continue;
      const float factor = softmax.output_scale(h, output_factor);
      const std::int64_t global_row = work.seq.q_begin + work.row_begin + row;
      Element* const dst = row_pointer<Element>(args.out, work.batch, global_row, work.head);
#pragma unroll
      for (int di = 0; di < kHeadDim / 8; ++di) {
        const int col = 8 * di + pair;
        if (col < args.head_dim)
          *reinterpret_cast<std::uint32_t*>(dst + col) =
              ptx::pack2<Element>(out.value[0][di][2 * h] * factor, out.value[0][di][2 * h + 1] * factor);
      }
      if (args.lse != nullptr && pair == 0)
        args.lse[work.batch * args.lse_batch_stride + work.head * args.lse_head_stride +
                 global_row * args.lse_row_stride] = softmax.log_sum_exp(h, to_log2);
    }
  }
  turns.finish();
}

// Persistent: one block per multiprocessor walks its work tiles of PersistentTileOrder, so
// a tile's loads start while the previous tile's last products and output stores run.
template <class Tile, class Element>
__global__ void __launch_bounds__(Tile::kThreads, 1)
    forward_kernel(const __grid_constant__ ForwardTensorMaps maps, const sm80::AttentionArgs args,
                   unsigned* tile_counter) {
  constexpr int kStages = Tile::kStages;

  extern __shared__ unsigned char shared_bytes[];
  // The swizzle atoms must start on 1024-byte boundaries (kSharedBytes has the slack).
  const std::uint32_t misalignment = ptx::smem_address(shared_bytes) % kSwizzleGroupBytes;
  const ForwardSharedMemory<Tile> smem{shared_bytes + (misalignment == 0 ? 0 : kSwizzleGroupBytes - misalignment)};

  const int warpgroup = static_cast<int>(threadIdx.x / 128);
  if (threadIdx.x == 0) {
    mbarrier_init(smem.q_full(), 1);
    mbarrier_init(smem.q_empty(), Tile::kConsumerWarps);
    for (int s = 0; s < kStages; ++s) {
      mbarrier_init(smem.k_full(s), 1);
      mbarrier_init(smem.v_full(s), 1);
      mbarrier_init(smem.k_empty(s), Tile::kConsumerWarps);
      mbarrier_init(smem.v_empty(s), Tile::kConsumerWarps);
    }
    if constexpr (Tile::kDynamicOrder) {
      for (int s = 0; s < 2; ++s) {
        mbarrier_init(smem.tile_full(s), 1);
        mbarrier_init(smem.tile_empty(s), Tile::kConsumerWarps);
      }
    }
    fence_barrier_init();
  }
  __syncthreads();

  // The roles are the two branches of one if/else, each opening with its setmaxnreg
  // (HOPPER.md: ptxas applies the reallocation only to code shaped so).
  if (warpgroup == 0) {
    release_registers<Tile::kProducerRegisters>();
    if (threadIdx.x == 0) produce_tiles<Tile>(maps, args, smem, tile_counter);
  } else {
    claim_registers<Tile::kConsumerRegisters>();
    // Broadcast from lane 0 so ptxas knows the index is warp-uniform: the warpgroup's own
    // key tiles derive from it, and with them the ring slots, whose barrier addresses and
    // wgmma descriptors then stay in uniform registers.
    consume_tiles<Tile, Element>(args, smem, __shfl_sync(0xffffffffu, warpgroup - 1, 0));
  }
}

// `values`: V^T for the FP8 tile (fp8_values.h), unused otherwise.
template <class Tile, class Element>
void launch_forward_tile(const TensorMapGeometry& geometry, const sm80::AttentionArgs& args, cudaStream_t stream,
                         const TransposedValues* values = nullptr) {
  const PersistentTileOrder order = forward_tile_order<Tile::kBlockM>(args);
  const std::int64_t tiles = order.count();
  if (tiles == 0) return;
  ForwardTensorMaps maps;
  maps.q = make_tensor_map(args.q, geometry, geometry.rows_q, geometry.heads_q, Tile::kBlockM);
  maps.k = make_tensor_map(args.k, geometry, geometry.rows_k, geometry.heads_kv, Tile::kBlockN);
  maps.v = Tile::kFp8 ? make_transposed_values_map(*values, geometry, Tile::kHeadDim)
                      : make_tensor_map(args.v, geometry, geometry.rows_k, geometry.heads_kv, Tile::kBlockN);
  const auto kernel = forward_kernel<Tile, Element>;
  sm80::check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tile::kSharedBytes),
                   "setting the sm90 forward kernel's shared-memory size");
  // The dynamic order takes tiles greedily: whole rounds do not matter there.
  const std::int64_t blocks = Tile::kDynamicOrder ? std::min<std::int64_t>(tiles, geometry.multiprocessors)
                                                  : persistent_blocks(order, geometry.multiprocessors);
  // kDynamicOrder: the tiles past the first round come from a counter, per call and zeroed
  // on the stream (a counter shared between calls would mix concurrent streams' tiles).
  // Tile indices are 32-bit there: 2^31 tiles of 192 rows would be 4 * 10^11 query rows.
  std::optional<StreamWorkspace> counter;
  if (Tile::kDynamicOrder && tiles > blocks) {
    counter.emplace(sizeof(unsigned), stream, "allocating the sm90 forward's tile counter");
    sm80::check_cuda(cudaMemsetAsync(counter->data(), 0, sizeof(unsigned), stream),
                     "zeroing the sm90 forward's tile counter");
  }
  unsigned* const tile_counter = counter ? reinterpret_cast<unsigned*>(counter->data()) : nullptr;
  kernel<<<static_cast<unsigned>(blocks), Tile::kThreads, Tile::kSharedBytes, stream>>>(maps, args, tile_counter);
  sm80::check_cuda(cudaGetLastError(), "launching the sm90 forward kernel");
}

template <int kHeadDimTile, class Element>
void launch_forward(const TensorMapGeometry& geometry, const sm80::AttentionArgs& args, cudaStream_t stream) {
  if constexpr (kHeadDimTile <= 64) {
    const bool banded = args.window_left >= 0 || args.window_right >= 0;
    if (args.seq_q >= tall_tile_min_rows(banded)) {
      if (banded) return launch_forward_tile<ForwardTile<kHeadDimTile, 192, true>, Element>(geometry, args, stream);
      return launch_forward_tile<ForwardTile<kHeadDimTile, 192>, Element>(geometry, args, stream);
    }
  }
  launch_forward_tile<ForwardTile<kHeadDimTile>, Element>(geometry, args, stream);
}

template <int kHeadDimTile, class Element>
void launch_forward_fp8(const TensorMapGeometry& geometry, const sm80::AttentionArgs& args,
                        const TransposedValues& values, cudaStream_t stream) {
  launch_forward_tile<ForwardTile<kHeadDimTile, 128, false, true>, Element>(geometry, args, stream, &values);
}

}  // namespace tileflash::cuda::sm90
