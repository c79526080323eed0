// Saturation-analysis bindings beyond the GEMM's (bind_gemm.cpp): conv_u8s8_satcount (raw
// sums in both arithmetics plus per-channel int16-limit counts, one pass), acc_error_stats
// (the per-layer error reduction over those sums) and conv/gemm_u8s8_satstats (both at once,
// the outputs never leaving C++). Same checks as conv_u8s8's binding.
#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "bindings.h"
#include "fastq/conv_satcount.h"
#include "fastq/satstats.h"

namespace fastq {
namespace {

// Per-channel real-value map of acc_error_stats: zc (int64), scale (float64), optional bias
// (float64), each of C entries. Returns the bias pointer (nullptr for None).
const double* check_epilogue(const py::array& zc, const py::array& scale,
                             const py::object& bias, int64_t C, py::array& bias_arr) {
  require_dtype<int64_t>(zc, "zc", "int64");
  require_dtype<double>(scale, "scale", "float64");
  for (const py::array* a : {&zc, &scale}) {
    require_ndim(*a, 1, "zc/scale");
    require_c_contiguous(*a, "zc/scale");
    if (a->shape(0) != C)
      throw std::invalid_argument("zc/scale have " + std::to_string(a->shape(0)) +
                                  " entries; expected " + std::to_string(C));
  }
  if (bias.is_none()) return nullptr;
  bias_arr = py::array(bias);
  require_dtype<double>(bias_arr, "bias", "float64");
  require_ndim(bias_arr, 1, "bias");
  require_c_contiguous(bias_arr, "bias");
  if (bias_arr.shape(0) != C)
    throw std::invalid_argument("bias has " + std::to_string(bias_arr.shape(0)) +
                                " entries; expected " + std::to_string(C));
  return static_cast<const double*>(bias_arr.data());
}

py::dict stats_dict(const AccErrorStats& r) {
  py::dict d;
  d["changed"] = r.changed;
  d["max_abs"] = r.max_abs;
  d["sum_abs"] = r.sum_abs;
  d["signal"] = r.signal;
  d["noise"] = r.noise;
  return d;
}

// (outer, C, inner) of a C-contiguous array around `axis` (C = its length), checked.
std::array<int64_t, 3> split_axis(const py::array& a, int64_t axis) {
  if (axis < 0 || axis >= a.ndim())
    throw std::invalid_argument("axis " + std::to_string(axis) + " out of range for " +
                                shape_str(a));
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= a.shape(i);
  for (int64_t i = axis + 1; i < a.ndim(); ++i) inner *= a.shape(i);
  return {outer, static_cast<int64_t>(a.shape(axis)), inner};
}

}  // namespace

void bind_satcount(py::module_& m) {
  m.def("conv_u8s8_satcount", [](py::array x, const PackedConv& w,
                                 std::array<int64_t, 2> strides, std::array<int64_t, 4> pads,
                                 std::array<int64_t, 2> dil, int x_zp, const std::string& impl) {
    require_dtype<uint8_t>(x, "x", "uint8");
    ConvShape s = make_shape(x, w.OC, w.KH, w.KW, w.group, strides, pads, dil);
    require_conv_channels(s, w);
    require_u8_zero_point(x_zp);
    Impl im = parse_impl(impl);
    py::array_t<int32_t> c_sat({s.N, s.OC, s.OH(), s.OW()});
    py::array_t<int32_t> c_exact({s.N, s.OC, s.OH(), s.OW()});
    py::array_t<int64_t> counts(static_cast<py::ssize_t>(s.OC));
    const uint8_t* xp = static_cast<const uint8_t*>(x.data());
    int32_t* sp = c_sat.mutable_data();
    int32_t* ep = c_exact.mutable_data();
    int64_t* cp = counts.mutable_data();
    {
      py::gil_scoped_release nogil;
      conv_u8s8_satcount(xp, s, w, static_cast<uint8_t>(x_zp), sp, ep, cp, im);
    }
    return py::make_tuple(c_sat, c_exact, counts);
  }, py::arg("x"), py::arg("w"), py::arg("strides"), py::arg("pads"), py::arg("dilations"),
     py::arg("x_zero_point"), py::arg("impl"),
     "(sat16pair sums, exact32 sums, per-output-channel count of pair sums at an int16 limit)");

  m.def("acc_error_stats", [](py::array target, py::array base, int64_t axis, py::array zc,
                              py::array scale, py::object bias) {
    require_dtype<int32_t>(target, "target", "int32");
    require_dtype<int32_t>(base, "base", "int32");
    require_c_contiguous(target, "target");
    require_c_contiguous(base, "base");
    if (target.ndim() != base.ndim() || shape_str(target) != shape_str(base))
      throw std::invalid_argument("target " + shape_str(target) + " and base " +
                                  shape_str(base) + " differ in shape");
    const auto [outer, C, inner] = split_axis(target, axis);
    py::array bias_arr;
    const double* bp = check_epilogue(zc, scale, bias, C, bias_arr);
    const int32_t* tp = static_cast<const int32_t*>(target.data());
    const int32_t* bsp = static_cast<const int32_t*>(base.data());
    const int64_t* zp = static_cast<const int64_t*>(zc.data());
    const double* scp = static_cast<const double*>(scale.data());
    AccErrorStats r;
    {
      py::gil_scoped_release nogil;
      r = acc_error_stats(tp, bsp, outer, C, inner, zp, scp, bp);
    }
    return stats_dict(r);
  }, py::arg("target"), py::arg("base"), py::arg("axis"), py::arg("zc"), py::arg("scale"),
     py::arg("bias"),
     "{changed, max_abs, sum_abs, signal, noise} of int32 sums target vs base; channel axis "
     "`axis`; y = (acc - zc[c]) * scale[c] + bias[c]");

  m.def("conv_u8s8_satstats", [](py::array x, const PackedConv& w,
                                 std::array<int64_t, 2> strides, std::array<int64_t, 4> pads,
                                 std::array<int64_t, 2> dil, int x_zp, const std::string& impl,
                                 bool base_is_exact, py::array zc, py::array scale,
                                 py::object bias, bool want_base) {
    require_dtype<uint8_t>(x, "x", "uint8");
    ConvShape s = make_shape(x, w.OC, w.KH, w.KW, w.group, strides, pads, dil);
    require_conv_channels(s, w);
    require_u8_zero_point(x_zp);
    py::array bias_arr;
    const double* bp = check_epilogue(zc, scale, bias, w.OC, bias_arr);
    py::array_t<int64_t> counts(static_cast<py::ssize_t>(w.OC));
    SatStatsArgs a{parse_impl(impl), base_is_exact, static_cast<const int64_t*>(zc.data()),
                   static_cast<const double*>(scale.data()), bp, counts.mutable_data()};
    py::object base = py::none();
    if (want_base) {
      py::array_t<int32_t> b({s.N, s.OC, s.OH(), s.OW()});
      a.base_out = b.mutable_data();
      base = b;
    }
    const uint8_t* xp = static_cast<const uint8_t*>(x.data());
    AccErrorStats r;
    {
      py::gil_scoped_release nogil;
      r = conv_u8s8_satstats(xp, s, w, static_cast<uint8_t>(x_zp), a);
    }
    return py::make_tuple(counts, stats_dict(r), base);
  }, py::arg("x"), py::arg("w"), py::arg("strides"), py::arg("pads"), py::arg("dilations"),
     py::arg("x_zero_point"), py::arg("impl"), py::arg("base_is_exact"), py::arg("zc"),
     py::arg("scale"), py::arg("bias"), py::arg("want_base") = false,
     "(per-channel int16-limit counts, acc_error_stats of the layer, the base arith's raw "
     "sums [N, OC, OH, OW] if want_base else None)");

  m.def("gemm_u8s8_satstats", [](py::array a, const PackedB& b, const std::string& impl,
                                 bool base_is_exact, py::array zc, py::array scale,
                                 py::object bias, bool want_base) {
    require_dtype<uint8_t>(a, "a", "uint8");
    require_ndim(a, 2, "a");
    require_c_contiguous(a, "a");
    if (a.shape(1) != b.K)
      throw std::invalid_argument("a has K=" + std::to_string(a.shape(1)) +
                                  " but the packed weights have K=" + std::to_string(b.K));
    py::array bias_arr;
    const double* bp = check_epilogue(zc, scale, bias, b.N, bias_arr);
    py::array_t<int64_t> counts(static_cast<py::ssize_t>(b.N));
    SatStatsArgs args{parse_impl(impl), base_is_exact, static_cast<const int64_t*>(zc.data()),
                      static_cast<const double*>(scale.data()), bp, counts.mutable_data()};
    const uint8_t* ap = static_cast<const uint8_t*>(a.data());
    const int64_t M = a.shape(0);
    py::object base = py::none();
    if (want_base) {
      py::array_t<int32_t> bo({static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(b.N)});
      args.base_out = bo.mutable_data();
      base = bo;
    }
    AccErrorStats r;
    {
      py::gil_scoped_release nogil;
      r = gemm_u8s8_satstats(ap, M, b, args);
    }
    return py::make_tuple(counts, stats_dict(r), base);
  }, py::arg("a"), py::arg("b"), py::arg("impl"), py::arg("base_is_exact"), py::arg("zc"),
     py::arg("scale"), py::arg("bias"), py::arg("want_base") = false,
     "(per-column int16-limit counts, acc_error_stats of the GEMM, the base arith's raw sums "
     "[M, N] if want_base else None)");

  m.def("qconv_requant_satstats_nhwc", [](py::array x, const PackedConv& w,
                                          std::array<int64_t, 2> strides,
                                          std::array<int64_t, 4> pads,
                                          std::array<int64_t, 2> dil, int x_zp,
                                          const std::string& layout, const std::string& impl,
                                          bool base_is_exact, py::array scale,
                                          py::array zcomp, py::array mult, int32_t y_zp,
                                          bool y_signed, py::array totals, py::array ftotals) {
    bool x_nhwc = true;
    const ConvShape s = nhwc_shape(x, layout, w, strides, pads, dil, x_nhwc);
    require_u8_zero_point(x_zp);
    py::array none_bias;
    check_epilogue(zcomp, scale, py::none(), s.OC, none_bias);
    require_dtype<float>(mult, "mult", "float32");
    require_c_contiguous(mult, "mult");
    if (mult.ndim() != 1 || mult.shape(0) != s.OC)
      throw std::invalid_argument("mult needs one entry per output channel");
    const int32_t lo = y_signed ? -128 : 0, hi = y_signed ? 127 : 255;
    if (y_zp < lo || y_zp > hi) throw std::invalid_argument("y_zero_point out of range");
    require_dtype<int64_t>(totals, "totals", "int64");
    require_dtype<double>(ftotals, "ftotals", "float64");
    require_c_contiguous(totals, "totals");
    require_c_contiguous(ftotals, "ftotals");
    if (totals.ndim() != 1 || totals.shape(0) != 4 + s.OC || ftotals.ndim() != 1 ||
        ftotals.shape(0) != 2)
      throw std::invalid_argument("totals needs 4 + OC int64 entries, ftotals 2 float64");
    if (!totals.writeable() || !ftotals.writeable())
      throw std::invalid_argument("totals / ftotals must be writeable");
    const std::vector<py::ssize_t> shape{s.N, s.OH(), s.OW(), s.OC};
    py::array out = y_signed ? py::array(py::dtype::of<int8_t>(), shape)
                             : py::array(py::dtype::of<uint8_t>(), shape);
    std::vector<int64_t> counts(static_cast<size_t>(s.OC));
    const int64_t* zp = static_cast<const int64_t*>(zcomp.data());
    SatStatsArgs a{parse_impl(impl), base_is_exact, zp, static_cast<const double*>(scale.data()),
                   nullptr, counts.data()};
    RequantOut r{zp, static_cast<const float*>(mult.data()), y_zp, y_signed, out.mutable_data()};
    const uint8_t* xp = static_cast<const uint8_t*>(x.data());
    int64_t* tp = static_cast<int64_t*>(totals.mutable_data());
    double* fp = static_cast<double*>(ftotals.mutable_data());
    {
      py::gil_scoped_release nogil;
      const AccErrorStats e = qconv_requant_satstats_nhwc(xp, x_nhwc, s, w,
                                                          static_cast<uint8_t>(x_zp), a, r);
      tp[0] += s.N * s.OC * s.OH() * s.OW();
      tp[1] += e.changed;
      tp[2] = std::max(tp[2], e.max_abs);
      tp[3] += static_cast<int64_t>(e.sum_abs);
      for (int64_t c = 0; c < s.OC; ++c) tp[4 + c] += counts[static_cast<size_t>(c)];
      fp[0] += e.signal;
      fp[1] += e.noise;
    }
    return out;
  }, py::arg("x"), py::arg("w"), py::arg("strides"), py::arg("pads"), py::arg("dilations"),
     py::arg("x_zero_point"), py::arg("layout"), py::arg("impl"), py::arg("base_is_exact"),
     py::arg("scale"), py::arg("zcomp"), py::arg("mult"), py::arg("y_zero_point"),
     py::arg("y_signed"), py::arg("totals"), py::arg("ftotals"),
     "A requantized conv layer's analysis pass in NHWC: returns its base-arith output "
     "[N, OH, OW, OC] (as qconv_requant_nhwc); adds the layer's figures into totals "
     "[outputs, changed, max_abs (max), sum_abs, limit counts per channel...] (int64) and "
     "ftotals [signal, noise] (float64); stats use zc = zcomp, no bias");

  m.def("row_error_stats", [](py::array target, py::array base, py::array zc, py::array scale,
                              py::object bias, const std::string& impl) {
    require_dtype<int32_t>(target, "target", "int32");
    require_dtype<int32_t>(base, "base", "int32");
    require_ndim(target, 2, "target");
    require_ndim(base, 2, "base");
    if (shape_str(target) != shape_str(base))
      throw std::invalid_argument("target " + shape_str(target) + " and base " +
                                  shape_str(base) + " differ in shape");
    const int64_t M = target.shape(0), C = target.shape(1);
    if (target.strides(1) != 4 || base.strides(1) != 4 ||
        target.strides(0) != base.strides(0) || target.strides(0) % 4 != 0 ||
        target.strides(0) < 4 * C)
      throw std::invalid_argument("target / base need contiguous rows and one row stride");
    const int64_t ld = target.strides(0) / 4;
    py::array bias_arr;
    const double* bp = check_epilogue(zc, scale, bias, C, bias_arr);
    const Impl im = parse_impl(impl);
    std::vector<double> zcd(static_cast<size_t>(C)), d2(static_cast<size_t>(C), 0.0);
    const int64_t* zp = static_cast<const int64_t*>(zc.data());
    for (int64_t c = 0; c < C; ++c) {
      if (zp[c] >= (int64_t(1) << 53) || zp[c] <= -(int64_t(1) << 53))
        throw std::invalid_argument("zc beyond 2^53");
      zcd[c] = static_cast<double>(zp[c]);
    }
    const RowStatsFn fn = row_stats_kernel(im);
    RowStats p;
    RowStatsArgs a{static_cast<const int32_t*>(target.data()),
                   static_cast<const int32_t*>(base.data()), M, C, ld, zcd.data(),
                   static_cast<const double*>(scale.data()), bp};
    {
      py::gil_scoped_release nogil;
      fn(a, p, d2.data());
    }
    py::dict d;
    d["changed"] = p.changed;
    d["max_abs"] = p.max_abs;
    d["sum_abs"] = p.sum_abs;
    d["signal"] = p.signal();
    d["noise"] = p.noise;
    d["lanes"] = std::vector<double>(p.sig, p.sig + kStatLanes);
    return d;
  }, py::arg("target"), py::arg("base"), py::arg("zc"), py::arg("scale"), py::arg("bias"),
     py::arg("impl"),
     "satstats.h's row-block reduction of [M, C] int32 sums (rows may be strided) with the "
     "given impl's build: {changed, max_abs, sum_abs, signal, noise, lanes}");

  m.def("acc_epilogue", [](py::array acc, int64_t axis, py::array zc, py::array scale,
                           py::object bias) {
    require_dtype<int32_t>(acc, "acc", "int32");
    require_c_contiguous(acc, "acc");
    const auto [outer, C, inner] = split_axis(acc, axis);
    require_dtype<int64_t>(zc, "zc", "int64");
    require_ndim(zc, 1, "zc");
    require_c_contiguous(zc, "zc");
    if (zc.shape(0) != C) throw std::invalid_argument("zc must have one entry per channel");
    check_scales(scale, C);
    if (scale.shape(0) != C) throw std::invalid_argument("scale must have one entry per channel");
    py::array bias_arr;
    const float* bp = optional_bias(bias, C, bias_arr);
    std::vector<py::ssize_t> shape(acc.shape(), acc.shape() + acc.ndim());
    py::array_t<float> out(shape);
    const int32_t* ap = static_cast<const int32_t*>(acc.data());
    const int64_t* zp = static_cast<const int64_t*>(zc.data());
    const float* sp = static_cast<const float*>(scale.data());
    float* op = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      acc_epilogue(ap, outer, C, inner, zp, sp, bp, op);
    }
    return out;
  }, py::arg("acc"), py::arg("axis"), py::arg("zc"), py::arg("scale"), py::arg("bias"),
     "float32 float(acc - zc[c]) * scale[c] (+ bias[c]), c along `axis`: the int8 layers' "
     "float epilogue over given raw sums");
}

}  // namespace fastq
