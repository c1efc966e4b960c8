// Runs one attention forward through an installed tileflash and checks that the
// output is right against a direct computation of softmax(q k^T / sqrt(d)) v.
#include <tileflash/tileflash.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

int main() {
  constexpr std::int64_t batch = 1, seq_q = 37, seq_k = 21, heads = 3, head_dim = 16;
  std::mt19937 rng{std::random_device{}()};
  std::normal_distribution<float> normal;
  std::vector<float> q(batch * seq_q * heads * head_dim), k(batch * seq_k * heads * head_dim), v(k.size());
  for (auto* t : {&q, &k, &v})
    for (float& x : *t) x = normal(rng);
  std::vector<float> out(q.size(), std::numeric_limits<float>::quiet_NaN());

  tileflash::ForwardParams params;
  params.q = tileflash::TensorView::contiguous(q.data(), tileflash::DType::float32, {batch, seq_q, heads, head_dim});
  params.k = tileflash::TensorView::contiguous(k.data(), tileflash::DType::float32, {batch, seq_k, heads, head_dim});
  params.v = tileflash::TensorView::contiguous(v.data(), tileflash::DType::float32, {batch, seq_k, heads, head_dim});
  params.out = tileflash::TensorView::contiguous(out.data(), tileflash::DType::float32, {batch, seq_q, heads, head_dim});
  params.backend = tileflash::Backend::reference;
  tileflash::forward(params);

  double worst = 0.0;
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  for (std::int64_t i = 0; i < seq_q; ++i)
    for (std::int64_t h = 0; h < heads; ++h) {
      std::vector<double> p(seq_k);
      double top = -INFINITY, sum = 0.0;
      for (std::int64_t j = 0; j < seq_k; ++j) {
        double s = 0.0;
        for (std::int64_t d = 0; d < head_dim; ++d)
          s += static_cast<double>(q[(i * heads + h) * head_dim + d]) * k[(j * heads + h) * head_dim + d];
        p[j] = s * scale;
        top = std::max(top, p[j]);
      }
      for (double& x : p) sum += (x = std::exp(x - top));
      for (std::int64_t d = 0; d < head_dim; ++d) {
        double o = 0.0;
        for (std::int64_t j = 0; j < seq_k; ++j) o += p[j] / sum * v[(j * heads + h) * head_dim + d];
        const double got = out[(i * heads + h) * head_dim + d];
        worst = std::isfinite(got) ? std::max(worst, std::fabs(got - o)) : INFINITY;
      }
    }

  tileflash::ForwardParams broken = params;
  broken.dropout_p = 1.5f;
  std::string reason;
  const bool rejected = !tileflash::is_supported(broken, &reason) && reason.find("dropout_p") != std::string::npos;

  std::printf("tileflash %s consumer: max |out - direct| = %.3g, bad dropout_p rejected: %s\n",
              TILEFLASH_VERSION_STRING, worst, rejected ? "yes" : "no");
  return worst < 1e-5 && rejected ? 0 : 1;
}
