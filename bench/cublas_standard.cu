// The `cublas-standard` backend: attention as the textbook writes it and as eager
// frameworks run it. S = scale * Q K^T is materialised by a batched cuBLAS GEMM, a
// row-softmax kernel (causal mask, bottom-right aligned) turns S into P in place, and
// O = P V is a second GEMM. The backward keeps P from the forward, forms
// dP = dO V^T, dS = P * (dP - rowsum(P * dP)) * scale in place of dP, and
// dQ = dS K, dK = dS^T Q, dV = P^T dO, summing dK and dV over a GQA group.
//
// peak_bytes counts what this backend allocates beyond the inputs and outputs: the
// S/P buffer, for the backward also the dP/dS buffer, and the cuBLAS workspace
// (the small per-matrix pointer arrays are left out).
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "bench.h"
#include "gpu_common.h"
#include "tileflash/error.h"

namespace tileflash::bench {
namespace {

using gpu::DeviceBuffer;

constexpr std::size_t kCublasWorkspaceBytes = 32u << 20;
constexpr int kSoftmaxThreads = 256;

void check_cublas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw RuntimeError(std::string(what) + ": cuBLAS status " + std::to_string(static_cast<int>(status)));
}

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
template <class T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// Block-wide reduction; `scratch` holds one float per warp.
template <bool kMax>
__device__ float block_reduce(float value, float* scratch) {
  for (int offset = 16; offset > 0; offset /= 2) {
    const float other = __shfl_xor_sync(0xFFFFFFFFu, value, offset);
    value = kMax ? fmaxf(value, other) : value + other;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // scratch may still be read by the previous reduction
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  value = lane < blockDim.x / 32 ? scratch[lane] : (kMax ? -INFINITY : 0.0f);
  for (int offset = 16; offset > 0; offset /= 2) {
    const float other = __shfl_xor_sync(0xFFFFFFFFu, value, offset);
    value = kMax ? fmaxf(value, other) : value + other;
  }
  return value;
}

// Columns 0 .. last_allowed of row `row` (of seq_q rows) may be attended.
__device__ __forceinline__ long long last_allowed_column(long long row, long long seq_q, long long seq_k,
                                                         bool causal) {
  return causal ? row + seq_k - seq_q : seq_k - 1;
}

// One block per row of S: P = softmax(S) over the allowed columns, 0 elsewhere; a row
// with no allowed column becomes all zeros.
template <class T>
__global__ void softmax_rows(T* scores, long long seq_q, long long seq_k, bool causal) {
  __shared__ float scratch[32];
  const long long row = blockIdx.x;
  T* s = scores + row * seq_k;
  const long long last = min(last_allowed_column(row % seq_q, seq_q, seq_k, causal), seq_k - 1);

  float row_max = -INFINITY;
  for (long long j = threadIdx.x; j <= last; j += blockDim.x) row_max = fmaxf(row_max, to_float(s[j]));
  row_max = block_reduce<true>(row_max, scratch);
  float row_sum = 0.0f;
  for (long long j = threadIdx.x; j <= last; j += blockDim.x) row_sum += __expf(to_float(s[j]) - row_max);
  row_sum = block_reduce<false>(row_sum, scratch);
  const float inverse = row_sum > 0.0f ? 1.0f / row_sum : 0.0f;
  for (long long j = threadIdx.x; j < seq_k; j += blockDim.x)
    s[j] = from_float<T>(j <= last ? __expf(to_float(s[j]) - row_max) * inverse : 0.0f);
}

// One block per row: dS = P * (dP - sum_j P dP) * scale, written over dP.
template <class T>
__global__ void softmax_backward_rows(const T* probabilities, T* grad, long long seq_k, float scale) {
  __shared__ float scratch[32];
  const long long row = blockIdx.x;
  const T* p = probabilities + row * seq_k;
  T* g = grad + row * seq_k;
  float dot = 0.0f;
  for (long long j = threadIdx.x; j < seq_k; j += blockDim.x) dot += to_float(p[j]) * to_float(g[j]);
  dot = block_reduce<false>(dot, scratch);
  for (long long j = threadIdx.x; j < seq_k; j += blockDim.x)
    g[j] = from_float<T>(to_float(p[j]) * (to_float(g[j]) - dot) * scale);
}

cudaDataType_t cuda_type(DType dtype) {
  switch (dtype) {
    case DType::float16: return CUDA_R_16F;
    case DType::bfloat16: return CUDA_R_16BF;
    default: return CUDA_R_32F;
  }
}

// Element offsets of one (batch, head) matrix and the row stride of q/k/v-shaped tensors.
struct Strides {
  std::int64_t batch, head, row;
};
Strides strides_of(Layout layout, std::int64_t seq, std::int64_t heads, std::int64_t dim) {
  if (layout == Layout::bshd) return {seq * heads * dim, dim, heads * dim};
  return {heads * seq * dim, seq * dim, dim};
}

// Device arrays of per-matrix pointers for cublasGemmBatchedEx.
class PointerArray {
 public:
  explicit PointerArray(const std::vector<const void*>& host) : buffer_(host.size() * sizeof(void*)) {
    gpu::check(cudaMemcpy(buffer_.get(), host.data(), buffer_.bytes(), cudaMemcpyHostToDevice), "pointer upload");
  }
  const void* const* in() const { return static_cast<const void* const*>(buffer_.get()); }
  void* const* out() const { return static_cast<void* const*>(buffer_.get()); }
  int count() const { return static_cast<int>(buffer_.bytes() / sizeof(void*)); }

 private:
  DeviceBuffer buffer_;
};

class CublasStandardRunner final : public Runner {
 public:
  CublasStandardRunner() : device_(gpu::device_name()), workspace_(kCublasWorkspaceBytes) {
    check_cublas(cublasCreate(&handle_), "cublasCreate");
    check_cublas(cublasSetStream(handle_, stream_.get()), "cublasSetStream");
    check_cublas(cublasSetWorkspace(handle_, workspace_.get(), workspace_.bytes()), "cublasSetWorkspace");
  }
  ~CublasStandardRunner() override { cublasDestroy(handle_); }

  std::string name() const override { return "cublas-standard"; }
  std::string device() const override { return device_; }
  std::string unsupported_reason(const Case& c) const override {
    if (c.dtype == DType::float64) return "float64 is not benchmarked on the GPU";
    if (c.dtype == DType::float8_e4m3) return "materialised attention is implemented for fp16, bf16 and fp32, not FP8";
    if (c.heads_q % c.heads_kv != 0) return "heads_q must be a multiple of heads_kv";
    return {};
  }

  Measurement run(const Case& c, const HostInputs& in, bool keep_outputs) override {
    const std::size_t element = dtype_size(c.dtype);
    const std::int64_t score_bytes = c.batch * c.heads_q * c.seq_q * c.seq_k * static_cast<std::int64_t>(element);
    const bool backward = c.direction != Direction::forward;
    const std::int64_t extra_bytes = score_bytes * (backward ? 2 : 1) + static_cast<std::int64_t>(workspace_.bytes());

    const gpu::AttentionTensors t(c, in);
    const DeviceBuffer &q = t.q, &k = t.k, &v = t.v, &out = t.out, &dout = t.dout, &dq = t.dq, &dk = t.dk, &dv = t.dv;
    DeviceBuffer scores, score_grads;
    try {
      scores = DeviceBuffer(score_bytes);
      if (backward) score_grads = DeviceBuffer(score_bytes);
    } catch (const OutOfMemory&) {
      throw OutOfMemory("the materialised S/P" + std::string(backward ? " and dP/dS" : "") + " buffers need " +
                            std::to_string(extra_bytes) + " bytes",
                        extra_bytes);
    }

    const Strides qs = strides_of(c.layout, c.seq_q, c.heads_q, c.head_dim);
    const Strides ks = strides_of(c.layout, c.seq_k, c.heads_kv, c.head_dim);
    const std::int64_t group = c.heads_q / c.heads_kv;
    const std::int64_t matrix = c.seq_q * c.seq_k;
    auto at = [&](const DeviceBuffer& b, std::int64_t offset) -> const void* {
      return static_cast<const char*>(b.get()) + offset * static_cast<std::int64_t>(element);
    };
    // Per query head (b, h): its q/out/dout/dq rows, its kv head's rows, its S block.
    std::vector<const void*> qp, kp, vp, op, dop, dqp, sp, gp;
    for (std::int64_t b = 0; b < c.batch; ++b)
      for (std::int64_t h = 0; h < c.heads_q; ++h) {
        const std::int64_t q_offset = b * qs.batch + h * qs.head, kv_offset = b * ks.batch + (h / group) * ks.head;
        qp.push_back(at(q, q_offset));
        op.push_back(at(out, q_offset));
        kp.push_back(at(k, kv_offset));
        vp.push_back(at(v, kv_offset));
        sp.push_back(at(scores, (b * c.heads_q + h) * matrix));
        if (backward) {
          dop.push_back(at(dout, q_offset));
          dqp.push_back(at(dq, q_offset));
          gp.push_back(at(score_grads, (b * c.heads_q + h) * matrix));
        }
      }
    // dK and dV accumulate over a group: one batched call per member g, beta = 1 after the first.
    std::vector<PointerArray> group_q, group_dout, group_s, group_g, group_dk, group_dv;
    if (backward) {
      for (std::int64_t g = 0; g < group; ++g) {
        std::vector<const void*> gq, gdo, gs, gg, gdk, gdv;
        for (std::int64_t b = 0; b < c.batch; ++b)
          for (std::int64_t hk = 0; hk < c.heads_kv; ++hk) {
            const std::int64_t h = hk * group + g, index = b * c.heads_q + h;
            gq.push_back(qp[index]);
            gdo.push_back(dop[index]);
            gs.push_back(sp[index]);
            gg.push_back(gp[index]);
            gdk.push_back(at(dk, b * ks.batch + hk * ks.head));
            gdv.push_back(at(dv, b * ks.batch + hk * ks.head));
          }
        group_q.emplace_back(gq);
        group_dout.emplace_back(gdo);
        group_s.emplace_back(gs);
        group_g.emplace_back(gg);
        group_dk.emplace_back(gdk);
        group_dv.emplace_back(gdv);
      }
    }
    const PointerArray q_ptrs(qp), k_ptrs(kp), v_ptrs(vp), out_ptrs(op), s_ptrs(sp);
    const PointerArray dout_ptrs(backward ? dop : qp), dq_ptrs(backward ? dqp : qp), g_ptrs(backward ? gp : sp);

    const cudaDataType_t type = cuda_type(c.dtype);
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)));
    const float one = 1.0f, zero = 0.0f;
    const int d = static_cast<int>(c.head_dim), sq = static_cast<int>(c.seq_q), sk = static_cast<int>(c.seq_k);
    const int ldq = static_cast<int>(qs.row), ldk = static_cast<int>(ks.row);
    const long long rows = c.batch * c.heads_q * c.seq_q;
    // Column-major cuBLAS sees each row-major matrix transposed: a row-major S (sq x sk)
    // is a column-major (sk x sq) with leading dimension sk, and so on below.
    auto gemm = [&](cublasOperation_t ta, cublasOperation_t tb, int m, int n, int kk, const float* alpha,
                    const void* const* a, int lda, const void* const* bb, int ldb, const float* beta, void* const* cc,
                    int ldc, int count) {
      check_cublas(cublasGemmBatchedEx(handle_, ta, tb, m, n, kk, alpha, a, type, lda, bb, type, ldb, beta, cc, type,
                                       ldc, count, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                   "cublasGemmBatchedEx");
    };
    auto forward = [&] {
      // S^T (sk x sq) = K (sk x d) . Q^T, scaled.
      gemm(CUBLAS_OP_T, CUBLAS_OP_N, sk, sq, d, &scale, k_ptrs.in(), ldk, q_ptrs.in(), ldq, &zero, s_ptrs.out(), sk,
           s_ptrs.count());
      launch_softmax(c, scores.get(), rows);
      // O^T (d x sq) = V^T (d x sk) . P^T (sk x sq).
      gemm(CUBLAS_OP_N, CUBLAS_OP_N, d, sq, sk, &one, v_ptrs.in(), ldk, s_ptrs.in(), sk, &zero, out_ptrs.out(), ldq,
           out_ptrs.count());
    };
    auto backward_pass = [&] {
      for (std::size_t g = 0; g < group_s.size(); ++g) {
        const float* beta = g == 0 ? &zero : &one;
        // dV^T (d x sk) = dO^T (d x sq) . P (sq x sk).
        gemm(CUBLAS_OP_N, CUBLAS_OP_T, d, sk, sq, &one, group_dout[g].in(), ldq, group_s[g].in(), sk, beta,
             group_dv[g].out(), ldk, group_dv[g].count());
      }
      // dP^T (sk x sq) = V (sk x d) . dO^T (d x sq).
      gemm(CUBLAS_OP_T, CUBLAS_OP_N, sk, sq, d, &one, v_ptrs.in(), ldk, dout_ptrs.in(), ldq, &zero, g_ptrs.out(), sk,
           g_ptrs.count());
      launch_softmax_backward(c, scores.get(), score_grads.get(), rows, scale);
      // dQ^T (d x sq) = K^T (d x sk) . dS^T (sk x sq).
      gemm(CUBLAS_OP_N, CUBLAS_OP_N, d, sq, sk, &one, k_ptrs.in(), ldk, g_ptrs.in(), sk, &zero, dq_ptrs.out(), ldq,
           dq_ptrs.count());
      for (std::size_t g = 0; g < group_g.size(); ++g) {
        const float* beta = g == 0 ? &zero : &one;
        // dK^T (d x sk) = Q^T (d x sq) . dS (sq x sk).
        gemm(CUBLAS_OP_N, CUBLAS_OP_T, d, sk, sq, &one, group_q[g].in(), ldq, group_g[g].in(), sk, beta,
             group_dk[g].out(), ldk, group_dk[g].count());
      }
    };

    Measurement m;
    m.kernel = "materialised";
    const std::function<void()> operation = timed_operation(c.direction, forward, backward_pass);
    m.ms_median = median(gpu::time_on_stream(stream_.get(), operation, c.reps, c.warmup));
    m.peak_bytes = extra_bytes;

    if (keep_outputs) m.outputs = t.download(c);
    return m;
  }

