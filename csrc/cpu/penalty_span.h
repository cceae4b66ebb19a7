// Inner loops of the CPU `penalty` kernels over one contiguous span of a sample.
//
// This file is deliberately included TWICE by csrc/cpu/penalty.cpp, each time inside its own
// namespace: once as baseline x86-64 code (namespace `base`) and once under
// `#pragma GCC target("avx2,f16c")` (namespace `avx2`, with FASTGP_SPAN_F16C defined), the
// copy penalty.cpp picks at run time when the CPU has AVX2 and F16C. Hence no include guard and
// no #includes here (penalty.cpp includes what is needed first, so that every function from
// another header stays baseline code; only the functions defined here are compiled per ISA).
//
// Every loop is written so that gcc -O3 vectorizes it for the ISA at hand:
//  - the sum of squares uses kLanes independent accumulators combined by a fixed tree; the order
//    of additions is spelled out, so both copies (and every thread count) give identical bits;
//  - float16/bfloat16 spans are converted to float in blocks of kBlock elements held in a stack
//    buffer, then processed as float (F16C instructions for float16 in the AVX2 copy; exact
//    bit manipulation for bfloat16, round-to-nearest-even like c10::BFloat16).

constexpr int64_t kBlock = 256;

// ---- Conversions between storage type and accumulation type, kBlock elements at most ---------

inline void load_acc(const c10::BFloat16* x, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t bits = static_cast<uint32_t>(x[i].x) << 16;
    std::memcpy(out + i, &bits, sizeof(float));
  }
}

inline void store_acc(const float* in, c10::BFloat16* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, in + i, sizeof(float));
    const bool is_nan = (bits & 0x7fffffffu) > 0x7f800000u;
    const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
    y[i].x = static_cast<uint16_t>(is_nan ? 0x7fc0u : rounded);
  }
}

#if defined(FASTGP_SPAN_F16C)
inline void load_acc(const c10::Half* x, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i));
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) out[i] = _cvtsh_ss(x[i].x);
}

inline void store_acc(const float* in, c10::Half* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), h);
  }
  for (; i < n; ++i) y[i].x = _cvtss_sh(in[i], _MM_FROUND_TO_NEAREST_INT);
}
#else
inline void load_acc(const c10::Half* x, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(x[i]);
}

inline void store_acc(const float* in, c10::Half* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<c10::Half>(in[i]);
}
#endif

// ---- Kernels over one span ---------------------------------------------------------------------

// acc[j] += x[i]^2 for i = j (mod kLanes), in order of i.
template <typename acc_t, int kLanes>
inline void accumulate_squares(acc_t (&acc)[kLanes], const acc_t* x, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) acc[j] += x[i + j] * x[i + j];
  }
  for (int j = 0; i < n; ++i, ++j) acc[j] += x[i] * x[i];
}

// Sum of squares of x[0, n) in acc_t.
template <typename scalar_t, typename acc_t>
acc_t sum_squares(const scalar_t* x, int64_t n) {
  constexpr int kLanes = 128 / sizeof(acc_t);  // 32 floats / 16 doubles: 4 AVX or 8 SSE registers
  acc_t acc[kLanes] = {};
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    accumulate_squares(acc, x, n);
  } else {
    // Blocks are a multiple of kLanes long, so the lane of x[i] is i mod kLanes as above.
    acc_t buf[kBlock];
    for (int64_t i = 0; i < n; i += kBlock) {
      const int64_t m = std::min<int64_t>(kBlock, n - i);
      load_acc(x + i, buf, m);
      accumulate_squares(acc, buf, m);
    }
  }
  for (int width = kLanes / 2; width > 0; width /= 2) {
    for (int j = 0; j < width; ++j) acc[j] += acc[j + width];
  }
  return acc[0];
}

// out = a * real + (1 - a) * fake.
template <typename scalar_t, typename acc_t>
void lerp_span(scalar_t* __restrict__ out, const scalar_t* __restrict__ real,
               const scalar_t* __restrict__ fake, acc_t a, int64_t n) {
  const acc_t one_minus_a = acc_t(1) - a;
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    for (int64_t i = 0; i < n; ++i) out[i] = penalty::lerp(a, one_minus_a, real[i], fake[i]);
  } else {
    acc_t r[kBlock], f[kBlock];
    for (int64_t i = 0; i < n; i += kBlock) {
      const int64_t m = std::min<int64_t>(kBlock, n - i);
      load_acc(real + i, r, m);
      load_acc(fake + i, f, m);
      for (int64_t j = 0; j < m; ++j) r[j] = penalty::lerp(a, one_minus_a, r[j], f[j]);
      store_acc(r, out + i, m);
    }
  }
}

// out = x * scale.
template <typename scalar_t, typename acc_t>
void scale_span(scalar_t* __restrict__ out, const scalar_t* __restrict__ x, acc_t scale,
                int64_t n) {
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale;
  } else {
    acc_t buf[kBlock];
    for (int64_t i = 0; i < n; i += kBlock) {
      const int64_t m = std::min<int64_t>(kBlock, n - i);
      load_acc(x + i, buf, m);
      for (int64_t j = 0; j < m; ++j) buf[j] *= scale;
      store_acc(buf, out + i, m);
    }
  }
}
