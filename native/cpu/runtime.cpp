// CPU runtime: instruction-set detection (cpuid + xgetbv), the active level kernels dispatch on,
// and the one thread pool every kernel shares.
#include "ptq4vm/runtime.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define PTQ4VM_X86 1
#endif

namespace ptq4vm {
namespace {

#ifdef PTQ4VM_X86
uint64_t read_xcr0() {
  uint32_t lo, hi;
  // xgetbv with ecx = 0 reads XCR0: which register states the OS saves on context switch.
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t(hi) << 32) | lo;
}
#endif

CpuFeatures detect_features() {
  CpuFeatures f;
#ifdef PTQ4VM_X86
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27), avx = c & (1u << 28);
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = read_xcr0();
  const bool os_avx = (xcr0 & 0x6) == 0x6;        // SSE + AVX (ymm upper halves)
  const bool os_avx512 = (xcr0 & 0xE0) == 0xE0;   // opmask + zmm0-15 upper + zmm16-31
  if (!os_avx) return f;
  f.fma = c & (1u << 12);
  f.f16c = c & (1u << 29);
  unsigned max_leaf = __get_cpuid_max(0, nullptr);
  if (max_leaf < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  f.avx2 = b & (1u << 5);
  if (os_avx512) {
    f.avx512f = b & (1u << 16);
    f.avx512dq = b & (1u << 17);
    f.avx512bw = b & (1u << 30);
    f.avx512vl = b & (1u << 31);
    f.avx512vnni = c & (1u << 11);
  }
  const unsigned subleaves = a;
  if (subleaves >= 1) {
    __cpuid_count(7, 1, a, b, c, d);
    f.avxvnni = a & (1u << 4);
  }
#endif
  return f;
}

Isa isa_of(const CpuFeatures& f) {
  if (!(f.avx2 && f.fma && f.f16c)) return Isa::Scalar;
  if (!(f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl)) return Isa::Avx2;
  return f.avx512vnni ? Isa::Avx512Vnni : Isa::Avx512;
}

bool parse_isa(const char* s, Isa* out) {
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni}) {
    if (std::strcmp(s, isa_name(isa)) == 0) {
      *out = isa;
      return true;
    }
  }
  return false;
}

Isa initial_active_isa() {
  Isa isa = detected_isa();
  if (const char* env = std::getenv("PTQ4VM_ISA"); env && *env) {
    Isa wanted;
    if (!parse_isa(env, &wanted)) {
      std::fprintf(stderr, "ptq4vm: ignoring PTQ4VM_ISA=%s (use scalar, avx2, avx512 or avx512vnni)\n", env);
    } else if (int(wanted) > int(isa)) {
      std::fprintf(stderr, "ptq4vm: PTQ4VM_ISA=%s is not supported by this CPU; using %s\n", env,
                   isa_name(isa));
    } else {
      isa = wanted;
    }
  }
  return isa;
}

std::atomic<int>& active_isa_slot() {
  static std::atomic<int> slot{int(initial_active_isa())};
  return slot;
}

int default_thread_count() {
  if (const char* env = std::getenv("PTQ4VM_THREADS"); env && *env) {
    char* end = nullptr;
    long n = std::strtol(env, &end, 10);
    if (end && *end == '\0' && n >= 1 && n <= 1024) return int(n);
    std::fprintf(stderr, "ptq4vm: ignoring PTQ4VM_THREADS=%s (expected an integer in [1, 1024])\n", env);
  }
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    // A process restricted to fewer CPUs (taskset, cgroup cpusets) should not oversubscribe them.
    online = std::min<long>(online > 0 ? online : 1, CPU_COUNT(&set));
  }
  return int(std::clamp<long>(online, 1, 1024));
}

inline void cpu_relax() {
#ifdef PTQ4VM_X86
  _mm_pause();
#endif
}

// True while this thread runs a chunk of a parallel_for: nested calls then run inline.
thread_local bool t_inside_parallel = false;

// Workers spin briefly after each job before sleeping, because the model issues hundreds of
// small kernels back to back and a condition-variable wake-up costs tens of microseconds.
// Spinning yields the CPU now and then, so on a loaded machine a spinner does not keep a
// preempted thread of the same job (or anyone else) off the core.
constexpr auto kSpinBeforeSleep = std::chrono::microseconds(200);
constexpr int kPausesBeforeYield = 256;
// A job is cut into up to this many chunks per thread. Thread i owns the i-th contiguous
// share of them and works through it in order, then takes chunks left in the others' shares:
// a thread that was descheduled only delays its current chunk, the others take the rest.
// Owning a fixed share keeps data on its core: consecutive kernels split the same rows
// (tokens) the same way, so a thread mostly reads what it wrote a kernel earlier from its own
// L2 rather than the other core's (Zen 4, 2 threads, Vim-Ti batch 8: ~1.7 % off the forward
// in both precisions against chunks handed out first-come, paired runs).
constexpr int64_t kChunksPerThread = 4;

// Waits for `done()`: pause-spins first, then also yields the CPU between checks.
template <typename Done>
void spin_wait(Done&& done) {
  for (int i = 0; !done(); ++i) {
    if (i < kPausesBeforeYield) cpu_relax();
    else std::this_thread::yield();
  }
}

class ThreadPool {
 public:
  explicit ThreadPool(int threads) { start(threads); }
  ~ThreadPool() { stop(); }

  int size() const { return threads_; }

  void resize(int threads) {
    std::lock_guard<std::mutex> call(call_mutex_);
    if (threads == threads_) return;
    stop();
    start(threads);
  }

