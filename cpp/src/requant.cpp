// Requantization and per-tensor quantization loops (requant.h). Portable: the float steps are
// one IEEE multiply or divide and a rounding, so every build gives the same bits; planes are
// split across threads when large.
#include "fastq/requant.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "fastq/cpu_features.h"
#include "fastq/threads.h"

namespace fastq {

#if defined(FASTQ_HAVE_X86)
// avx2/requant_avx2.cpp: the same loops with intrinsics (same bits)
void requantize_rows_avx2(const int32_t* acc, int64_t M, int64_t C, int64_t lda,
                          const int32_t* z32, const float* mult, int32_t y_zp, bool y_signed,
                          void* out, int64_t ldo);
void quantize_f32_avx2(const float* x, int64_t n, float scale, int32_t zp, bool y_signed,
                       void* out);
void qdq_add_avx2(const void* a, bool a_signed, float a_scale, int32_t a_zp, const void* b,
                  bool b_signed, float b_scale, int32_t b_zp, int64_t n, bool relu,
                  float y_scale, int32_t y_zp, bool y_signed, void* out);
#endif

namespace {
bool use_avx2() {
#if defined(FASTQ_HAVE_X86)
  static const bool ok = cpu_features().avx2 && cpu_features().os_avx;
  return ok;
#else
  return false;
#endif
}
}  // namespace

namespace {
// Round half to even of |v| <= 2^22 without a libm call (the portable build has no SSE4.1
// roundps): adding and removing 1.5 * 2^23 leaves the default-mode rounding of v.
inline float round_even(float v) {
  const float magic = 12582912.0f;
  return (v + magic) - magic;
}

// One row of per-column requantization (channel = column). Arguments, not captures: stores
// through T* (a char type) may alias anything captured by reference, which would stop the
// loop from vectorizing.
template <class T>
inline void requant_row(const int32_t* a, int64_t n, const int64_t* zc, const float* mu,
                        float l, float h, int32_t zq, T* o) {
  for (int64_t c = 0; c < n; ++c) {
    float v = float(int32_t(uint32_t(a[c]) - uint32_t(zc[c]))) * mu[c];
    v = std::min(h, std::max(l, v));
    o[c] = T(int32_t(round_even(v)) + zq);
  }
}

template <class T>
void requant_t(const int32_t* acc, int64_t outer, int64_t C, int64_t inner,
               const int64_t* zcomp, const float* mult, int32_t y_zp, T* out) {
  const float lo = float(std::numeric_limits<T>::min() - y_zp);
  const float hi = float(std::numeric_limits<T>::max() - y_zp);
  auto plane = [&](int64_t p) {
    const int64_t c = p % C;
    const uint32_t z = uint32_t(zcomp[c]);
    const float m = mult[c];
    // locals, not captures: stores through T* (a char type) may alias anything captured by
    // reference, which would stop the loop from vectorizing
    const int64_t len = inner;
    const int32_t zq = y_zp;
    const float l = lo, h = hi;
    const int32_t* a = acc + p * len;
    T* o = out + p * len;
    for (int64_t i = 0; i < len; ++i) {
      float v = float(int32_t(uint32_t(a[i]) - z)) * m;
      v = std::min(h, std::max(l, v));  // |v| <= 255 from here on
      o[i] = T(int32_t(round_even(v)) + zq);
    }
  };
  if (inner == 1 && use_avx2()) {  // GEMM rows [outer, C]: channel = column
    const bool sgn = std::numeric_limits<T>::is_signed;
    constexpr int64_t kRows = 64;
    auto block = [&](int64_t b) {
      const int64_t r0 = b * kRows, r1 = std::min(outer, r0 + kRows);
      requantize_rows(acc + r0 * C, r1 - r0, C, C, zcomp, mult, y_zp, sgn, out + r0 * C, C);
    };
    const int64_t blocks = (outer + kRows - 1) / kRows;
    if (outer * C > (1 << 15))
      parallel_for(blocks, block);
    else
      for (int64_t b = 0; b < blocks; ++b) block(b);
    return;
  }
  if (inner == 1) {  // GEMM rows [outer, C]: channel = column
    auto row = [&](int64_t r) {
      requant_row(acc + r * C, C, zcomp, mult, lo, hi, y_zp, out + r * C);
    };
    if (outer * C > (1 << 15))
      parallel_for(outer, row);
    else
      for (int64_t r = 0; r < outer; ++r) row(r);
    return;
  }
  const int64_t planes = outer * C;
  if (planes * inner > (1 << 15))
    parallel_for(planes, plane);
  else
    for (int64_t p = 0; p < planes; ++p) plane(p);
}

template <class T>
void requant_rows_t(const int32_t* acc, int64_t M, int64_t C, int64_t lda,
                    const int64_t* zcomp, const float* mult, int32_t y_zp, T* out,
                    int64_t ldo) {
  const float lo = float(std::numeric_limits<T>::min() - y_zp);
  const float hi = float(std::numeric_limits<T>::max() - y_zp);
  for (int64_t r = 0; r < M; ++r)
    requant_row(acc + r * lda, C, zcomp, mult, lo, hi, y_zp, out + r * ldo);
}

template <class T>
void quant_t(const float* x, int64_t n, float scale, int32_t zp, T* out) {
  // clamp before rounding (rounding is monotone and lo - zp, hi - zp are integers);
  // std::max(lo, NaN) is lo, so NaN gives the lowest value
  const float lo = float(std::numeric_limits<T>::min() - zp);
  const float hi = float(std::numeric_limits<T>::max() - zp);
  constexpr int64_t kChunk = 1 << 14;
  auto chunk = [&](int64_t k) {
    const int64_t i0 = k * kChunk, i1 = std::min(n, (k + 1) * kChunk);
#if defined(FASTQ_HAVE_X86)
    if (use_avx2()) {
      quantize_f32_avx2(x + i0, i1 - i0, scale, zp, std::numeric_limits<T>::is_signed,
                        out + i0);
      return;
    }
#endif
    const float l = lo, h = hi, sc = scale;  // locals: see requant_t
    const int32_t zq = zp;
    T* o = out;
    const float* xi = x;
    for (int64_t i = i0; i < i1; ++i) {
      const float v = std::min(h, std::max(l, xi[i] / sc));
      o[i] = T(int32_t(round_even(v)) + zq);
    }
  };
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  if (chunks > 2)
    parallel_for(chunks, chunk);
  else
    for (int64_t k = 0; k < chunks; ++k) chunk(k);
}
template <class T>
void dequant_t(const T* x, int64_t n, float scale, int32_t zp, float* out) {
  const float z = float(zp);
  constexpr int64_t kChunk = 1 << 14;
  auto chunk = [&](int64_t k) {
    const int64_t i1 = std::min(n, (k + 1) * kChunk);
    for (int64_t i = k * kChunk; i < i1; ++i) out[i] = (float(x[i]) - z) * scale;
  };
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  if (chunks > 2)
    parallel_for(chunks, chunk);
  else
    for (int64_t k = 0; k < chunks; ++k) chunk(k);
}
}  // namespace

namespace {
template <class T>
void dequant_add_t(const T* x, int64_t rows, int64_t N, float scale, int32_t zp,
                   const float* bias, float* out) {
  auto row = [&](int64_t r) {
    const float z = float(zp), s = scale;  // locals: see requant_t
    const int64_t n = N;
    const T* xi = x + r * n;
    float* o = out + r * n;
    const float* b = bias;
    for (int64_t c = 0; c < n; ++c) o[c] = (float(xi[c]) - z) * s + b[c];
  };
  if (rows * N > (1 << 16))
    parallel_for(rows, row);
  else
    for (int64_t r = 0; r < rows; ++r) row(r);
}
}  // namespace

void dequantize_add_f32(const void* x, bool x_signed, int64_t rows, int64_t N, float scale,
                        int32_t zp, const float* bias, float* out) {
  if (x_signed)
    dequant_add_t(static_cast<const int8_t*>(x), rows, N, scale, zp, bias, out);
  else
    dequant_add_t(static_cast<const uint8_t*>(x), rows, N, scale, zp, bias, out);
}

void dequantize_f32(const void* x, bool x_signed, int64_t n, float scale, int32_t zp,
                    float* out) {
  if (x_signed)
    dequant_t(static_cast<const int8_t*>(x), n, scale, zp, out);
  else
    dequant_t(static_cast<const uint8_t*>(x), n, scale, zp, out);
}

void requantize(const int32_t* acc, int64_t outer, int64_t C, int64_t inner,
                const int64_t* zcomp, const float* mult, int32_t y_zp, bool y_signed,
                void* out) {
  if (y_signed)
    requant_t(acc, outer, C, inner, zcomp, mult, y_zp, static_cast<int8_t*>(out));
  else
    requant_t(acc, outer, C, inner, zcomp, mult, y_zp, static_cast<uint8_t*>(out));
}

void requantize_rows(const int32_t* acc, int64_t M, int64_t C, int64_t lda,
                     const int64_t* zcomp, const float* mult, int32_t y_zp, bool y_signed,
                     void* out, int64_t ldo) {
#if defined(FASTQ_HAVE_X86)
  if (use_avx2()) {
    thread_local std::vector<int32_t> z32;
    z32.resize(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) z32[c] = int32_t(uint32_t(zcomp[c]));
    requantize_rows_avx2(acc, M, C, lda, z32.data(), mult, y_zp, y_signed, out, ldo);
    return;
  }
#endif
  if (y_signed)
    requant_rows_t(acc, M, C, lda, zcomp, mult, y_zp, static_cast<int8_t*>(out), ldo);
  else
    requant_rows_t(acc, M, C, lda, zcomp, mult, y_zp, static_cast<uint8_t*>(out), ldo);
}

namespace {
template <class A, class B, class Y>
void qdq_add_t(const A* a, float sa, int32_t za, const B* b, float sb, int32_t zb, int64_t n,
               bool relu, float sy, int32_t zy, Y* out) {
  const float lo = float(std::numeric_limits<Y>::min() - zy);
  const float hi = float(std::numeric_limits<Y>::max() - zy);
  const float fa = float(za), fb = float(zb);
  constexpr int64_t kChunk = 1 << 14;
  auto chunk = [&](int64_t k) {
    const int64_t i1 = std::min(n, (k + 1) * kChunk);
    const float l = lo, h = hi, s1 = sa, s2 = sb, s3 = sy, f1 = fa, f2 = fb;  // locals
    const int32_t zq = zy;
    const bool r = relu;
    for (int64_t i = k * kChunk; i < i1; ++i) {
      const float va = (float(a[i]) - f1) * s1;
      const float vb = (float(b[i]) - f2) * s2;
      float v = va + vb;
      if (r) v = std::max(v, 0.0f);
      v = std::min(h, std::max(l, v / s3));
      out[i] = Y(int32_t(round_even(v)) + zq);
    }
  };
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  if (chunks > 2)
    parallel_for(chunks, chunk);
  else
    for (int64_t k = 0; k < chunks; ++k) chunk(k);
}

template <class A, class B>
void qdq_add_y(const A* a, float sa, int32_t za, const B* b, float sb, int32_t zb, int64_t n,
               bool relu, float sy, int32_t zy, bool y_signed, void* out) {
  if (y_signed)
    qdq_add_t(a, sa, za, b, sb, zb, n, relu, sy, zy, static_cast<int8_t*>(out));
  else
    qdq_add_t(a, sa, za, b, sb, zb, n, relu, sy, zy, static_cast<uint8_t*>(out));
}

template <class A>
void qdq_add_b(const A* a, float sa, int32_t za, const void* b, bool b_signed, float sb,
               int32_t zb, int64_t n, bool relu, float sy, int32_t zy, bool y_signed,
               void* out) {
  if (b_signed)
    qdq_add_y(a, sa, za, static_cast<const int8_t*>(b), sb, zb, n, relu, sy, zy, y_signed, out);
  else
    qdq_add_y(a, sa, za, static_cast<const uint8_t*>(b), sb, zb, n, relu, sy, zy, y_signed,
              out);
}
}  // namespace

void qdq_add(const void* a, bool a_signed, float a_scale, int32_t a_zp, const void* b,
             bool b_signed, float b_scale, int32_t b_zp, int64_t n, bool relu, float y_scale,
             int32_t y_zp, bool y_signed, void* out) {
#if defined(FASTQ_HAVE_X86)
  if (use_avx2()) {
    constexpr int64_t kChunk = 1 << 14;
    const uint8_t* pa = static_cast<const uint8_t*>(a);
    const uint8_t* pb = static_cast<const uint8_t*>(b);
    uint8_t* po = static_cast<uint8_t*>(out);
    auto chunk = [&](int64_t k) {
      const int64_t i0 = k * kChunk, i1 = std::min(n, i0 + kChunk);
      qdq_add_avx2(pa + i0, a_signed, a_scale, a_zp, pb + i0, b_signed, b_scale, b_zp, i1 - i0,
                   relu, y_scale, y_zp, y_signed, po + i0);
    };
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    if (chunks > 2)
      parallel_for(chunks, chunk);
    else
      for (int64_t k = 0; k < chunks; ++k) chunk(k);
    return;
  }
#endif
  if (a_signed)
    qdq_add_b(static_cast<const int8_t*>(a), a_scale, a_zp, b, b_signed, b_scale, b_zp, n,
              relu, y_scale, y_zp, y_signed, out);
  else
    qdq_add_b(static_cast<const uint8_t*>(a), a_scale, a_zp, b, b_signed, b_scale, b_zp, n,
              relu, y_scale, y_zp, y_signed, out);
}

void quantize_f32(const float* x, int64_t n, float scale, int32_t zp, bool y_signed,
                  void* out) {
  if (y_signed)
    quant_t(x, n, scale, zp, static_cast<int8_t*>(out));
  else
    quant_t(x, n, scale, zp, static_cast<uint8_t*>(out));
}

}  // namespace fastq
