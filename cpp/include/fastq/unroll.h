// Compile-time unrolling for micro-kernels: unroll<N>([&](auto i) { ... }) calls the body
// with std::integral_constant 0..N-1. GCC keeps arrays of vector accumulators in registers
// only when every index is a constant from the start; loop unrolling (even forced by
// pragma) happens too late and leaves the accumulators spilled to the stack.
#pragma once
#include <type_traits>
#include <utility>

namespace fastq {

template <class F, int... I>
inline __attribute__((always_inline)) void unroll_seq(std::integer_sequence<int, I...>, F&& f) {
  (f(std::integral_constant<int, I>{}), ...);
}

template <int N, class F>
inline __attribute__((always_inline)) void unroll(F&& f) {
  unroll_seq(std::make_integer_sequence<int, N>{}, f);
}

}  // namespace fastq