  void run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    std::lock_guard<std::mutex> call(call_mutex_);
    const int64_t max_chunks = std::max<int64_t>(1, n / std::max<int64_t>(grain, 1));
    const int64_t chunks = std::min<int64_t>(threads_ * kChunksPerThread, max_chunks);
    if (chunks <= 1) {
      run_inline(n, fn);
      return;
    }
    fn_ = &fn;
    n_ = n;
    chunks_ = chunks;
    error_ = nullptr;
    for (int i = 0; i < threads_; ++i) share_[i].next.store(share_begin(i), std::memory_order_relaxed);
    // Every worker checks in once per job, even if it finds no chunk left, so no worker can
    // still be reading this job's fields when run() returns and the next caller rewrites them.
    unfinished_workers_.store(int(workers_.size()), std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lk(wake_mutex_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_cv_.notify_all();
    run_chunks(0);
    spin_wait([&] { return unfinished_workers_.load(std::memory_order_acquire) == 0; });
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  static void run_inline(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
    t_inside_parallel = true;
    try {
      fn(0, n);
    } catch (...) {
      t_inside_parallel = false;
      throw;
    }
    t_inside_parallel = false;
  }

  void start(int threads) {
    threads_ = threads;
    share_ = std::vector<Share>(size_t(threads));
    stopping_.store(false);
    // Workers start from the current generation, so a job published before a new worker first
    // runs is still seen as new by it.
    const uint64_t start_generation = generation_.load(std::memory_order_acquire);
    for (int i = 1; i < threads; ++i)
      workers_.emplace_back([this, i, start_generation] { worker_loop(i, start_generation); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(wake_mutex_);
      stopping_.store(true, std::memory_order_release);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  // First chunk of thread i's share: shares are contiguous and as even as the count allows.
  int64_t share_begin(int i) const { return chunks_ * i / threads_; }

  // Runs the chunks of share `self` in order, then those still left in the other shares.
  void run_chunks(int self) {
    t_inside_parallel = true;
    for (int k = 0; k < threads_; ++k) {
      const int owner = (self + k) % threads_;
      const int64_t end_chunk = share_begin(owner + 1);
      for (;;) {
        const int64_t c = share_[owner].next.fetch_add(1, std::memory_order_relaxed);
        if (c >= end_chunk) break;
        const int64_t begin = n_ * c / chunks_, end = n_ * (c + 1) / chunks_;
        try {
          (*fn_)(begin, end);
        } catch (...) {
          std::lock_guard<std::mutex> lk(error_mutex_);
          if (!error_) error_ = std::current_exception();
        }
      }
    }
    t_inside_parallel = false;
  }

  void worker_loop(int self, uint64_t seen) {
    for (;;) {
      uint64_t g = generation_.load(std::memory_order_acquire);
      const auto spin_until = std::chrono::steady_clock::now() + kSpinBeforeSleep;
      for (int i = 0; g == seen; ++i) {
        if ((i & (kPausesBeforeYield - 1)) == kPausesBeforeYield - 1) {
          if (std::chrono::steady_clock::now() > spin_until) break;
          std::this_thread::yield();
        } else {
          cpu_relax();
        }
        g = generation_.load(std::memory_order_acquire);
      }
      if (g == seen) {
        std::unique_lock<std::mutex> lk(wake_mutex_);
        wake_cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
        g = generation_.load(std::memory_order_acquire);
      }
      seen = g;
      if (stopping_.load(std::memory_order_acquire)) return;
      run_chunks(self);
      unfinished_workers_.fetch_sub(1, std::memory_order_release);
    }
  }

  std::mutex call_mutex_;  // one job at a time; resize waits for it too
  int threads_ = 1;
  std::vector<std::thread> workers_;

  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, chunks_ = 0;
  // Next unclaimed chunk of each thread's share, a cache line each: the owner's claims do not
  // contend with the other threads'.
  struct alignas(64) Share {
    std::atomic<int64_t> next{0};
  };
  std::vector<Share> share_;
  std::atomic<int> unfinished_workers_{0};
  std::mutex error_mutex_;
  std::exception_ptr error_;

  std::mutex wake_mutex_;
  std::condition_variable wake_cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stopping_{false};
};

std::mutex& pool_mutex() {
  static std::mutex m;
  return m;
}
std::atomic<int>& requested_threads() {
  static std::atomic<int> n{default_thread_count()};
  return n;
}

ThreadPool& pool() {
  // Created on first use; never destroyed before exit handlers of other statics might run
  // a kernel, so it is intentionally leaked.
  static ThreadPool* p = new ThreadPool(requested_threads().load());
  return *p;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect_features();
  return f;
}

Isa detected_isa() {
  static const Isa isa = isa_of(cpu_features());
  return isa;
}

Isa active_isa() { return Isa(active_isa_slot().load(std::memory_order_relaxed)); }

bool set_active_isa(Isa isa) {
  if (int(isa) < int(Isa::Scalar) || int(isa) > int(detected_isa())) return false;
  active_isa_slot().store(int(isa), std::memory_order_relaxed);
  return true;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Avx512Vnni: return "avx512vnni";
  }
  return "unknown";
}

int num_threads() { return requested_threads().load(std::memory_order_relaxed); }

void set_num_threads(int n) {
  n = std::clamp(n, 1, 1024);
  std::lock_guard<std::mutex> lk(pool_mutex());
  requested_threads().store(n);
  pool().resize(n);
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (t_inside_parallel || num_threads() <= 1 || n < 2 * std::max<int64_t>(grain, 1)) {
    // Nested, single-threaded or too small to split: run here, no synchronisation at all.
    const bool was_inside = t_inside_parallel;
    t_inside_parallel = true;
    try {
      fn(0, n);
    } catch (...) {
      t_inside_parallel = was_inside;
      throw;
    }
    t_inside_parallel = was_inside;
    return;
  }
  pool().run(n, grain, fn);
}

}  // namespace ptq4vm
