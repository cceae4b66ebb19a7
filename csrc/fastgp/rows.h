// Host helpers of the row-gathering ops (far_select, far_batch, pixelwise_combine): their outputs
// hold other rows than their inputs, so the output layout is chosen from a memory format rather
// than copied from the input's strides.
//
// Rule (mirrored by fastgp/_layout.py::rows_format for the fake kernels): a 4-d input that is
// channels_last-contiguous and not contiguous gives channels_last rows; anything else gives
// contiguous rows. Inputs are brought to that format (a no-op when they already have it), so
// every row is one contiguous block of N elements in the same element order as the output's.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/MemoryFormat.h>

#include <cstdint>
#include <vector>

#include "fastgp/tensor_utils.h"

namespace fastgp {

inline c10::MemoryFormat rows_format(const at::Tensor& t) {
  if (t.dim() == 4 && t.is_contiguous(c10::MemoryFormat::ChannelsLast) && !t.is_contiguous()) {
    return c10::MemoryFormat::ChannelsLast;
  }
  return c10::MemoryFormat::Contiguous;
}

// An empty [rows, t.shape[1:]...] tensor in format fmt.
inline at::Tensor empty_rows(const at::Tensor& t, int64_t rows, c10::MemoryFormat fmt) {
  std::vector<int64_t> sizes(t.sizes().begin(), t.sizes().end());
  sizes[0] = rows;
  return at::empty(sizes, t.options().memory_format(fmt));
}

inline void check_float_dtype(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(is_supported_float(t.scalar_type()), "fastgp::", op, ": ", name,
              " must be float16, bfloat16, float32 or float64, got ", t.scalar_type());
}

// far_select / far_batch arguments (k checked against M).
inline void check_far_args(const char* op, const at::Tensor& logits,
                           const at::Tensor& candidates, int64_t k) {
  check_float_input(op, "candidates", candidates);
  check_float_dtype(op, "logits", logits);
  TORCH_CHECK(logits.dim() == 1 && logits.size(0) == candidates.size(0), "fastgp::", op,
              ": logits must have shape [M] with M = ", candidates.size(0),
              " (one logit per candidate), got ", logits.sizes());
  check_same_device(op, "logits", logits, "candidates", candidates);
  TORCH_CHECK(k >= 1 && k <= candidates.size(0), "fastgp::", op,
              ": k must be in [1, M] with M = ", candidates.size(0), " candidates, got ", k);
}

inline void check_far_real(const char* op, const at::Tensor& real, const at::Tensor& candidates) {
  TORCH_CHECK(real.dim() == candidates.dim() && real.sizes().slice(1) == candidates.sizes().slice(1),
              "fastgp::", op, ": real must have the per-sample shape of candidates, got ",
              real.sizes(), " and ", candidates.sizes());
  TORCH_CHECK(real.scalar_type() == candidates.scalar_type(), "fastgp::", op,
              ": real and candidates must have the same dtype, got ", real.scalar_type(), " and ",
              candidates.scalar_type());
  check_same_device(op, "real", real, "candidates", candidates);
}

inline void check_pairs(const char* op, const at::Tensor& x, const at::Tensor& pairs, int64_t mode) {
  check_float_input(op, "x", x);
  TORCH_CHECK(pairs.scalar_type() == at::kLong, "fastgp::", op,
              ": pairs must be an int64 tensor, got ", pairs.scalar_type());
  TORCH_CHECK(pairs.dim() == 2 && pairs.size(1) == 2, "fastgp::", op,
              ": pairs must have shape [P, 2], got ", pairs.sizes());
  check_same_device(op, "pairs", pairs, "x", x);
  TORCH_CHECK(mode >= 0 && mode <= 4, "fastgp::", op,
              ": mode must be 0 (mean), 1 (min), 2 (max), 3 (and) or 4 (or), got ", mode);
}

inline void check_nearest_args(const char* op, const at::Tensor& samples, const at::Tensor& bank,
                               int64_t chunk) {
  check_float_input(op, "samples", samples);
  check_float_input(op, "bank", bank);
  TORCH_CHECK(bank.size(0) >= 1, "fastgp::", op, ": bank is empty (shape ", bank.sizes(), ")");
  TORCH_CHECK(row_numel(samples) == row_numel(bank), "fastgp::", op,
              ": samples and bank must have the same number of features per row, got ",
              row_numel(samples), " and ", row_numel(bank));
  TORCH_CHECK(samples.scalar_type() == bank.scalar_type(), "fastgp::", op,
              ": samples and bank must have the same dtype, got ", samples.scalar_type(), " and ",
              bank.scalar_type());
  check_same_device(op, "bank", bank, "samples", samples);
  TORCH_CHECK(chunk >= 1, "fastgp::", op, ": chunk must be >= 1, got ", chunk);
}

}  // namespace fastgp
