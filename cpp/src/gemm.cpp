// Portable GEMM driver: weight packing, A padding, tiling across threads, and the quantized
// linear epilogue. Kernels only compute raw sums; all zero-point algebra lives here.
// Tiles write disjoint blocks of C, so results are identical for any thread count.
#include "fastq/gemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>

#include "fastq/cpu_features.h"
#include "fastq/scratch.h"
#include "fastq/threads.h"

namespace fastq {

void AlignedFree::operator()(void* p) const { std::free(p); }

void* aligned_alloc64(size_t bytes) {
  size_t sz = round_up(static_cast<int64_t>(std::max<size_t>(bytes, 1)), 64);
  void* p = std::aligned_alloc(64, sz);
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, sz);
  return p;
}

std::shared_ptr<PackedB> pack_b(const int8_t* b, int64_t K, int64_t N, int64_t sk,
                                int64_t sn) {
  auto pb = std::make_shared<PackedB>();
  pb->K = K;
  pb->N = N;
  pb->Kp = round_up(std::max<int64_t>(K, 1), kGroup);
  pb->Np = round_up(std::max<int64_t>(N, 1), kPanel);
  pb->data = make_aligned<int8_t>(static_cast<size_t>(pb->Kp * pb->Np));
  pb->colsum.assign(static_cast<size_t>(N), 0);
  int8_t* d = pb->data.get();
  for (int64_t n = 0; n < N; ++n) {
    int8_t* panel = d + (n / kPanel) * pb->Kp * kPanel + (n % kPanel) * kGroup;
    int32_t s = 0;
    for (int64_t k = 0; k < K; ++k) {
      int8_t v = b[k * sk + n * sn];
      panel[(k / kGroup) * kPanel * kGroup + k % kGroup] = v;
      s += v;
    }
    pb->colsum[n] = s;
  }
  const int64_t groups = pb->Kp / kGroup, panels = pb->Np / kPanel;
  pb->sat_threshold.assign(static_cast<size_t>(panels * groups), 255);
  for (int64_t p = 0; p < panels; ++p)
    for (int64_t g = 0; g < groups; ++g) {
      const int8_t* q = d + (p * groups + g) * kPanel * kGroup;
      int widest = 0;  // the largest |w_k| + |w_k+1| over pairs of one sign
      for (int64_t j = 0; j < kPanel * kGroup; j += 2) {
        const int w0 = q[j], w1 = q[j + 1];
        if ((w0 < 0 && w1 > 0) || (w0 > 0 && w1 < 0)) continue;
        widest = std::max(widest, std::abs(w0) + std::abs(w1));
      }
      if (widest > 0)
        pb->sat_threshold[p * groups + g] = static_cast<uint8_t>(std::min(255, 32766 / widest));
    }
  return pb;
}

namespace {

// Work split: enough tiles to keep every thread busy, big enough to amortize the call.
// Rows are split in blocks of kRowBlock; panels in blocks chosen so the tile count is
// at least 4x the threads when the problem allows it.
constexpr int64_t kRowBlock = 96;

}  // namespace

int64_t gemm_row_blocks(int64_t M) { return (M + kRowBlock - 1) / kRowBlock; }

void for_each_gemm_tile(const uint8_t* a, int64_t M, int64_t lda, const PackedB& b,
                        const std::function<void(const TileRange&)>& fn) {
  if (M == 0 || b.N == 0) return;
  const int64_t Kp = b.Kp;
  // A must be rows of Kp bytes with a zero tail; copy when the caller's rows are not.
  const uint8_t* ap = a;
  int64_t alda = lda;
  if (b.K != Kp || b.K == 0) {
    uint8_t* apad = scratch_as<uint8_t>(Scratch::GemmA, static_cast<size_t>(M * Kp));
    for (int64_t m = 0; m < M; ++m) {
      std::memcpy(apad + m * Kp, a + m * lda, b.K);
      std::memset(apad + m * Kp + b.K, 0, Kp - b.K);
    }
    ap = apad;
    alda = Kp;
  }
  const int64_t panels = b.Np / kPanel;
  const int64_t threads = num_threads();
  const double work = 2.0 * double(M) * double(b.N) * double(b.K);
  const int64_t row_blocks = gemm_row_blocks(M);
  int64_t panel_block = panels;
  if (threads > 1 && work > 2e6) {
    // Split panels so that row_blocks * panel_blocks >= 4 * threads where possible;
    // keep panel blocks even so 32-column micro-tiles stay whole.
    int64_t want = (4 * threads + row_blocks - 1) / row_blocks;
    panel_block = std::max<int64_t>(2, round_up((panels + want - 1) / want, 2));
  }
  const int64_t panel_blocks = (panels + panel_block - 1) / panel_block;
  const int64_t tiles = row_blocks * panel_blocks;
  auto run_tile = [&](int64_t t) {
    const int64_t rb = t / panel_blocks, pb = t % panel_blocks;
    TileRange r;
    r.row_block = rb;
    r.row0 = rb * kRowBlock;
    r.m = std::min(kRowBlock, M - r.row0);
    r.a = ap + r.row0 * alda;
    r.lda = alda;
    r.p0 = pb * panel_block;
    r.p1 = std::min(panels, r.p0 + panel_block);
    fn(r);
  };
  if (threads > 1 && work > 2e6 && tiles > 1)
    parallel_for(tiles, run_tile);
  else
    for (int64_t t = 0; t < tiles; ++t) run_tile(t);
}

