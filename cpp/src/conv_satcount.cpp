// Driver of the saturation-analysis conv (conv_satcount.h): conv.cpp's im2col stage hands
// each group's rows to the satcount GEMM driver (its tile kernels, fixed-order count sums),
// whose [M, OC/group] results are scattered to NCHW. Plus the one-pass error reduction the
// saturation analysis reads per layer (sequential: sums never depend on the thread count).
#include "fastq/conv_satcount.h"

#include <cstdlib>
#include <vector>

#include "fastq/satcount.h"
#include "fastq/threads.h"
#include "fastq/transpose.h"

namespace fastq {

void conv_u8s8_satcount(const uint8_t* x, const ConvShape& s, const PackedConv& w,
                        uint8_t x_zp, int32_t* c_sat, int32_t* c_exact, int64_t* limit_counts,
                        Impl impl) {
  satcount_kernel(impl);  // an impl without the kernel fails before any work
  const int64_t OCg = s.OCg(), OHW = s.OH() * s.OW();
  std::vector<int32_t> sat, exact;
  conv_im2col_groups(x, s, w, x_zp, [&](int64_t g, const uint8_t* a, int64_t M) {
    sat.resize(static_cast<size_t>(M * OCg));
    exact.resize(static_cast<size_t>(M * OCg));
    gemm_u8s8_satcount(a, M, w.K(), *w.groups[g], sat.data(), exact.data(),
                       limit_counts + g * OCg, impl);
    // [M, OCg] rows (m = n*OHW + p) -> planes [n, g*OCg + j, p]
    parallel_for(s.N, [&](int64_t n) {
      const int64_t src = n * OHW * OCg, dst = (n * s.OC + g * OCg) * OHW;
      transpose2d(sat.data() + src, OHW, OCg, OCg, c_sat + dst, OHW);
      transpose2d(exact.data() + src, OHW, OCg, OCg, c_exact + dst, OHW);
    });
  });
}

AccErrorStats acc_error_stats(const int32_t* target, const int32_t* base, int64_t outer,
                              int64_t C, int64_t inner, const int64_t* zc, const double* scale,
                              const double* bias) {
  AccErrorStats r;
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t c = 0; c < C; ++c) {
      const int64_t off = (o * C + c) * inner;
      const int32_t* t = target + off;
      const int32_t* b = base + off;
      const double sc = scale[c], bi = bias ? bias[c] : 0.0;
      const int64_t z = zc[c];
      int64_t changed = 0, max_abs = r.max_abs;
      double sum_abs = 0, sig = 0, d2 = 0;
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t d = int64_t(t[i]) - int64_t(b[i]);
        const int64_t ad = d < 0 ? -d : d;
        changed += d != 0;
        max_abs = ad > max_abs ? ad : max_abs;
        sum_abs += static_cast<double>(ad);
        d2 += static_cast<double>(d) * static_cast<double>(d);
        const double y = static_cast<double>(int64_t(b[i]) - z) * sc + bi;
        sig += y * y;
      }
      r.changed += changed;
      r.max_abs = max_abs;
      r.sum_abs += sum_abs;
      r.signal += sig;
      r.noise += d2 * sc * sc;
    }
  }
  return r;
}

}  // namespace fastq
