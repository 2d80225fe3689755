// Dense helpers of the tape (train.h): column copies and the cosine loss against scalar
// references, its gradient against finite differences, and thread-count independence.
#include <cmath>
#include <vector>

#include "harness.h"
#include "ptq4vm/runtime.h"
#include "ptq4vm/train.h"

using namespace ptq4vm;
using ptq4vm::test::Rng;

TEST_CASE("train/copy_cols copies and adds column slices between strided matrices") {
  Rng rng(301);
  const int64_t rows = 1037, lds = 41, ldd = 29, cols = 13;  // rows over several thread chunks
  std::vector<float> src(size_t(rows * lds)), dst(size_t(rows * ldd));
  for (auto& v : src) v = rng.uniform(-1.f, 1.f);
  for (auto& v : dst) v = rng.uniform(-1.f, 1.f);
  const std::vector<float> before = dst;
  copy_cols<float>(rows, cols, src.data() + 5, lds, dst.data() + 9, ldd, false);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < ldd; ++j) {
      const size_t i = size_t(r * ldd + j);
      const float want = j >= 9 && j < 9 + cols ? src[size_t(r * lds + 5 + j - 9)] : before[i];
      CHECK(dst[i] == want);
    }
  const std::vector<float> copied = dst;
  copy_cols<float>(rows, cols, src.data() + 5, lds, dst.data() + 9, ldd, true);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < ldd; ++j) {
      const size_t i = size_t(r * ldd + j);
      const float want = j >= 9 && j < 9 + cols ? copied[i] + src[size_t(r * lds + 5 + j - 9)] : before[i];
      CHECK(dst[i] == want);
    }
}

namespace {

double cosine_ref(int64_t rows, int64_t cols, const std::vector<double>& o, const std::vector<double>& t, double eps) {
  double sum = 0;
  for (int64_t r = 0; r < rows; ++r) {
    double dot = 0, oo = 0, tt = 0;
    for (int64_t j = 0; j < cols; ++j) {
      dot += o[size_t(r * cols + j)] * t[size_t(r * cols + j)];
      oo += o[size_t(r * cols + j)] * o[size_t(r * cols + j)];
      tt += t[size_t(r * cols + j)] * t[size_t(r * cols + j)];
    }
    sum += 1 - dot / (std::max(std::sqrt(oo), eps) * std::max(std::sqrt(tt), eps));
  }
  return sum / double(rows);
}

}  // namespace

TEST_CASE("train/cosine loss matches the reference; its gradient matches finite differences (f64)") {
  Rng rng(302);
  const int64_t rows = 37, cols = 19;
  const double eps = 1e-8;
  std::vector<double> o(size_t(rows * cols)), t(size_t(rows * cols));
  for (auto& v : o) v = rng.uniform(-1.f, 1.f);
  for (auto& v : t) v = rng.uniform(-1.f, 1.f);
  for (int64_t j = 0; j < cols; ++j) t[size_t(3 * cols + j)] = 0;            // a zero target row
  for (int64_t j = 0; j < cols; ++j) o[size_t(5 * cols + j)] = -t[size_t(5 * cols + j)];  // opposite: 1 − cos = 2
  std::vector<double> stats(size_t(3 * rows));
  const double loss = cosine_loss<double>(rows, cols, o.data(), t.data(), eps, stats.data());
  CHECK_MSG(std::fabs(loss - cosine_ref(rows, cols, o, t, eps)) < 1e-14, "loss " << loss);
  CHECK(std::fabs(stats[3 * 5 + 2] + 1.0) < 1e-14);
  std::vector<double> g(o.size(), 0.25);
  cosine_loss_backward<double>(rows, cols, o.data(), t.data(), eps, stats.data(), 3.0, g.data(), true);
  double worst = 0, scale = 0;
  for (size_t i = 0; i < o.size(); ++i) {
    const double keep = o[i], h = 1e-6;
    o[i] = keep + h;
    const double lp = cosine_ref(rows, cols, o, t, eps);
    o[i] = keep - h;
    const double lm = cosine_ref(rows, cols, o, t, eps);
    o[i] = keep;
    const double want = 0.25 + 3.0 * (lp - lm) / (2 * h);
    worst = std::max(worst, std::fabs(g[i] - want));
    scale = std::max(scale, std::fabs(want - 0.25));
  }
  CHECK_MSG(worst / scale < 1e-6, "gradient vs finite differences: rel err " << worst / scale);
  // Overwrite: the same values without the 0.25 already there.
  std::vector<double> g2(o.size(), 99.0);
  cosine_loss_backward<double>(rows, cols, o.data(), t.data(), eps, stats.data(), 3.0, g2.data(), false);
  for (size_t i = 0; i < o.size(); ++i) CHECK(std::fabs(g2[i] + 0.25 - g[i]) < 1e-12);
}

TEST_CASE("train/cosine loss (float) is identical with 1 and 2 threads") {
  Rng rng(303);
  const int64_t rows = 3001, cols = 96;
  std::vector<float> o(size_t(rows * cols)), t(size_t(rows * cols));
  for (auto& v : o) v = rng.uniform(-1.f, 1.f);
  for (auto& v : t) v = rng.uniform(-1.f, 1.f);
  auto run = [&](double* loss) {
    std::vector<double> stats(size_t(3 * rows));
    *loss = cosine_loss<float>(rows, cols, o.data(), t.data(), 1e-8, stats.data());
    std::vector<float> g(o.size());
    cosine_loss_backward<float>(rows, cols, o.data(), t.data(), 1e-8, stats.data(), 1.0, g.data(), false);
    return g;
  };
  const int saved = num_threads();
  double l1 = 0, l2 = 0;
  set_num_threads(1);
  const std::vector<float> g1 = run(&l1);
  set_num_threads(2);
  const std::vector<float> g2 = run(&l2);
  set_num_threads(saved);
  CHECK(l1 == l2);
  CHECK(g1 == g2);
}
