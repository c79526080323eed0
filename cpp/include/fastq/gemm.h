// int8 GEMM: C[M,N] (s32) = sum_k A[M,K] (u8) * B[K,N] (s8) under an Arith (types.h).
//
// Packed B (the one layout every impl reads): K padded with zeros to Kp = round_up(K, 4),
// N padded to Np = round_up(N, 16). Panels of 16 columns; inside a panel, groups of 4
// consecutive k; inside a group, 16 columns x 4 bytes:
//     data[((n / 16) * (Kp / 4) + k / 4) * 64 + (n % 16) * 4 + k % 4] = B[k][n]
// One 32-bit lane holds 4 consecutive k of one column: vpdpbusd sums all 4 exactly, while
// vpmaddubsw sums the pairs (k, k+1) for even k and saturates each to s16, which is
// exactly the sat16pair pairing. Zero padding leaves both arithmetics' sums unchanged.
//
// A is read as rows of Kp bytes whose tail k >= K is zero; the driver (gemm.cpp) copies A
// into such a buffer when the caller's A is not already padded.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "fastq/types.h"

namespace fastq {

struct AlignedFree {
  void operator()(void* p) const;
};
void* aligned_alloc64(size_t bytes);  // zero-filled, 64-byte aligned
template <class T>
using AlignedPtr = std::unique_ptr<T[], AlignedFree>;
template <class T>
AlignedPtr<T> make_aligned(size_t count) {
  return AlignedPtr<T>(static_cast<T*>(aligned_alloc64(count * sizeof(T))));
}

constexpr int64_t kPanel = 16;  // columns per packed panel
constexpr int64_t kGroup = 4;   // k per 32-bit lane

struct PackedB {
  int64_t K = 0, N = 0, Kp = 0, Np = 0;
  AlignedPtr<int8_t> data;       // Np * Kp bytes, layout above
  std::vector<int32_t> colsum;   // sum_k B[k][n], for zero-point algebra (size N)
  // sat_threshold[p * (Kp / 4) + g]: the largest activation byte A such that no pair
  // (k, k+1) of k-group g in panel p can reach an int16 limit when both of its activations
  // are <= A: a pair of one sign (zeros count as either) sums to at most A * (|w_k| +
  // |w_k+1|) in magnitude, so A = min(255, 32766 / that weight sum over the group's pairs);
  // a pair of opposite signs never exceeds 255 * 128 = 32640. Where a tile's activations of
  // the group are all <= it, sat16pair equals exact32 and no pair hits a limit: the
  // saturation-count kernel skips its counting there.
  std::vector<uint8_t> sat_threshold;
  const int8_t* panel(int64_t p) const { return data.get() + p * Kp * kPanel; }
  // Whether some input of u8 activations can bring a pair to an int16 limit in sat16pair:
  // a k group's threshold under 255. Without, sat16pair sums equal exact32 ones on any input.
  bool can_saturate() const {
    for (uint8_t t : sat_threshold)
      if (t < 255) return true;
    return false;
  }
};

// Packs B given element strides (in elements) so any numpy layout packs without a copy.
std::shared_ptr<PackedB> pack_b(const int8_t* b, int64_t K, int64_t N, int64_t stride_k,
                                int64_t stride_n);

// What a kernel computes: rows [0, M) of A (row stride lda >= Kp, zero tail), panels
// [p0, p1) of B, all of K; writes C[m][n] for the columns of those panels that are < N.
// Requantizing store of a tile (requant.h's formula per column n: float(int32(acc - z32[n]))
// * mult[n], clamp, round half to even, + y_zp): row m, column n goes to out[m * ldo + n] as
// u8 (s8 when y_signed) and C is not written. Only the AVX-512 kernels honour it; drivers set
// it only for Impl::Avx512Vnni (the other kernels write C and leave requantization to them).
struct RequantStore {
  const int32_t* z32;
  const float* mult;
  int32_t y_zp;
  bool y_signed;
  uint8_t* out;
  int64_t ldo;
};

struct GemmTile {
  const uint8_t* a;
  int64_t lda;
  int64_t m;
  const PackedB* b;
  int64_t p0, p1;
  int32_t* c;
  int64_t ldc;
  const RequantStore* rq = nullptr;
};

using GemmKernel = void (*)(const GemmTile&);

// Scalar references: the specification of each Arith (src/ref/gemm_ref.cpp).
void gemm_u8s8_exact32_ref(const GemmTile& t);
void gemm_u8s8_sat16pair_ref(const GemmTile& t);
// AVX2: sat16pair natively (vpmaddubsw + vpmaddwd); exact32 by splitting A into nibbles so
// no vpmaddubsw pair can saturate (src/avx2/gemm_avx2.cpp).
void gemm_u8s8_exact32_avx2(const GemmTile& t);
void gemm_u8s8_sat16pair_avx2(const GemmTile& t);
// AVX-512: exact32 with vpdpbusd; sat16pair with 512-bit vpmaddubsw + vpdpwssd
// (src/avx512vnni/gemm_avx512vnni.cpp).
void gemm_u8s8_exact32_avx512vnni(const GemmTile& t);
void gemm_u8s8_sat16pair_avx512vnni(const GemmTile& t);

// Implicit-GEMM conv tile (conv_nhwc.cpp): the same sums as a GemmTile whose A row r is the
// concatenation, over taps t, of the tap_k bytes at rows[r * taps + t] (an NHWC input pixel,
// or a row of the zero point for padding) -- the im2col row, never materialized.
// tap_k is a multiple of kGroup and b->Kp == taps * tap_k.
struct ImplicitTile {
  const uint8_t* const* rows;  // [m][taps]
  int64_t taps, tap_k;
  int64_t m;
  const PackedB* b;
  int64_t p0, p1;
  int32_t* c;
  int64_t ldc;
  const RequantStore* rq = nullptr;  // as GemmTile::rq
};
using ImplicitKernel = void (*)(const ImplicitTile&);
void conv_implicit_exact32_avx512vnni(const ImplicitTile& t);
void conv_implicit_sat16pair_avx512vnni(const ImplicitTile& t);
// nullptr when `impl` has no implicit-GEMM kernel (callers then run im2col + gemm_kernel).
ImplicitKernel implicit_kernel(Impl impl, Arith arith);

// The dispatch table (dispatch.cpp). Throws std::invalid_argument naming the missing CPU
// feature when this host cannot run `impl`.
GemmKernel gemm_kernel(Impl impl, Arith arith);

// The driver's work split, shared by every GEMM-shaped kernel family: pads A (rows of Kp
// bytes, zero tail) when needed, cuts rows into blocks and panels into ranges, and calls
// fn once per tile, on up to num_threads() threads. Tiles cover disjoint rows x columns.
struct TileRange {
  const uint8_t* a;  // first row of the block (padded copy when needed)
  int64_t lda;
  int64_t row0, m;   // rows [row0, row0 + m)
  int64_t p0, p1;    // panels [p0, p1)
  int64_t row_block; // row0 / row block size, in [0, gemm_row_blocks(M))
};
int64_t gemm_row_blocks(int64_t M);
void for_each_gemm_tile(const uint8_t* a, int64_t M, int64_t lda, const PackedB& b,
                        const std::function<void(const TileRange&)>& fn);

// Driver: pads A when needed, splits into tiles across threads, calls the kernel.
// a: M rows of K bytes with row stride lda (elements). c: M x N, row stride ldc.
void gemm_u8s8(const uint8_t* a, int64_t M, int64_t lda, const PackedB& b, int32_t* c,
               int64_t ldc, Impl impl, Arith arith);

// Quantized-linear epilogue over the raw sums (portable, one implementation for all impls):
//   out[m][n] = float(acc[m][n] - a_zp * colsum[n]) * (a_scale * w_scale[n]) + bias[n]
// computed as: d = int64 difference; v = float(d); s = a_scale * w_scale[n] (float);
// out = v * s, then + bias[n] when bias is given. No FMA contraction (-ffp-contract=off).
void qlinear_epilogue(const int32_t* acc, int64_t M, int64_t N, const int32_t* colsum,
                      int32_t a_zp, float a_scale, const float* w_scales, int64_t n_scales,
                      const float* bias, float* out);

// That epilogue's per-column terms, built once for N columns (colsum, w_scales and bias
// point at the first of them; n_scales == 1: one scale for all), and its rows: row(acc,
// out) writes N floats of one row. qlinear_epilogue and the NHWC conv's float output
// (conv_nhwc.cpp) both use it, so they give the same floats.
// One row of that epilogue in a vector unit: o[n] = float(ar[n] - zc[n]) * scale[n]
// (+ bias[n]) with int32 zc (|zc| < 2^30), the same floats as the scalar int64 formula.
// False -- o then partly written -- when the host has no AVX2 or some |ar[n]| >= 2^30: the
// caller computes the row in int64.
bool float_row_vec(const int32_t* ar, int64_t N, const int32_t* zc, const float* scale,
                   const float* bias, float* o);
// zc as the int32 that float_row_vec takes when every |zc[n]| < 2^30, else empty.
std::vector<int32_t> small_zc32(const int64_t* zc, int64_t N);

class QlinearEpilogue {
 public:
  QlinearEpilogue(const int32_t* colsum, int64_t N, int32_t a_zp, float a_scale,
                  const float* w_scales, int64_t n_scales, const float* bias);
  void row(const int32_t* acc, float* out) const;

 private:
  int64_t n_;
  const float* bias_;
  std::vector<float> scale_;
  std::vector<int64_t> zcomp_;
  std::vector<int32_t> zc32_;  // zcomp as int32 when every |zcomp| < 2^30, else empty
};

// Full quantized linear layer: raw sums then the epilogue. A signed (s8) activation is
// shifted to u8 by +128 (xor 0x80) before the GEMM and its zero point by +128 after, which
// is the -128*colsum compensation; sat16pair then saturates on the shifted values, as the
// hardware does.
void qlinear(const void* a, bool a_signed, int64_t M, int64_t lda, const PackedB& b,
             int32_t a_zp, float a_scale, const float* w_scales, int64_t n_scales,
             const float* bias, float* out, Impl impl, Arith arith);

}  // namespace fastq
