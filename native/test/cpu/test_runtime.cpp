// Runtime services: ISA detection/override and the thread pool's parallel_for contract.
#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "cpu_test_util.h"

using namespace ptq4vm;
using namespace ptq4vm::test;

TEST_CASE("runtime: detected ISA is consistent with the feature flags; set_active_isa") {
  const CpuFeatures& f = cpu_features();
  const Isa d = detected_isa();
  if (int(d) >= int(Isa::Avx2)) CHECK(f.avx2 && f.fma);
  if (int(d) >= int(Isa::Avx512)) CHECK(f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl);
  if (d == Isa::Avx512Vnni) CHECK(f.avx512vnni);
  const Isa saved = active_isa();
  CHECK(set_active_isa(Isa::Scalar));
  CHECK(active_isa() == Isa::Scalar);
  CHECK(!set_active_isa(Isa(int(d) + 1)));  // beyond what the CPU has: refused, unchanged
  CHECK(active_isa() == Isa::Scalar);
  CHECK(!set_active_isa(Isa(-1)));
  CHECK(set_active_isa(saved));
  CHECK(std::string(isa_name(Isa::Avx512Vnni)) == "avx512vnni");
}

TEST_CASE("parallel_for: covers [0, n) exactly once in chunks of at least grain") {
  ThreadCountGuard guard;
  for (int threads : {1, 2, 3, 5}) {
    set_num_threads(threads);
    CHECK(num_threads() == threads);
    for (int64_t n : {1, 2, 7, 64, 1000, 4097}) {
      for (int64_t grain : {1, 3, 100}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::atomic<int> bad_chunks{0}, chunks{0};
        parallel_for(n, grain, [&](int64_t b, int64_t e) {
          if (e - b < std::min(grain, n) || b < 0 || e > n || b >= e) ++bad_chunks;
          ++chunks;
          for (int64_t i = b; i < e; ++i) ++hits[size_t(i)];
        });
        CHECK(bad_chunks == 0);
        CHECK(chunks <= 4 * threads);
        for (auto& h : hits) CHECK(h == 1);
      }
    }
  }
}

TEST_CASE("parallel_for: nested calls run inline; concurrent callers are serialised") {
  ThreadCountGuard guard;
  set_num_threads(2);
  std::atomic<int64_t> total{0};
  parallel_for(8, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const auto outer_thread = std::this_thread::get_id();
      parallel_for(100, 1, [&](int64_t ib, int64_t ie) {
        CHECK(std::this_thread::get_id() == outer_thread);  // inline: same thread, one chunk
        CHECK(ib == 0 && ie == 100);
        total += ie - ib;
      });
    }
  });
  CHECK(total == 800);

  std::atomic<int64_t> sum{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c)
    callers.emplace_back([&] {
      for (int rep = 0; rep < 200; ++rep)
        parallel_for(64, 1, [&](int64_t b, int64_t e) { sum += e - b; });
    });
  for (auto& t : callers) t.join();
  CHECK(sum == 4 * 200 * 64);
}

TEST_CASE("parallel_for: an exception in a chunk reaches the caller; the pool survives") {
  ThreadCountGuard guard;
  set_num_threads(2);
  bool caught = false;
  try {
    parallel_for(10, 1, [&](int64_t b, int64_t) {
      if (b >= 5) throw std::runtime_error("chunk failed");
    });
  } catch (const std::runtime_error& e) {
    caught = std::string(e.what()) == "chunk failed";
  }
  CHECK(caught);
  std::atomic<int64_t> n{0};
  parallel_for(10, 1, [&](int64_t b, int64_t e) { n += e - b; });
  CHECK(n == 10);
}

TEST_CASE("parallel_for: each thread starts with its own contiguous share of the chunks") {
  // Consecutive kernels split rows the same way, so a thread finds what it wrote a kernel ago in
  // its own cache. Each thread here waits (bounded) for the other to have claimed a chunk, so
  // neither can finish early and take the other's share: the caller must start with chunk 0,
  // the worker with the first chunk of the second half.
  ThreadCountGuard guard;
  set_num_threads(2);
  const auto caller = std::this_thread::get_id();
  std::atomic<bool> caller_started{false}, worker_started{false};
  std::atomic<int64_t> caller_first{-1}, worker_first{-1};
  std::atomic<int> timeouts{0};
  auto wait_for = [&](std::atomic<bool>& flag) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!flag.load()) {
      if (std::chrono::steady_clock::now() > deadline) {
        ++timeouts;
        return;
      }
      std::this_thread::yield();
    }
  };
  parallel_for(8, 1, [&](int64_t b, int64_t) {
    const bool is_caller = std::this_thread::get_id() == caller;
    int64_t unset = -1;
    (is_caller ? caller_first : worker_first).compare_exchange_strong(unset, b);
    (is_caller ? caller_started : worker_started).store(true);
    wait_for(is_caller ? worker_started : caller_started);
  });
  CHECK(timeouts == 0);
  CHECK(caller_first == 0);
  CHECK(worker_first == 4);
}
