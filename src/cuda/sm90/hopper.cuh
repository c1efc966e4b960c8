// Thin wrappers over the Hopper (sm_90a) PTX the sm90 kernels are built from: mbarriers,
// the bulk tensor copy engine (TMA), warpgroup matrix multiply-accumulate (wgmma) and
// register reallocation between warpgroups (setmaxnreg). PTX ISA 8.0+.
#pragma once

#include <cuda.h>

#include <cstdint>

#include "cuda/common/fragment.cuh"
#include "cuda/common/ptx.cuh"

#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
#error "the sm90 kernels use wgmma and setmaxnreg: compile them for sm_90a only (src/cuda/CMakeLists.txt)"
#endif

namespace tileflash::cuda::sm90 {

// ---- mbarrier: a shared-memory barrier whose phase completes when `count` arrivals and
// all expected transaction bytes (TMA writes) have landed.
__device__ __forceinline__ void mbarrier_init(std::uint64_t* barrier, std::uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(ptx::smem_address(barrier)), "r"(count));
}

// Makes the initialised barriers visible to the copy engine (the async proxy) before any
// TMA completes on them; a __syncthreads() must follow.
__device__ __forceinline__ void fence_barrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

__device__ __forceinline__ void mbarrier_arrive(std::uint64_t* barrier) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(ptx::smem_address(barrier)) : "memory");
}

// One arrival that also announces `bytes` of TMA writes the phase must wait for.
__device__ __forceinline__ void mbarrier_arrive_expect_bytes(std::uint64_t* barrier, std::uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(ptx::smem_address(barrier)),
               "r"(bytes)
               : "memory");
}

// One try of a wait: true once the phase with the given parity has completed. While it has
// not, the thread may be suspended for up to `suspend_ns` (0: the hardware's own limit)
// and resumes early when the phase completes.
__device__ __forceinline__ bool mbarrier_try_wait(std::uint32_t address, std::uint32_t parity,
                                                  std::uint32_t suspend_ns) {
  std::uint32_t done;
  if (suspend_ns == 0) {
    asm volatile(
        "{\n.reg .pred complete;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 complete, [%1], %2;\n"
        "selp.u32 %0, 1, 0, complete;\n}\n"
        : "=r"(done)
        : "r"(address), "r"(parity)
        : "memory");
  } else {
    asm volatile(
        "{\n.reg .pred complete;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 complete, [%1], %2, %3;\n"
        "selp.u32 %0, 1, 0, complete;\n}\n"
        : "=r"(done)
        : "r"(address), "r"(parity), "r"(suspend_ns)
        : "memory");
  }
  return done != 0;
}

// Waits until the phase with the given parity has completed. A fresh barrier counts its
// (never started) phase of parity 1 as complete, which lets producers wait on "slot
// empty" barriers from the first round on without a special case.
__device__ __forceinline__ void mbarrier_wait(std::uint64_t* barrier, std::uint32_t parity) {
  const std::uint32_t address = ptx::smem_address(barrier);
  while (!mbarrier_try_wait(address, parity, 0)) {
  }
}

// The same wait for a warp that has nothing else to do until the phase completes (a
// producer waiting for a slot to free): each try may suspend it for up to a millisecond
// instead of the hardware's short default, so it does not poll. At the default limit the
// d=64 forward's producer polled ~130 times per V tile, two issue slots a poll, taken from
// the consumer warps that share its scheduler.
__device__ __forceinline__ void mbarrier_wait_idle(std::uint64_t* barrier, std::uint32_t parity) {
  const std::uint32_t address = ptx::smem_address(barrier);
  while (!mbarrier_try_wait(address, parity, 1000000u)) {
  }
}

// ---- TMA: one box of a 4-d tensor map (innermost coordinate first) into shared memory,
// completing `bytes` on the barrier. Out-of-range elements are written as zeros.
__device__ __forceinline__ void tma_load_4d(void* smem, const CUtensorMap* map, std::uint64_t* barrier, int c0, int c1,
                                            int c2, int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], "
      "[%6];\n" ::"r"(ptx::smem_address(smem)),
      "l"(reinterpret_cast<std::uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(ptx::smem_address(barrier))
      : "memory");
}

__device__ __forceinline__ void prefetch_tensor_map(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<std::uint64_t>(map)) : "memory");
}

// ---- Ordinary shared-memory stores become visible to the async proxy (wgmma operand
// reads, bulk copies) only through this fence, executed by every writing thread before
// the barrier that hands the data over.
__device__ __forceinline__ void fence_async_shared() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// ---- Bulk reduction: adds `bytes` of fp32 from shared memory into global memory, each
// element atomically, as one bulk async-group operation (16-byte aligned, bytes % 16 == 0).
__device__ __forceinline__ void bulk_reduce_add(float* global, const void* smem, std::uint32_t bytes) {
  asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n" ::"l"(global),
               "r"(ptx::smem_address(smem)), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
// Until at most kPending committed bulk groups still read their shared-memory source.
template <int kPending>
__device__ __forceinline__ void bulk_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(kPending) : "memory");
}