 private:
  void launch_softmax(const Case& c, void* scores, long long rows) {
    switch (c.dtype) {
      case DType::float16:
        softmax_rows<<<rows, kSoftmaxThreads, 0, stream_.get()>>>(static_cast<__half*>(scores), c.seq_q, c.seq_k, c.causal);
        break;
      case DType::bfloat16:
        softmax_rows<<<rows, kSoftmaxThreads, 0, stream_.get()>>>(static_cast<__nv_bfloat16*>(scores), c.seq_q, c.seq_k,
                                                                   c.causal);
        break;
      default:
        softmax_rows<<<rows, kSoftmaxThreads, 0, stream_.get()>>>(static_cast<float*>(scores), c.seq_q, c.seq_k, c.causal);
    }
    gpu::check(cudaGetLastError(), "softmax_rows");
  }

  void launch_softmax_backward(const Case& c, const void* probabilities, void* grads, long long rows, float scale) {
    switch (c.dtype) {
      case DType::float16:
        softmax_backward_rows<<<rows, kSoftmaxThreads, 0, stream_.get()>>>(
            static_cast<const __half*>(probabilities), static_cast<__half*>(grads), c.seq_k, scale);
        break;
      case DType::bfloat16:
        softmax_backward_rows<<<rows, kSoftmaxThreads, 0, stream_.get()>>>(
            static_cast<const __nv_bfloat16*>(probabilities), static_cast<__nv_bfloat16*>(grads), c.seq_k, scale);
        break;
      default:
        softmax_backward_rows<<<rows, kSoftmaxThreads, 0, stream_.get()>>>(
            static_cast<const float*>(probabilities), static_cast<float*>(grads), c.seq_k, scale);
    }
    gpu::check(cudaGetLastError(), "softmax_backward_rows");
  }

  std::string device_;
  gpu::Stream stream_;
  DeviceBuffer workspace_;
  cublasHandle_t handle_ = nullptr;
};

}  // namespace

std::unique_ptr<Runner> make_cublas_standard_runner() { return std::make_unique<CublasStandardRunner>(); }

}  // namespace tileflash::bench
