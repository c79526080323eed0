// A small persistent thread pool for kernels. Contract: parallel_for(n, fn) runs fn(i) once
// for every i in [0, n) on up to num_threads() threads (the caller is one of them) and
// returns when all are done. Tasks must write disjoint outputs, so results never depend on
// the thread count. Pool threads never touch Python objects: callers release the GIL.
#pragma once
#include <cstdint>
#include <functional>

namespace fastq {

int num_threads();
// n <= 0 restores the default (hardware concurrency).
void set_num_threads(int n);
// The calling thread's own cap, overriding the process-wide count for kernels it calls;
// n <= 0 removes it.
void set_thread_local_num_threads(int n);
void parallel_for(int64_t n, const std::function<void(int64_t)>& fn);

}  // namespace fastq