// ---- stmatrix (sm_90): four 8x8 b16 matrices from accumulator-layout fragments (register
// i holds matrix i, lane l row l / 4, columns 2 (l % 4) and + 1), one instruction where
// 4-byte stores take four; lane l gives the address of row l % 8 of matrix l / 8.
__device__ __forceinline__ void stmatrix_x4(std::uint32_t smem_row, const std::uint32_t (&fragment)[4]) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(smem_row),
               "r"(fragment[0]), "r"(fragment[1]), "r"(fragment[2]), "r"(fragment[3])
               : "memory");
}

// ---- Named barriers (ids 1..15; 0 is __syncthreads): `threads` counts the threads
// that sync plus those that only arrive, in whole warps.
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_barrier_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
// A named barrier that also returns whether any of its threads passed true.
__device__ __forceinline__ bool named_barrier_any(int id, int threads, bool value) {
  std::uint32_t any;
  asm volatile(
      "{\n .reg .pred given, any;\n setp.ne.u32 given, %1, 0;\n bar.red.or.pred any, %2, %3, given;\n"
      " selp.u32 %0, 1, 0, any;\n}\n"
      : "=r"(any)
      : "r"(static_cast<std::uint32_t>(value)), "r"(id), "r"(threads)
      : "memory");
  return any != 0;
}

// ---- Programmatic dependent launch (sm_90). launch_dependents: the kernel launched after
// this one with programmatic stream serialization may start once every block of this one
// has executed it or exited. wait: until the grids this one depends on have completed and
// their memory is visible.
__device__ __forceinline__ void launch_dependent_grids() { asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory"); }
__device__ __forceinline__ void wait_for_prerequisite_grids() { asm volatile("griddepcontrol.wait;\n" ::: "memory"); }

// ---- wgmma ordering. fence: register and shared-memory writes by ordinary instructions
// are visible to the wgmma issued after it (needed before the first wgmma and whenever
// the accumulators were touched, e.g. rescaled). commit/wait: group the wgmma issued so
// far; wait until at most kPending groups are still running.
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}

// The accumulators are written by the tensor cores after the wgmma instruction has
// retired; pinning them here keeps the compiler from moving their reads or writes across
// the fence/wait that brackets the asynchronous region.
template <int kMTiles, int kNTiles>
__device__ __forceinline__ void pin_accumulators(AccumulatorTile<kMTiles, kNTiles>& acc) {
#pragma unroll
  for (int mi = 0; mi < kMTiles; ++mi)
#pragma unroll
    for (int ni = 0; ni < kNTiles; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(acc.value[mi][ni][e])::"memory");
}

// ---- register reallocation between warpgroups (the whole warpgroup executes it).
template <int kRegisters>
__device__ __forceinline__ void release_registers() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegisters));
}
template <int kRegisters>
__device__ __forceinline__ void claim_registers() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegisters));
}

// ---- Shared-memory matrix descriptors for wgmma, 128-byte swizzle (the layout TMA writes
// with CU_TENSOR_MAP_SWIZZLE_128B): an operand is stored as atoms of 64 16-bit columns
// (128-byte rows), each atom `rows` rows deep and 1024-byte aligned, 8-row groups 1024
// bytes apart. Addresses and offsets are encoded in 16-byte units.
constexpr std::uint64_t kSwizzle128Mode = std::uint64_t{1} << 62;
constexpr std::uint32_t kSwizzleGroupBytes = 1024;  // 8 rows x 128 bytes

// K-major operand (Q, K: the reduction dimension is contiguous). The k16 steps inside
// an atom advance the start address by 32 bytes; the hardware applies the swizzle to the
// computed addresses, so no other field changes.
__device__ __forceinline__ std::uint64_t k_major_descriptor(std::uint32_t smem_address) {
  return kSwizzle128Mode | (std::uint64_t{kSwizzleGroupBytes >> 4} << 32) | (std::uint64_t{1} << 16) |
         ((smem_address & 0x3FFFF) >> 4);
}

// N-major operand (V in O += P V: the output columns are contiguous). The leading offset
// steps from one 64-column atom to the next, the stride offset over 8 key rows.
__device__ __forceinline__ std::uint64_t n_major_descriptor(std::uint32_t smem_address, std::uint32_t atom_bytes) {
  return kSwizzle128Mode | (std::uint64_t{kSwizzleGroupBytes >> 4} << 32) |
         (std::uint64_t{(atom_bytes >> 4) & 0x3FFF} << 16) | ((smem_address & 0x3FFFF) >> 4);
}

// The descriptor of the operand `bytes` (a multiple of 16) past `descriptor`'s: only the
// start-address field (bits 0-13, the address in 16-byte units) changes, and shared
// addresses stay below 2^18, so the addition never carries into the next field. One add
// per wgmma instead of masking and shifting a fresh address (4-5 uniform instructions).
__device__ __forceinline__ std::uint64_t advance_descriptor(std::uint64_t descriptor, std::uint32_t bytes) {
  return descriptor + (bytes >> 4);
}

}  // namespace tileflash::cuda::sm90
