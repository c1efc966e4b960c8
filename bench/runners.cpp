// The --backends names and the runners behind them.
#include <stdexcept>

#include "bench.h"

namespace tileflash::bench {

std::vector<std::string> available_runner_names() {
  std::vector<std::string> names{"reference", "cpu"};
#ifdef TILEFLASH_BENCH_CUDA
  names.push_back("cuda");
  names.push_back("cublas-standard");
#endif
#ifdef TILEFLASH_BENCH_CUDNN
  names.push_back("cudnn");
#endif
  return names;
}

std::unique_ptr<Runner> make_runner(const std::string& name) {
  if (name == "reference") return make_cpu_runner(tileflash::Backend::reference);
  if (name == "cpu") return make_cpu_runner(tileflash::Backend::cpu);
#ifdef TILEFLASH_BENCH_CUDA
  if (name == "cuda") return make_cuda_runner();
  if (name == "cublas-standard") return make_cublas_standard_runner();
#endif
#ifdef TILEFLASH_BENCH_CUDNN
  if (name == "cudnn") return make_cudnn_runner();
#endif
  std::string known;
  for (const auto& n : available_runner_names()) known += (known.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unknown or not built backend '" + name + "' (this build has: " + known + ")");
}

}  // namespace tileflash::bench
