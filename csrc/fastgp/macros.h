// Portability macros for code shared by the C++ (CPU) and CUDA translation units.
#pragma once

// Functions in csrc/fastgp/*.h are compiled by both g++ (CPU kernels) and nvcc (CUDA kernels).
// Under nvcc they must be __host__ __device__; for plain C++ the qualifiers do not exist.
#if defined(__CUDACC__) || defined(__HIPCC__)
#define FASTGP_HOST_DEVICE __host__ __device__
#else
#define FASTGP_HOST_DEVICE
#endif
