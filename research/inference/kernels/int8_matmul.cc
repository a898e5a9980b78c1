// y[M, O] = x[M, I] . (q[O, I] * scale[O])^T: int8 weights read as int8, converted in registers.
//
// Decoding at small batch is bound by reading the weights; XLA:CPU converts int8 weights to a
// float32 copy before its dot, which reads more bytes than the float32 weights themselves. Here
// each output row's int8 values are read once, widened to float32 in registers and multiplied
// into all M rows of x; the row's scale is applied to the finished sums.
#include <cstdint>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// Dot products of one int8 weight row with R rows of x: each group of 8 weights is widened
// to float32 once and multiplied into all R rows (AVX2 + FMA; a plain loop elsewhere).
template <int R>
void RowTimesX(const int8_t* row, const float* xs, int64_t in, float scale, float* ys,
               int64_t out) {
  float sums[R];
  int64_t i = 0;
#if defined(__AVX2__) && defined(__FMA__)
  __m256 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (; i + 16 <= in; i += 16) {
    const __m256 w0 = _mm256_cvtepi32_ps(
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + i))));
    const __m256 w1 = _mm256_cvtepi32_ps(
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + i + 8))));
    for (int r = 0; r < R; ++r) {
      acc[r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(xs + r * in + i), w0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(_mm256_loadu_ps(xs + r * in + i + 8), w1, acc[r][1]);
    }
  }
  for (int r = 0; r < R; ++r) {
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, _mm256_add_ps(acc[r][0], acc[r][1]));
    sums[r] = lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] +
              lanes[7];
  }
#else
  for (int r = 0; r < R; ++r) sums[r] = 0.0f;
#endif
  for (; i < in; ++i) {
    const float w = static_cast<float>(row[i]);
    for (int r = 0; r < R; ++r) sums[r] += xs[r * in + i] * w;
  }
  for (int r = 0; r < R; ++r) ys[r * out] = sums[r] * scale;
}

ffi::Error Int8MatmulImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::S8> q,
                          ffi::Buffer<ffi::F32> scale, ffi::ResultBuffer<ffi::F32> y) {
  const auto xd = x.dimensions();
  const auto qd = q.dimensions();
  if (xd.size() != 2 || qd.size() != 2 || xd[1] != qd[1] || scale.element_count() != qd[0]) {
    return ffi::Error::InvalidArgument("int8_matmul: expected x [M, I], q [O, I], scale [O]");
  }
  const int64_t m = xd[0], in = xd[1], out = qd[0];
  const float* xs = x.typed_data();
  const int8_t* qs = q.typed_data();
  const float* ss = scale.typed_data();
  float* ys = y->typed_data();
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < out; ++o) {
    const int8_t* row = qs + o * in;
    int64_t r = 0;
    for (; r + 4 <= m; r += 4) RowTimesX<4>(row, xs + r * in, in, ss[o], ys + r * out + o, out);
    for (; r < m; ++r) RowTimesX<1>(row, xs + r * in, in, ss[o], ys + r * out + o, out);
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(Int8Matmul, Int8MatmulImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S8>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
