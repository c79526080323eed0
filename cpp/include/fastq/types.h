// Shared vocabulary of the C++ core: what is computed (Arith) versus what runs it (Impl).
// Contract: `Arith` fixes the integer result bit for bit; `Impl` only changes speed. Every
// Impl that accepts an Arith returns exactly what the `ref` impl returns for it.
// No intrinsics here: this header is included by every ISA's object library.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace fastq {

// Integer semantics of a u8 x s8 product-sum (DESIGN.md section 3).
enum class Arith : int {
  Exact32 = 0,    // s32 sum of u8*s8 products: what VNNI vpdpbusd computes
  Sat16Pair = 1,  // adjacent-k pair sums saturated to s16, then summed exactly in s32:
                  // what AVX2 vpmaddubsw + vpmaddwd compute
};

// Who computes it. Ordered from slowest to fastest; FASTQ_ISA caps the default by this order.
enum class Impl : int { Ref = 0, Avx2 = 1, Avx512Vnni = 2 };

inline const char* arith_name(Arith a) { return a == Arith::Exact32 ? "exact32" : "sat16pair"; }
inline const char* impl_name(Impl i) {
  switch (i) {
    case Impl::Ref: return "ref";
    case Impl::Avx2: return "avx2";
    case Impl::Avx512Vnni: return "avx512vnni";
  }
  return "?";
}

inline Arith parse_arith(const std::string& s) {
  if (s == "exact32") return Arith::Exact32;
  if (s == "sat16pair") return Arith::Sat16Pair;
  throw std::invalid_argument("unknown arith '" + s + "'; valid: exact32, sat16pair");
}
inline Impl parse_impl(const std::string& s) {
  if (s == "ref") return Impl::Ref;
  if (s == "avx2") return Impl::Avx2;
  if (s == "avx512vnni") return Impl::Avx512Vnni;
  throw std::invalid_argument("unknown impl '" + s + "'; valid: ref, avx2, avx512vnni");
}

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

}  // namespace fastq
