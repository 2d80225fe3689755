// Minimal test harness for the standalone native tests (they run where Node is absent, e.g.
// a GPU box, and under sanitizers in CI). Output is TAP so .ci/run can count results.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace ptq4vm::test {

struct TestCase {
  const char* name;
  std::function<void()> fn;
};
inline std::vector<TestCase>& registry() {
  static std::vector<TestCase> r;
  return r;
}
struct Registrar {
  Registrar(const char* name, std::function<void()> fn) { registry().push_back({name, std::move(fn)}); }
};
struct Failure {
  std::string message;
};
// A test that cannot run here (e.g. no GPU) throws Skip with the reason.
struct Skip {
  std::string reason;
};

inline int run_all(int argc, char** argv) {
  const char* filter = argc > 1 ? argv[1] : nullptr;
  std::vector<TestCase*> selected;
  for (auto& t : registry())
    if (!filter || std::string(t.name).find(filter) != std::string::npos) selected.push_back(&t);
  std::printf("TAP version 13\n1..%zu\n", selected.size());
  int failed = 0, n = 0;
  for (auto* t : selected) {
    ++n;
    try {
      t->fn();
      std::printf("ok %d - %s\n", n, t->name);
    } catch (const Skip& s) {
      std::printf("ok %d - %s # SKIP %s\n", n, t->name, s.reason.c_str());
    } catch (const Failure& f) {
      ++failed;
      std::printf("not ok %d - %s\n  # %s\n", n, t->name, f.message.c_str());
    } catch (const std::exception& e) {
      ++failed;
      std::printf("not ok %d - %s\n  # exception: %s\n", n, t->name, e.what());
    }
    std::fflush(stdout);
  }
  return failed ? 1 : 0;
}

// Deterministic random data; never zeros-only.
struct Rng {
  std::mt19937_64 gen;
  explicit Rng(uint64_t seed) : gen(seed) {}
  float uniform(float lo = -1.f, float hi = 1.f) { return std::uniform_real_distribution<float>(lo, hi)(gen); }
  int64_t integer(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(gen); }
  std::vector<float> floats(size_t n, float lo = -1.f, float hi = 1.f) {
    std::vector<float> v(n);
    for (auto& x : v) x = uniform(lo, hi);
    return v;
  }
};

// max |a-b| / max(max|b|, tiny): relative to the reference's scale.
inline double rel_max_err(const float* a, const float* b, size_t n) {
  double num = 0, den = 1e-30;
  for (size_t i = 0; i < n; ++i) {
    num = std::fmax(num, std::fabs(double(a[i]) - double(b[i])));
    den = std::fmax(den, std::fabs(double(b[i])));
  }
  return num / den;
}

}  // namespace ptq4vm::test

#define PTQ_CONCAT2(a, b) a##b
#define PTQ_CONCAT(a, b) PTQ_CONCAT2(a, b)
#define TEST_CASE(name)                                                                   \
  static void PTQ_CONCAT(test_fn_, __LINE__)();                                           \
  static ::ptq4vm::test::Registrar PTQ_CONCAT(test_reg_, __LINE__)(name, PTQ_CONCAT(test_fn_, __LINE__)); \
  static void PTQ_CONCAT(test_fn_, __LINE__)()

#define CHECK(cond)                                                                       \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::ostringstream os_;                                                             \
      os_ << __FILE__ << ":" << __LINE__ << ": CHECK(" #cond ") failed";                 \
      throw ::ptq4vm::test::Failure{os_.str()};                                           \
    }                                                                                     \
  } while (0)

#define CHECK_MSG(cond, msg)                                                              \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::ostringstream os_;                                                             \
      os_ << __FILE__ << ":" << __LINE__ << ": " << msg;                                   \
      throw ::ptq4vm::test::Failure{os_.str()};                                           \
    }                                                                                     \
  } while (0)

#define TEST_MAIN() \
  int main(int argc, char** argv) { return ::ptq4vm::test::run_all(argc, argv); }
