// AVX2 builds of the requantization loops (requant.h), 8 floats at a time with intrinsics
// (no FMA can be contracted into them): float(acc - zcomp) * mult, clamp, round half to
// even by adding and removing 1.5 * 2^23, + zero point; x / scale likewise for quantize;
// QuantizeLinear(Relu?(DequantizeLinear(a) + DequantizeLinear(b))) for qdq_add. The same IEEE operations in the same order as the
// portable loops in requant.cpp, so the same bits; tails run the portable formula. Also the
// int32 row of QlinearEpilogue::row (gemm.cpp): float(acc - zcomp) * scale (+ bias).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <limits>

namespace fastq {

namespace {

inline float round_even(float v) {
  const float magic = 12582912.0f;
  return (v + magic) - magic;
}

// 16 int32 (two vectors) -> 16 bytes, saturating (the values are in range already)
inline void store16(__m256i a0, __m256i a1, bool y_signed, void* dst) {
  __m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi32(a0, a1), 0xD8);
  __m256i b = y_signed ? _mm256_packs_epi16(p, p) : _mm256_packus_epi16(p, p);
  b = _mm256_permute4x64_epi64(b, 0x08);
  _mm_storeu_si128(static_cast<__m128i*>(dst), _mm256_castsi256_si128(b));
}

// Round half to even (the 1.5 * 2^23 trick, as round_even) and add the zero point; v is
// already clamped to the output range.
inline __m256i round_add_zp(__m256 v, __m256i vz) {
  const __m256 magic = _mm256_set1_ps(12582912.0f);
  return _mm256_add_epi32(_mm256_cvttps_epi32(_mm256_sub_ps(_mm256_add_ps(v, magic), magic)),
                          vz);
}

template <class T>
inline T finish(float v, float l, float h, int32_t zq) {
  v = std::min(h, std::max(l, v));
  return T(int32_t(round_even(v)) + zq);
}

}  // namespace

void requantize_rows_avx2(const int32_t* acc, int64_t M, int64_t C, int64_t lda,
                          const int32_t* z32, const float* mult, int32_t y_zp, bool y_signed,
                          void* out, int64_t ldo) {
  const float lo = y_signed ? float(-128 - y_zp) : float(0 - y_zp);
  const float hi = y_signed ? float(127 - y_zp) : float(255 - y_zp);
  const __m256 vl = _mm256_set1_ps(lo), vh = _mm256_set1_ps(hi);
  const __m256i vz = _mm256_set1_epi32(y_zp);
  auto one = [&](const int32_t* a, int64_t c) {
    __m256i d = _mm256_sub_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + c)),
                                 _mm256_loadu_si256(reinterpret_cast<const __m256i*>(z32 + c)));
    __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(d), _mm256_loadu_ps(mult + c));
    v = _mm256_min_ps(vh, _mm256_max_ps(vl, v));
    return round_add_zp(v, vz);
  };
  for (int64_t r = 0; r < M; ++r) {
    const int32_t* a = acc + r * lda;
    uint8_t* o = static_cast<uint8_t*>(out) + r * ldo;
    int64_t c = 0;
    for (; c + 16 <= C; c += 16) store16(one(a, c), one(a, c + 8), y_signed, o + c);
    for (; c < C; ++c) {
      const float v = float(int32_t(uint32_t(a[c]) - uint32_t(z32[c]))) * mult[c];
      if (y_signed)
        reinterpret_cast<int8_t*>(o)[c] = finish<int8_t>(v, lo, hi, y_zp);
      else
        o[c] = finish<uint8_t>(v, lo, hi, y_zp);
    }
  }
}

void quantize_f32_avx2(const float* x, int64_t n, float scale, int32_t zp, bool y_signed,
                       void* out) {
  const float lo = y_signed ? float(-128 - zp) : float(0 - zp);
  const float hi = y_signed ? float(127 - zp) : float(255 - zp);
  const __m256 vl = _mm256_set1_ps(lo), vh = _mm256_set1_ps(hi), vs = _mm256_set1_ps(scale);
  const __m256i vz = _mm256_set1_epi32(zp);
  auto one = [&](int64_t i) {
    __m256 v = _mm256_div_ps(_mm256_loadu_ps(x + i), vs);
    // max(lo, NaN) must give lo as std::max(lo, v) does: vmaxps returns its second
    // operand when either is NaN
    v = _mm256_min_ps(vh, _mm256_max_ps(v, vl));
    return round_add_zp(v, vz);
  };
  uint8_t* o = static_cast<uint8_t*>(out);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) store16(one(i), one(i + 8), y_signed, o + i);
  for (; i < n; ++i) {
    const float v = x[i] / scale;
    if (y_signed)
      reinterpret_cast<int8_t*>(o)[i] = finish<int8_t>(v, lo, hi, zp);
    else
      o[i] = finish<uint8_t>(v, lo, hi, zp);
  }
}