void gemm_u8s8(const uint8_t* a, int64_t M, int64_t lda, const PackedB& b, int32_t* c,
               int64_t ldc, Impl impl, Arith arith) {
  GemmKernel kernel = gemm_kernel(impl, arith);
  for_each_gemm_tile(a, M, lda, b, [&](const TileRange& r) {
    kernel(GemmTile{r.a, r.lda, r.m, &b, r.p0, r.p1, c + r.row0 * ldc, ldc});
  });
}

QlinearEpilogue::QlinearEpilogue(const int32_t* colsum, int64_t N, int32_t a_zp,
                                 float a_scale, const float* w_scales, int64_t n_scales,
                                 const float* bias)
    : n_(N), bias_(bias), scale_(static_cast<size_t>(N)), zcomp_(static_cast<size_t>(N)) {
  for (int64_t n = 0; n < N; ++n) {
    scale_[n] = a_scale * w_scales[n_scales == 1 ? 0 : n];
    zcomp_[n] = int64_t(a_zp) * colsum[n];
  }
  // |acc| < 2^31 always; when |zp * colsum| < 2^30 too, the difference is computed in
  // int32 for every acc with |acc| < 2^30 -- checked per row -- which vectorizes (int64 ->
  // float does not on baseline x86-64). Same values either way, so same floats.
  zc32_ = small_zc32(zcomp_.data(), N);
}

std::vector<int32_t> small_zc32(const int64_t* zc, int64_t N) {
  constexpr int64_t lim = int64_t(1) << 30;
  for (int64_t n = 0; n < N; ++n)
    if (zc[n] >= lim || zc[n] <= -lim) return {};
  return std::vector<int32_t>(zc, zc + N);
}

#if defined(FASTQ_HAVE_X86)
// avx2/requant_avx2.cpp
bool qlinear_row_avx2(const int32_t* ar, int64_t N, const int32_t* zc, const float* scale,
                      const float* bias, float* o);
#endif

bool float_row_vec(const int32_t* ar, int64_t N, const int32_t* zc, const float* scale,
                   const float* bias, float* o) {
#if defined(FASTQ_HAVE_X86)
  static const bool avx2 = cpu_features().avx2 && cpu_features().os_avx;
  return avx2 && qlinear_row_avx2(ar, N, zc, scale, bias, o);
#else
  (void)ar, (void)N, (void)zc, (void)scale, (void)bias, (void)o;
  return false;
#endif
}

void QlinearEpilogue::row(const int32_t* ar, float* o) const {
  const int64_t N = n_;
  const float* scale = scale_.data();
  if (!zc32_.empty() && float_row_vec(ar, N, zc32_.data(), scale, bias_, o)) return;
  bool small = !zc32_.empty();
  for (int64_t n = 0; small && n < N; ++n)
    small = ar[n] < (int32_t(1) << 30) && ar[n] > -(int32_t(1) << 30);
  if (small) {
    const int32_t* zc = zc32_.data();
    for (int64_t n = 0; n < N; ++n) o[n] = static_cast<float>(ar[n] - zc[n]) * scale[n];
  } else {
    const int64_t* zc = zcomp_.data();
    for (int64_t n = 0; n < N; ++n)
      o[n] = static_cast<float>(int64_t(ar[n]) - zc[n]) * scale[n];
  }
  if (bias_)
    for (int64_t n = 0; n < N; ++n) o[n] = o[n] + bias_[n];
}

void qlinear_epilogue(const int32_t* acc, int64_t M, int64_t N, const int32_t* colsum,
                      int32_t a_zp, float a_scale, const float* w_scales, int64_t n_scales,
                      const float* bias, float* out) {
  const QlinearEpilogue epi(colsum, N, a_zp, a_scale, w_scales, n_scales, bias);
  auto rows = [&](int64_t m) { epi.row(acc + m * N, out + m * N); };
  if (M * N > (1 << 16))
    parallel_for(M, rows);
  else
    for (int64_t m = 0; m < M; ++m) rows(m);
}

void qlinear(const void* a, bool a_signed, int64_t M, int64_t lda, const PackedB& b,
             int32_t a_zp, float a_scale, const float* w_scales, int64_t n_scales,
             const float* bias, float* out, Impl impl, Arith arith) {
  const uint8_t* au = static_cast<const uint8_t*>(a);
  int64_t alda = lda;
  if (a_signed) {
    uint8_t* shifted = scratch_as<uint8_t>(Scratch::QlinearA, static_cast<size_t>(M * b.K));
    for (int64_t m = 0; m < M; ++m)
      for (int64_t k = 0; k < b.K; ++k) shifted[m * b.K + k] = au[m * lda + k] ^ 0x80;
    au = shifted;
    alda = b.K;
    a_zp += 128;
  }
  int32_t* acc = scratch_as<int32_t>(Scratch::QlinearAcc, static_cast<size_t>(M * b.N));
  gemm_u8s8(au, M, alda, b, acc, b.N, impl, arith);
  qlinear_epilogue(acc, M, b.N, b.colsum.data(), a_zp, a_scale, w_scales, n_scales, bias, out);
}

}  // namespace fastq
