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

}  // namespace fastgp
