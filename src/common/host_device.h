// Lets the math shared by the CPU and CUDA backends compile in both.
#pragma once

#if defined(__CUDACC__)
#define TF_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define TF_HOST_DEVICE inline
#endif
