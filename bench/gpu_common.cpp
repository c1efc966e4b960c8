#include "gpu_common.h"

#include <algorithm>
#include <utility>

#include "tileflash/error.h"

namespace tileflash::bench::gpu {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw RuntimeError(std::string(what) + ": " + cudaGetErrorString(status));
}

DeviceBuffer::DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  const cudaError_t status = cudaMalloc(&ptr_, bytes);
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // the failure is also left as the last error; later launch checks must not see it
    ptr_ = nullptr;
    throw OutOfMemory("cudaMalloc of " + std::to_string(bytes) + " bytes failed", static_cast<std::int64_t>(bytes));
  }
  check(status, "cudaMalloc");
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_) cudaFree(ptr_);
}

DeviceBuffer upload(const std::vector<float>& logical, const Shape4& shape, DType dtype, Layout layout) {
  const std::vector<std::byte> storage = pack(logical, shape, dtype, layout);
  DeviceBuffer buffer(storage.size());
  check(cudaMemcpy(buffer.get(), storage.data(), storage.size(), cudaMemcpyHostToDevice), "upload");
  return buffer;
}

std::vector<float> download(const DeviceBuffer& buffer, const Shape4& shape, DType dtype, Layout layout) {
  std::vector<std::byte> storage(buffer.bytes());
  check(cudaMemcpy(storage.data(), buffer.get(), storage.size(), cudaMemcpyDeviceToHost), "download");
  return unpack(storage.data(), shape, dtype, layout);
}

DeviceBuffer poisoned(std::size_t bytes) {
  DeviceBuffer buffer(bytes);
  check(cudaMemset(buffer.get(), 0xFF, bytes), "cudaMemset");
  return buffer;
}

AttentionTensors::AttentionTensors(const Case& c, const HostInputs& in, DType out_dtype) : out_dtype(out_dtype) {
  const std::size_t element = dtype_size(c.dtype);
  q = upload(in.q, q_shape(c), c.dtype, c.layout);
  k = upload(in.k, kv_shape(c), c.dtype, c.layout);
  v = upload(in.v, kv_shape(c), c.dtype, c.layout);
  out = poisoned(q_shape(c).numel() * dtype_size(out_dtype));
  lse = poisoned(c.batch * c.heads_q * c.seq_q * sizeof(float));
  if (c.direction != Direction::forward) {
    dout = upload(in.dout, q_shape(c), c.dtype, c.layout);
    dq = poisoned(q_shape(c).numel() * element);
    dk = poisoned(kv_shape(c).numel() * element);
    dv = poisoned(kv_shape(c).numel() * element);
  }
}

HostOutputs AttentionTensors::download(const Case& c) const {
  HostOutputs outputs;
  if (c.direction != Direction::backward) outputs.out = gpu::download(out, q_shape(c), out_dtype, c.layout);
  if (c.direction != Direction::forward) {
    outputs.dq = gpu::download(dq, q_shape(c), c.dtype, c.layout);
    outputs.dk = gpu::download(dk, kv_shape(c), c.dtype, c.layout);
    outputs.dv = gpu::download(dv, kv_shape(c), c.dtype, c.layout);
  }
  return outputs;
}

std::string device_name() {
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  return prop.name;
}

std::vector<double> time_on_stream(cudaStream_t stream, const std::function<void()>& operation, int reps,
                                   int warmup) {
  int device = 0, l2_bytes = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device), "cudaDeviceGetAttribute");
  DeviceBuffer flush(2 * static_cast<std::size_t>(std::max(l2_bytes, 1 << 20)));

  reps = std::max(reps, 1);
  std::vector<cudaEvent_t> events(2 * reps);
  for (auto& e : events) check(cudaEventCreate(&e), "cudaEventCreate");
  std::vector<double> times;
  try {
    for (int i = 0; i < warmup + reps; ++i) {
      check(cudaMemsetAsync(flush.get(), i & 0xFF, flush.bytes(), stream), "L2 flush");
      if (i >= warmup) check(cudaEventRecord(events[2 * (i - warmup)], stream), "cudaEventRecord");
      operation();
      check(cudaGetLastError(), "launch");
      if (i >= warmup) check(cudaEventRecord(events[2 * (i - warmup) + 1], stream), "cudaEventRecord");
    }
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    for (int i = 0; i < reps; ++i) {
      float ms = 0.0f;
      check(cudaEventElapsedTime(&ms, events[2 * i], events[2 * i + 1]), "cudaEventElapsedTime");
      times.push_back(ms);
    }
  } catch (...) {
    for (auto& e : events) cudaEventDestroy(e);
    throw;
  }
  for (auto& e : events) cudaEventDestroy(e);
  return times;
}

std::int64_t probe_extra_memory(cudaStream_t stream, const std::function<void()>& operation) {
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  cudaMemPool_t pool;
  check(cudaDeviceGetDefaultMemPool(&pool, device), "cudaDeviceGetDefaultMemPool");
  std::uint64_t used_before = 0, zero = 0, high = 0;
  check(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &used_before), "cudaMemPoolGetAttribute");
  check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero), "cudaMemPoolSetAttribute");
  std::size_t free_before = 0, free_after = 0, total = 0;
  check(cudaMemGetInfo(&free_before, &total), "cudaMemGetInfo");
  operation();
  check(cudaGetLastError(), "launch");
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  check(cudaMemGetInfo(&free_after, &total), "cudaMemGetInfo");
  check(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &high), "cudaMemPoolGetAttribute");
  const std::int64_t pool_peak = static_cast<std::int64_t>(high) - static_cast<std::int64_t>(used_before);
  const std::int64_t kept = static_cast<std::int64_t>(free_before) - static_cast<std::int64_t>(free_after);
  return std::max<std::int64_t>({pool_peak, kept, 0});
}

Stream::Stream() { check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate"); }
Stream::~Stream() {
  if (stream_) cudaStreamDestroy(stream_);
}

}  // namespace tileflash::bench::gpu
