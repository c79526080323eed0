// The row kernels' scalar column fold (stats.h's *_rows contract over columns [c0, c1) of rows
// with stride ld): the whole fold in the reference build, the columns past the last full vector
// in the AVX2 build. Compiled into each including object library with its own flags, so it
// sits in an anonymous namespace (one copy per library, never an ODR merge across ISAs).
#pragma once
#include <cfloat>
#include <cmath>
#include <cstdint>

namespace fastq {
namespace {  // NOLINT: deliberate, one copy per including object library

inline bool scalar_nonfinite(float x) { return !(std::fabs(x) <= FLT_MAX); }

// Abs: the largest |x| into mx (mn unused); else min into mn and max into mx.
template <bool Abs>
inline bool max_cols_scalar(const float* p, int64_t rows, int64_t ld, int64_t c0, int64_t c1,
                            float* mn, float* mx) {
  bool nf = false;
  for (int64_t r = 0; r < rows; ++r, p += ld)
    for (int64_t i = c0; i < c1; ++i) {
      const float x = Abs ? std::fabs(p[i]) : p[i];
      if constexpr (!Abs) mn[i] = x < mn[i] ? x : mn[i];
      mx[i] = x > mx[i] ? x : mx[i];
      nf |= scalar_nonfinite(x);
    }
  return nf;
}

inline bool sum_cols_scalar(const float* p, int64_t rows, int64_t ld, int64_t c0, int64_t c1,
                            double* s) {
  bool nf = false;
  for (int64_t r = 0; r < rows; ++r, p += ld)
    for (int64_t i = c0; i < c1; ++i) {
      s[i] += static_cast<double>(p[i]);
      nf |= scalar_nonfinite(p[i]);
    }
  return nf;
}

}  // namespace
}  // namespace fastq
