// Requantization bindings (requant.h): requantize (raw s32 sums -> u8/s8 layer output with
// ONNX Runtime's QLinearConv/QLinearMatMul rounding), quantize_f32 / dequantize_f32
// (per-tensor QuantizeLinear of float32, DequantizeLinear of u8/s8).
#include <string>

#include "bindings.h"
#include "fastq/requant.h"

namespace fastq {

void bind_requant(py::module_& m) {
  m.def("requantize", [](py::array acc, int64_t channel_axis, py::array zcomp, py::array mult,
                         int32_t y_zp, bool y_signed) {
    require_dtype<int32_t>(acc, "acc", "int32");
    require_c_contiguous(acc, "acc");
    require_dtype<int64_t>(zcomp, "zcomp", "int64");
    require_dtype<float>(mult, "mult", "float32");
    require_c_contiguous(zcomp, "zcomp");
    require_c_contiguous(mult, "mult");
    if (channel_axis < 0 || channel_axis >= acc.ndim())
      throw std::invalid_argument("channel_axis out of range for acc " + shape_str(acc));
    const int64_t C = acc.shape(channel_axis);
    int64_t outer = 1, inner = 1;
    for (int64_t i = 0; i < channel_axis; ++i) outer *= acc.shape(i);
    for (int64_t i = channel_axis + 1; i < acc.ndim(); ++i) inner *= acc.shape(i);
    if (zcomp.size() != C || mult.size() != C)
      throw std::invalid_argument("zcomp and mult need one entry per channel (" +
                                  std::to_string(C) + ")");
    const int32_t lo = y_signed ? -128 : 0, hi = y_signed ? 127 : 255;
    if (y_zp < lo || y_zp > hi) throw std::invalid_argument("y_zero_point out of range");
    py::array out = y_signed ? py::array(py::dtype::of<int8_t>(), acc.request().shape)
                             : py::array(py::dtype::of<uint8_t>(), acc.request().shape);
    const int32_t* ap = static_cast<const int32_t*>(acc.data());
    const int64_t* zp = static_cast<const int64_t*>(zcomp.data());
    const float* mp = static_cast<const float*>(mult.data());
    void* op = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      requantize(ap, outer, C, inner, zp, mp, y_zp, y_signed, op);
    }
    return out;
  }, py::arg("acc"), py::arg("channel_axis"), py::arg("zcomp"), py::arg("mult"),
     py::arg("y_zero_point"), py::arg("y_signed"));

  m.def("qdq_add", [](py::array a, float a_scale, int32_t a_zp, py::array b, float b_scale,
                      int32_t b_zp, bool relu, float y_scale, int32_t y_zp, bool y_signed) {
    auto is_s8 = [](const py::array& x, const char* what) {
      if (same_dtype(x.dtype(), py::dtype::of<int8_t>())) return true;
      require_dtype<uint8_t>(x, what, "uint8 or int8");
      return false;
    };
    const bool as = is_s8(a, "a"), bs = is_s8(b, "b");
    require_c_contiguous(a, "a");
    require_c_contiguous(b, "b");
    if (a.size() != b.size())
      throw std::invalid_argument("a " + shape_str(a) + " and b " + shape_str(b) +
                                  " must have the same number of elements");
    const int32_t lo = y_signed ? -128 : 0, hi = y_signed ? 127 : 255;
    if (y_zp < lo || y_zp > hi) throw std::invalid_argument("y_zero_point out of range");
    py::array out = y_signed ? py::array(py::dtype::of<int8_t>(), a.request().shape)
                             : py::array(py::dtype::of<uint8_t>(), a.request().shape);
    const void* ap = a.data();
    const void* bp = b.data();
    void* op = out.mutable_data();
    const int64_t n = a.size();
    {
      py::gil_scoped_release nogil;
      qdq_add(ap, as, a_scale, a_zp, bp, bs, b_scale, b_zp, n, relu, y_scale, y_zp, y_signed,
              op);
    }
    return out;
  }, py::arg("a"), py::arg("a_scale"), py::arg("a_zero_point"), py::arg("b"),
     py::arg("b_scale"), py::arg("b_zero_point"), py::arg("relu"), py::arg("y_scale"),
     py::arg("y_zero_point"), py::arg("y_signed"));

  m.def("dequantize_add_f32", [](py::array x, float scale, int32_t zp, py::array bias) {
    const bool is_signed = same_dtype(x.dtype(), py::dtype::of<int8_t>());
    if (!is_signed) require_dtype<uint8_t>(x, "x", "uint8 or int8");
    require_c_contiguous(x, "x");
    require_dtype<float>(bias, "bias", "float32");
    require_c_contiguous(bias, "bias");
    if (bias.ndim() != 1 || x.ndim() < 1 || x.shape(x.ndim() - 1) != bias.shape(0))
      throw std::invalid_argument("bias " + shape_str(bias) + " must be 1-D with the last "
                                  "dimension of x " + shape_str(x));
    py::array_t<float> out(x.request().shape);
    const int64_t N = bias.shape(0), rows = N ? x.size() / N : 0;
    const void* xp = x.data();
    const float* bp = static_cast<const float*>(bias.data());
    float* op = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      dequantize_add_f32(xp, is_signed, rows, N, scale, zp, bp, op);
    }
    return out;
  }, py::arg("x"), py::arg("scale"), py::arg("zero_point"), py::arg("bias"));

  m.def("quantize_f32", [](py::array x, float scale, int32_t zp, bool y_signed) {
    require_dtype<float>(x, "x", "float32");
    require_c_contiguous(x, "x");
    const int32_t lo = y_signed ? -128 : 0, hi = y_signed ? 127 : 255;
    if (zp < lo || zp > hi) throw std::invalid_argument("zero point out of range");
    py::array out = y_signed ? py::array(py::dtype::of<int8_t>(), x.request().shape)
                             : py::array(py::dtype::of<uint8_t>(), x.request().shape);
    const float* xp = static_cast<const float*>(x.data());
    const int64_t n = x.size();
    void* op = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      quantize_f32(xp, n, scale, zp, y_signed, op);
    }
    return out;
  }, py::arg("x"), py::arg("scale"), py::arg("zero_point"), py::arg("y_signed"));

  m.def("dequantize_f32", [](py::array x, float scale, int32_t zp) {
    const bool is_signed = same_dtype(x.dtype(), py::dtype::of<int8_t>());
    if (!is_signed) require_dtype<uint8_t>(x, "x", "uint8 or int8");
    require_c_contiguous(x, "x");
    py::array_t<float> out(x.request().shape);
    const void* xp = x.data();
    const int64_t n = x.size();
    float* op = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      dequantize_f32(xp, is_signed, n, scale, zp, op);
    }
    return out;
  }, py::arg("x"), py::arg("scale"), py::arg("zero_point"));
}

}  // namespace fastq
