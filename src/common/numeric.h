// Host-side conversions between float and the 16- and 8-bit storage formats
// (round to nearest even, NaN preserved), used by the CPU backend and tests.
#pragma once

#include <cstdint>
#include <cstring>

namespace tileflash::detail {

inline float bits_to_float(std::uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
inline std::uint32_t float_to_bits(float f) {
  std::uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}

inline float bf16_to_float(std::uint16_t h) { return bits_to_float(static_cast<std::uint32_t>(h) << 16); }
inline std::uint16_t float_to_bf16(float f) {
  const std::uint32_t bits = float_to_bits(f);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x40u);  // quiet NaN
  const std::uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>((bits + rounding) >> 16);
}

inline float fp16_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1Fu;
  std::uint32_t mant = h & 0x3FFu;
  if (exp == 0x1F) return bits_to_float(sign | 0x7F800000u | (mant << 13));
  if (exp == 0) {
    if (mant == 0) return bits_to_float(sign);
    // Subnormal: value = mant * 2^-24.
    const float magnitude = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return sign ? -magnitude : magnitude;
  }
  return bits_to_float(sign | ((exp + 112u) << 23) | (mant << 13));
}
inline std::uint16_t float_to_fp16(float f) {
  const std::uint32_t bits = float_to_bits(f);
  const std::uint32_t sign = (bits >> 16) & 0x8000u;
  const std::uint32_t abs = bits & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return static_cast<std::uint16_t>(sign | 0x7E00u);
  if (abs >= 0x477FF000u) return static_cast<std::uint16_t>(sign | 0x7C00u);  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {
    // Result is subnormal or zero: round abs / 2^-24 to nearest even.
    const float magnitude = bits_to_float(abs) * 16777216.0f;
    std::uint32_t m = static_cast<std::uint32_t>(magnitude);
    const float frac = magnitude - static_cast<float>(m);
    if (frac > 0.5f || (frac == 0.5f && (m & 1u))) ++m;
    return static_cast<std::uint16_t>(sign | m);
  }
  const std::uint32_t rounding = 0xFFFu + ((abs >> 13) & 1u);
  return static_cast<std::uint16_t>(sign | ((abs - (112u << 23) + rounding) >> 13));
}

// OCP FP8 E4M3 (e4m3fn): bias 7, no infinities, S.1111.111 is NaN, largest finite 448,
// subnormals m * 2^-9.
inline float fp8_e4m3_to_float(std::uint8_t x) {
  const std::uint32_t sign = static_cast<std::uint32_t>(x & 0x80u) << 24;
  const std::uint32_t exp = (x >> 3) & 0xFu;
  const std::uint32_t mant = x & 0x7u;
  if (exp == 0xF && mant == 0x7) return bits_to_float(sign | 0x7FC00000u);
  if (exp == 0) {
    const float magnitude = static_cast<float>(mant) * 0.001953125f;  // 2^-9
    return sign ? -magnitude : magnitude;
  }
  return bits_to_float(sign | ((exp + 120u) << 23) | (mant << 20));
}

// Round to nearest even, saturating to +-448 (what cvt.rn.satfinite.e4m3x2.f32 does on
// the GPU); NaN stays NaN.
inline std::uint8_t float_to_fp8_e4m3(float f) {
  const std::uint32_t bits = float_to_bits(f);
  const auto sign = static_cast<std::uint8_t>((bits >> 24) & 0x80u);
  const std::uint32_t abs = bits & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return static_cast<std::uint8_t>(sign | 0x7Fu);
  if (abs >= 0x43E00000u) return static_cast<std::uint8_t>(sign | 0x7Eu);  // >= 448 (and inf): saturate
  if (abs < 0x3C800000u) {
    // Below 2^-6: subnormal or zero, round abs / 2^-9 to nearest even.
    const float magnitude = bits_to_float(abs) * 512.0f;
    auto m = static_cast<std::uint32_t>(magnitude);
    const float frac = magnitude - static_cast<float>(m);
    if (frac > 0.5f || (frac == 0.5f && (m & 1u))) ++m;
    return static_cast<std::uint8_t>(sign | m);
  }
  const std::uint32_t rounding = 0x7FFFFu + ((abs >> 20) & 1u);
  const std::uint32_t rounded = (abs - (120u << 23) + rounding) >> 20;
  return static_cast<std::uint8_t>(sign | (rounded > 0x7Eu ? 0x7Eu : rounded));
}

}  // namespace tileflash::detail
