// Persistent pool: workers sleep on a condition variable between jobs; a job hands out task
// indices through an atomic counter, so load balances without a scheduler. One job at a time
// (a mutex serializes concurrent callers) keeps the pool simple and deadlock-free.
#include "fastq/threads.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

namespace fastq {
namespace {

int default_threads() {
  unsigned h = std::thread::hardware_concurrency();
  return h == 0 ? 1 : static_cast<int>(h);
}

class Pool {
 public:
  ~Pool() { resize(0); }

  void run(int64_t n, const std::function<void(int64_t)>& fn, int nthreads) {
    std::lock_guard<std::mutex> job_lock(job_mutex_);
    int helpers = static_cast<int>(std::min<int64_t>(nthreads, n)) - 1;
    if (helpers <= 0) {
      for (int64_t i = 0; i < n; ++i) fn(i);
      return;
    }
    if (static_cast<int>(workers_.size()) < helpers) resize(helpers);
    {
      std::lock_guard<std::mutex> lk(mutex_);
      fn_ = &fn;
      n_ = n;
      next_.store(0);
      active_ = helpers;
      wanted_ = helpers;
      ++generation_;
    }
    cv_.notify_all();
    drain();
    std::unique_lock<std::mutex> lk(mutex_);
    done_cv_.wait(lk, [&] { return active_ == 0; });
    fn_ = nullptr;
  }

 private:
  void drain() {
    for (;;) {
      int64_t i = next_.fetch_add(1);
      if (i >= n_) break;
      (*fn_)(i);
    }
  }

  void worker(int id, uint64_t seen) {
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(mutex_);
        cv_.wait(lk, [&] { return stop_ || (generation_ != seen && id < wanted_); });
        if (stop_) return;
        seen = generation_;
      }
      drain();
      std::lock_guard<std::mutex> lk(mutex_);
      if (--active_ == 0) done_cv_.notify_one();
    }
  }

  void resize(int count) {
    {
      std::lock_guard<std::mutex> lk(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    stop_ = false;
    // A new worker must not mistake the last finished job for a new one.
    const uint64_t gen = generation_;
    for (int i = 0; i < count; ++i) workers_.emplace_back([this, i, gen] { worker(i, gen); });
  }

  std::mutex job_mutex_;
  std::mutex mutex_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  const std::function<void(int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  std::atomic<int64_t> next_{0};
  int active_ = 0, wanted_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

std::atomic<int> g_threads{0};
// A calling thread's own cap (0: none): a data-parallel Python worker runs its kernels inline
// instead of queueing on the one shared pool behind the other workers.
thread_local int t_threads = 0;
std::atomic<Pool*> g_pool{nullptr};
std::mutex g_pool_mutex;

// A forked child (multiprocessing's default on Linux) has none of the parent's worker
// threads, and the parent's pool mutexes may have been held at the fork: the child must
// never touch that pool. It abandons it (leaked: its std::thread objects cannot be joined
// or destroyed there) and builds a fresh one on first use.
void forget_pool_in_child() {
  g_pool.store(nullptr);
  new (&g_pool_mutex) std::mutex();
}

Pool& pool() {
  Pool* p = g_pool.load();
  if (p) return *p;
  std::lock_guard<std::mutex> lk(g_pool_mutex);
  p = g_pool.load();
  if (!p) {
    static const bool registered = (pthread_atfork(nullptr, nullptr, forget_pool_in_child), true);
    (void)registered;
    p = new Pool();  // leaked on purpose: no join at interpreter teardown
    g_pool.store(p);
  }
  return *p;
}

}  // namespace

int num_threads() {
  if (t_threads > 0) return t_threads;
  int n = g_threads.load();
  return n > 0 ? n : default_threads();
}

void set_num_threads(int n) { g_threads.store(n > 0 ? n : 0); }

void set_thread_local_num_threads(int n) { t_threads = n > 0 ? n : 0; }

void parallel_for(int64_t n, const std::function<void(int64_t)>& fn) {
  if (n <= 0) return;
  int t = num_threads();
  if (t <= 1 || n == 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  pool().run(n, fn, t);
}

}  // namespace fastq
