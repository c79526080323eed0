// Per-thread, grow-only scratch memory for the drivers' per-call temporaries (A padding,
// NHWC copies, im2col rows, accumulators). A fresh multi-MiB allocation costs a page fault per
// 4 KiB on every call -- more than the arithmetic for mid-sized layers -- so each calling
// thread keeps its largest buffer per slot. Contents are uninitialized; a driver uses
// distinct slots for buffers alive at the same time. Memory held: the largest request per
// slot per calling thread (pool workers never call drivers).
#pragma once
#include <cstddef>

namespace fastq {

enum class Scratch : int {
  GemmA,       // gemm driver: A rows padded to Kp
  QlinearA,    // qlinear / qconv: activations shifted s8 -> u8
  QlinearAcc,  // qlinear: raw sums
  ConvNhwc,    // conv: NHWC copy of the input
  ConvCols,    // conv: im2col rows
  ConvAcc,     // conv: one group's raw sums
  kCount
};

// 64-byte aligned, at least `bytes` long, valid until the next call with the same slot on
// this thread.
void* scratch(Scratch slot, size_t bytes);

template <class T>
T* scratch_as(Scratch slot, size_t count) {
  return static_cast<T*>(scratch(slot, count * sizeof(T)));
}

}  // namespace fastq
