// Statistics bindings: per-channel reductions of x viewed as [outer, C, inner] (float32,
// C-contiguous, 3-D: Python reshapes), exact quantiles and histograms. Every function
// returns (result, nonfinite) so Python can raise with the tensor's name. `impl` is a
// concrete name; Python resolves "auto".
#include <string>
#include <utility>

#include "bindings.h"
#include "fastq/stats.h"

namespace fastq {
namespace {

void require_f32(const py::array& a, const char* what) {
  if (!same_dtype(a.dtype(), py::dtype::of<float>()))
    throw std::invalid_argument(std::string(what) + " must have dtype float32, got " +
                                std::string(py::str(a.dtype())));
}

Layout3 layout_of(const py::array& x) {
  require_f32(x, "x");
  require_ndim(x, 3, "x");
  require_c_contiguous(x, "x");
  Layout3 s;
  s.outer = x.shape(0);
  s.C = x.shape(1);
  s.inner = x.shape(2);
  return s;
}

}  // namespace

void bind_stats(py::module_& m) {
  m.def("stats_minmax", [](py::array x, const std::string& impl) {
    const Layout3 s = layout_of(x);
    const Impl im = parse_impl(impl);
    py::array_t<float> mn(s.C), mx(s.C);
    const float* p = static_cast<const float*>(x.data());
    float* a = mn.mutable_data();
    float* b = mx.mutable_data();
    bool nf;
    {
      py::gil_scoped_release nogil;
      nf = reduce_minmax(p, s, a, b, im);
    }
    return py::make_tuple(mn, mx, nf);
  }, py::arg("x").noconvert(), py::arg("impl"),
     "Per-channel (min, max, nonfinite) of x[outer, C, inner].");

  m.def("stats_absmax", [](py::array x, const std::string& impl) {
    const Layout3 s = layout_of(x);
    const Impl im = parse_impl(impl);
    py::array_t<float> r(s.C);
    const float* p = static_cast<const float*>(x.data());
    float* a = r.mutable_data();
    bool nf;
    {
      py::gil_scoped_release nogil;
      nf = reduce_absmax(p, s, a, im);
    }
    return py::make_tuple(r, nf);
  }, py::arg("x").noconvert(), py::arg("impl"),
     "Per-channel (max |x|, nonfinite) of x[outer, C, inner].");

  m.def("stats_sum", [](py::array x, const std::string& impl) {
    const Layout3 s = layout_of(x);
    const Impl im = parse_impl(impl);
    py::array_t<double> r(s.C);
    const float* p = static_cast<const float*>(x.data());
    double* a = r.mutable_data();
    bool nf;
    {
      py::gil_scoped_release nogil;
      nf = reduce_sum(p, s, a, im);
    }
    return py::make_tuple(r, nf);
  }, py::arg("x").noconvert(), py::arg("impl"),
     "Per-channel (sum in float64, nonfinite) of x[outer, C, inner].");

  m.def("stats_quantile", [](py::array x, double q, bool absval, const std::string& impl) {
    const Layout3 s = layout_of(x);
    const Impl im = parse_impl(impl);
    if (s.count_per_channel() == 0)
      throw std::invalid_argument("quantile of an empty tensor");
    py::array_t<float> r(s.C);
    const float* p = static_cast<const float*>(x.data());
    float* a = r.mutable_data();
    bool nf;
    {
      py::gil_scoped_release nogil;
      nf = quantile(p, s, q, absval, a, im);
    }
    return py::make_tuple(r, nf);
  }, py::arg("x").noconvert(), py::arg("q"), py::arg("absval"), py::arg("impl"),
     "Per-channel (numpy linear quantile of x or |x|, nonfinite) of x[outer, C, inner].");

  m.def("stats_histogram", [](py::array x, py::array edges, const std::string& impl) {
    require_f32(x, "x");
    require_ndim(x, 1, "x");
    require_c_contiguous(x, "x");
    require_f32(edges, "edges");
    require_ndim(edges, 1, "edges");
    require_c_contiguous(edges, "edges");
    if (edges.shape(0) < 2) throw std::invalid_argument("edges needs at least 2 entries");
    const Impl im = parse_impl(impl);
    const int64_t bins = edges.shape(0) - 1;
    py::array_t<int64_t> counts(bins + 2);
    int64_t* c = counts.mutable_data();
    std::fill(c, c + bins + 2, 0);
    const float* p = static_cast<const float*>(x.data());
    const float* e = static_cast<const float*>(edges.data());
    const int64_t n = x.shape(0);
    bool nf;
    {
      py::gil_scoped_release nogil;
      nf = histogram(p, n, e, bins, c, im);
    }
    return py::make_tuple(counts, nf);
  }, py::arg("x").noconvert(), py::arg("edges").noconvert(), py::arg("impl"),
     "(counts[bins + 2], nonfinite): counts[bins] = below edges[0], counts[bins+1] = above "
     "edges[-1] or NaN; last bin closed.");
}

}  // namespace fastq
