// The transposition of V for the FP8 forward (fp8_values.h): a memory-bound copy through
// shared memory, 64 keys x 64 head-dim columns per block.
#include "cuda/sm90/fp8_values.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda/common/tile_scheduler.cuh"

namespace tileflash::cuda::sm90 {
namespace {

constexpr int kTileKeys = 64, kTileColumns = 64, kTransposeThreads = 256;

// Block (key tile, kv head, batch entry): reads 16 bytes of a key row per thread, writes
// 16 positions of a V^T row per thread. Keys past the sequence end are read as zeros.
__global__ void __launch_bounds__(kTransposeThreads) transpose_values_kernel(const sm80::AttentionArgs args,
                                                                             unsigned char* values_t,
                                                                             std::int64_t key_pitch) {
  // Rows padded by 16 bytes: the byte gathers of the second step spread over the banks.
  __shared__ __align__(16) unsigned char tile[kTileKeys][kTileColumns + 16];
  const int batch = static_cast<int>(blockIdx.z), head = static_cast<int>(blockIdx.y);
  const SequenceSlice seq = sequence_slice(args, batch);
  const int key0 = static_cast<int>(blockIdx.x) * kTileKeys;
  if (key0 >= seq.seq_k) return;
  const bool varlen = args.cu_seqlens_k != nullptr;
  const int thread = static_cast<int>(threadIdx.x);
  const auto* v = static_cast<const unsigned char*>(args.v.data);
  unsigned char* const head_t =
      values_t + ((varlen ? 0 : static_cast<std::int64_t>(batch)) * args.heads_kv + head) * args.head_dim * key_pitch +
      transposed_key_begin(varlen, seq.k_begin, batch) + key0;
  // Keys of this tile up to the end of the last group of 16 the sequence touches.
  const int keys_rounded = (seq.seq_k - key0 + 15) / 16 * 16;
  const int keys_written = keys_rounded < kTileKeys ? keys_rounded : kTileKeys;
  for (int column0 = 0; column0 < args.head_dim; column0 += kTileColumns) {
    {
      const int key = thread / 4, chunk = 16 * (thread % 4);
      uint4 bytes = make_uint4(0, 0, 0, 0);
      if (key0 + key < seq.seq_k && column0 + chunk < args.head_dim)
        bytes = *reinterpret_cast<const uint4*>(v + (static_cast<std::int64_t>(varlen ? 0 : batch) * args.v.batch_stride +
                                                     static_cast<std::int64_t>(seq.k_begin + key0 + key) * args.v.row_stride +
                                                     static_cast<std::int64_t>(head) * args.v.head_stride + column0 + chunk));
      *reinterpret_cast<uint4*>(&tile[key][chunk]) = bytes;
    }
    __syncthreads();
    {
      const int column = thread / 4, group = thread % 4;
      if (column0 + column < args.head_dim && 16 * group < keys_written) {
        unsigned char out[16];
#pragma unroll
        for (int p = 0; p < 16; ++p) out[p] = tile[16 * group + transposed_key_of_position(p)][column];
        *reinterpret_cast<uint4*>(head_t + static_cast<std::int64_t>(column0 + column) * key_pitch + 16 * group) =
            *reinterpret_cast<const uint4*>(out);
      }
    }
    __syncthreads();
  }
}

}  // namespace

std::int64_t transposed_key_pitch(const sm80::AttentionArgs& args, std::int64_t rows_k) {
  const bool varlen = args.cu_seqlens_k != nullptr;
  const std::int64_t keys = varlen ? rows_k + 16 * static_cast<std::int64_t>(args.batch) : rows_k;
  return std::max<std::int64_t>((keys + 15) / 16 * 16, 16);
}

void transpose_values_fp8(const sm80::AttentionArgs& args, const TransposedValues& values, std::int64_t bytes,
                          cudaStream_t stream) {
  if (args.cu_seqlens_k != nullptr)
    sm80::check_cuda(cudaMemsetAsync(values.data, 0, static_cast<std::size_t>(bytes), stream),
                     "clearing the FP8 forward's transposed V");
  const std::int64_t key_tiles = (args.seq_k + kTileKeys - 1) / kTileKeys;
  if (key_tiles == 0 || args.batch == 0) return;
  const dim3 grid(static_cast<unsigned>(key_tiles), static_cast<unsigned>(args.heads_kv),
                  static_cast<unsigned>(args.batch));
  transpose_values_kernel<<<grid, kTransposeThreads, 0, stream>>>(args, values.data, values.key_pitch);
  sm80::check_cuda(cudaGetLastError(), "launching the FP8 forward's V transposition");
}

}  // namespace tileflash::cuda::sm90