namespace {
inline __m256 load8(const uint8_t* p, bool is_signed) {
  const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  return _mm256_cvtepi32_ps(is_signed ? _mm256_cvtepi8_epi32(v) : _mm256_cvtepu8_epi32(v));
}
inline float load1(const uint8_t* p, bool is_signed) {
  return is_signed ? float(*reinterpret_cast<const int8_t*>(p)) : float(*p);
}
}  // namespace

void qdq_add_avx2(const void* a, bool a_signed, float a_scale, int32_t a_zp, const void* b,
                  bool b_signed, float b_scale, int32_t b_zp, int64_t n, bool relu,
                  float y_scale, int32_t y_zp, bool y_signed, void* out) {
  const float lo = y_signed ? float(-128 - y_zp) : float(0 - y_zp);
  const float hi = y_signed ? float(127 - y_zp) : float(255 - y_zp);
  const float fa = float(a_zp), fb = float(b_zp);
  const __m256 vl = _mm256_set1_ps(lo), vh = _mm256_set1_ps(hi), vsy = _mm256_set1_ps(y_scale);
  const __m256 vfa = _mm256_set1_ps(fa), vfb = _mm256_set1_ps(fb);
  const __m256 vsa = _mm256_set1_ps(a_scale), vsb = _mm256_set1_ps(b_scale);
  const __m256 zero = _mm256_setzero_ps();
  const __m256i vz = _mm256_set1_epi32(y_zp);
  const uint8_t* pa = static_cast<const uint8_t*>(a);
  const uint8_t* pb = static_cast<const uint8_t*>(b);
  auto one = [&](int64_t i) {
    const __m256 va = _mm256_mul_ps(_mm256_sub_ps(load8(pa + i, a_signed), vfa), vsa);
    const __m256 vb = _mm256_mul_ps(_mm256_sub_ps(load8(pb + i, b_signed), vfb), vsb);
    __m256 v = _mm256_add_ps(va, vb);
    if (relu) v = _mm256_max_ps(v, zero);  // no NaN: finite operands
    v = _mm256_min_ps(vh, _mm256_max_ps(_mm256_div_ps(v, vsy), vl));
    return round_add_zp(v, vz);
  };
  uint8_t* o = static_cast<uint8_t*>(out);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) store16(one(i), one(i + 8), y_signed, o + i);
  for (; i < n; ++i) {
    const float va = (load1(pa + i, a_signed) - fa) * a_scale;
    const float vb = (load1(pb + i, b_signed) - fb) * b_scale;
    float v = va + vb;
    if (relu) v = std::max(v, 0.0f);
    v = v / y_scale;
    if (y_signed)
      reinterpret_cast<int8_t*>(o)[i] = finish<int8_t>(v, lo, hi, y_zp);
    else
      o[i] = finish<uint8_t>(v, lo, hi, y_zp);
  }
}

bool qlinear_row_avx2(const int32_t* ar, int64_t N, const int32_t* zc, const float* scale,
                      const float* bias, float* o) {
  // ar in (-2^30, 2^30) <=> not (ar > 2^30 - 1 or ar < -2^30 + 1)
  const __m256i hi = _mm256_set1_epi32((1 << 30) - 1), lo = _mm256_set1_epi32(-(1 << 30) + 1);
  __m256i bad = _mm256_setzero_si256();
  int64_t n = 0;
  for (; n + 8 <= N; n += 8) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ar + n));
    bad = _mm256_or_si256(bad, _mm256_or_si256(_mm256_cmpgt_epi32(a, hi),
                                                _mm256_cmpgt_epi32(lo, a)));
    const __m256i d =
        _mm256_sub_epi32(a, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(zc + n)));
    __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(d), _mm256_loadu_ps(scale + n));
    if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + n));
    _mm256_storeu_ps(o + n, v);
  }
  bool ok = _mm256_testz_si256(bad, bad);
  for (; n < N; ++n) {
    ok = ok && ar[n] < (int32_t(1) << 30) && ar[n] > -(int32_t(1) << 30);
    const float v = static_cast<float>(ar[n] - zc[n]) * scale[n];
    o[n] = bias ? v + bias[n] : v;
  }
  return ok;
}

}  // namespace fastq
