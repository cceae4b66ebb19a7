// Counter-based RNG: Philox4x32-10, bit-compatible with Triton's tl.rand / tl.randint.
//
// Triton (triton/language/random.py) computes, for an int32 offset and an integer seed,
//   key     = (seed & 0xffffffff, (seed >> 32) & 0xffffffff)
//   counter = (offset, 0, 0, 0)
// runs 10 Philox rounds, takes the first output word and maps it to [0, 1) with
// uint_to_uniform_float. The fastgp C++/CUDA kernels and the Triton kernels must draw the
// same numbers from the same seed, so every constant and operation below mirrors Triton.
// Reference values (Random123 known-answer tests) are checked by a standalone program,
// see the comment at the end of this file.
#pragma once

#include <cstdint>

#include "fastgp/macros.h"

namespace fastgp {
namespace philox {

constexpr uint32_t kRoundA = 0xD2511F53u;  // multiplier applied to counter word 0
constexpr uint32_t kRoundB = 0xCD9E8D57u;  // multiplier applied to counter word 2
constexpr uint32_t kKeyA = 0x9E3779B9u;    // Weyl increment of key word 0 (golden ratio)
constexpr uint32_t kKeyB = 0xBB67AE85u;    // Weyl increment of key word 1 (sqrt(3) - 1)
constexpr int kRounds = 10;                // Triton's default n_rounds

// High 32 bits of the 64-bit product (the device has an instruction for it).
FASTGP_HOST_DEVICE inline uint32_t umulhi(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * static_cast<uint64_t>(b)) >> 32);
#endif
}

struct Uint4 {
  uint32_t x0, x1, x2, x3;
};

// Philox4x32 with kRounds rounds. All arithmetic is uint32 with wraparound.
FASTGP_HOST_DEVICE inline Uint4 philox4x32_10(Uint4 ctr, uint32_t k0, uint32_t k1) {
  uint32_t c0 = ctr.x0, c1 = ctr.x1, c2 = ctr.x2, c3 = ctr.x3;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int i = 0; i < kRounds; ++i) {
    const uint32_t p0 = c0;
    const uint32_t p2 = c2;
    c0 = umulhi(kRoundB, p2) ^ c1 ^ k0;
    c2 = umulhi(kRoundA, p0) ^ c3 ^ k1;
    c1 = kRoundB * p2;
    c3 = kRoundA * p0;
    k0 += kKeyA;
    k1 += kKeyB;
  }
  return Uint4{c0, c1, c2, c3};
}

// Triton's uint_to_uniform_float for 32-bit words: reinterpret as int32, fold negative values
// onto non-negative ones (x < 0 ? -x - 1 : x, written as ~x to avoid signed overflow at
// INT32_MIN), scale in float32 by the largest constant that keeps INT32_MAX * scale < 1.
FASTGP_HOST_DEVICE inline float uint_to_uniform_float(uint32_t x) {
  int32_t xi = static_cast<int32_t>(x);
  if (xi < 0) xi = ~xi;
  return static_cast<float>(xi) * 4.6566127342e-10f;
}

// The same value as Triton's tl.rand(seed, offset) for a 32-bit offset.
FASTGP_HOST_DEVICE inline float uniform(uint64_t seed, uint32_t offset) {
  const uint32_t k0 = static_cast<uint32_t>(seed & 0xffffffffull);
  const uint32_t k1 = static_cast<uint32_t>((seed >> 32) & 0xffffffffull);
  return uint_to_uniform_float(philox4x32_10(Uint4{offset, 0u, 0u, 0u}, k0, k1).x0);
}

}  // namespace philox
}  // namespace fastgp

// Known answers (Random123 kat_vectors, philox4x32_10), verified against this header:
//   key (0, 0),                   ctr (0, 0, 0, 0)
//     -> (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)
//   key (0xa4093822, 0x299f31d0), ctr (0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344)
//     -> (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)
