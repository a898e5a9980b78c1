// y[M, O] = x[M, I] . w^T for a few rows of x (decoding on CPU) and w [O, I] stored quantised:
// int8 values [O, J, G] or int4 values packed two to a byte [O, J, G/2], and one float32 scale per
// output row and group, [O, J] (I = J * G; per-channel is J = 1).
//
// Decoding at small batch is bound by reading the weights; XLA:CPU converts quantised weights to
// a float32 copy before its dot, which reads more bytes than the float32 weights themselves. Here
// each weight row is read once as stored, widened to float32 in registers and multiplied into up
// to 4 rows of x; each group's sum is scaled once. Output rows are shared out in chunks between
// the calling thread and XLA's intra-op thread pool.
//
// int4 layout: byte k of a group holds element k in its low nibble and element k + G/2 in its
// high nibble, both offset by 8, so 16 bytes widen to two runs of 16 consecutive elements.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define RESEARCH_AVX2 1
#endif

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// What one call computes. `w` is int8 or packed int4, by the entry point.
struct Problem {
  const float* x;       // [M, I]
  const void* w;        // [O, J, bytes per group]
  const float* scales;  // [O, J]
  float* y;             // [M, O]
  int64_t m, in, out, groups, group;
};

#if RESEARCH_AVX2
inline __m256 Widen8(__m128i bytes8) {  // the low 8 int8 lanes -> 8 floats
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes8));
}

inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
#endif

// Weight row o (all its groups; kBits 8 or 4) against R rows of x; writes R outputs, `out` apart.
template <int R, int kBits>
void RowTimesX(const Problem& p, int64_t o, const float* xs, float* ys) {
  const int64_t g = p.group, bytes = kBits == 8 ? g : g / 2;
  const uint8_t* row = static_cast<const uint8_t*>(p.w) + o * p.groups * bytes;
  const float* scale = p.scales + o * p.groups;
  float tail_total[R] = {};
#if RESEARCH_AVX2
  __m256 total[R];
  for (int r = 0; r < R; ++r) total[r] = _mm256_setzero_ps();
#endif
  for (int64_t j = 0; j < p.groups; ++j) {
    const uint8_t* wj = row + j * bytes;
    const float* xj = xs + j * g;
    float tail[R] = {};
    int64_t k = 0;
#if RESEARCH_AVX2
    __m256 acc[R][4];
    for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = _mm256_setzero_ps();
    if (kBits == 8) {
      for (; k + 32 <= g; k += 32) {
        const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(wj + k));
        const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(wj + k + 16));
        const __m256 w[4] = {Widen8(lo), Widen8(_mm_srli_si128(lo, 8)), Widen8(hi),
                             Widen8(_mm_srli_si128(hi, 8))};
        for (int r = 0; r < R; ++r)
          for (int q = 0; q < 4; ++q)
            acc[r][q] = _mm256_fmadd_ps(_mm256_loadu_ps(xj + r * p.in + k + 8 * q), w[q],
                                        acc[r][q]);
      }
      for (; k + 8 <= g; k += 8) {
        const __m256 w = Widen8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(wj + k)));
        for (int r = 0; r < R; ++r)
          acc[r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(xj + r * p.in + k), w, acc[r][0]);
      }
    } else {
      const int64_t half = g / 2;
      const __m128i low_nibbles = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
      for (; k + 16 <= half; k += 16) {
        const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(wj + k));
        const __m128i lo = _mm_sub_epi8(_mm_and_si128(packed, low_nibbles), eight);
        const __m128i hi =
            _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(packed, 4), low_nibbles), eight);
        const __m256 w[4] = {Widen8(lo), Widen8(_mm_srli_si128(lo, 8)), Widen8(hi),
                             Widen8(_mm_srli_si128(hi, 8))};
        const int64_t at[4] = {k, k + 8, half + k, half + k + 8};
        for (int r = 0; r < R; ++r)
          for (int q = 0; q < 4; ++q)
            acc[r][q] = _mm256_fmadd_ps(_mm256_loadu_ps(xj + r * p.in + at[q]), w[q], acc[r][q]);
      }
      for (; k + 8 <= half; k += 8) {
        const __m128i packed = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(wj + k));
        const __m128i lo = _mm_sub_epi8(_mm_and_si128(packed, low_nibbles), eight);
        const __m128i hi =
            _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(packed, 4), low_nibbles), eight);
        const __m256 wl = Widen8(lo), wh = Widen8(hi);
        for (int r = 0; r < R; ++r) {
          acc[r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(xj + r * p.in + k), wl, acc[r][0]);
          acc[r][2] = _mm256_fmadd_ps(_mm256_loadu_ps(xj + r * p.in + half + k), wh, acc[r][2]);
        }
      }
    }
#endif
    if (kBits == 8) {
      for (; k < g; ++k) {
        const float w = static_cast<float>(static_cast<int8_t>(wj[k]));
        for (int r = 0; r < R; ++r) tail[r] += xj[r * p.in + k] * w;
      }
    } else {
      for (const int64_t half = g / 2; k < half; ++k) {
        const float wl = static_cast<float>((wj[k] & 0x0F) - 8);
        const float wh = static_cast<float>((wj[k] >> 4) - 8);
        for (int r = 0; r < R; ++r)
          tail[r] += xj[r * p.in + k] * wl + xj[r * p.in + half + k] * wh;
      }
    }
#if RESEARCH_AVX2
    const __m256 s = _mm256_set1_ps(scale[j]);
    for (int r = 0; r < R; ++r) {
      const __m256 sum = _mm256_add_ps(_mm256_add_ps(acc[r][0], acc[r][1]),
                                       _mm256_add_ps(acc[r][2], acc[r][3]));
      total[r] = _mm256_fmadd_ps(s, sum, total[r]);
    }
#endif
    for (int r = 0; r < R; ++r) tail_total[r] += scale[j] * tail[r];
  }
  for (int r = 0; r < R; ++r) {
#if RESEARCH_AVX2
    ys[r * p.out] = HorizontalSum(total[r]) + tail_total[r];
#else
    ys[r * p.out] = tail_total[r];
#endif
  }
}

// Output columns [begin, end): weight row by weight row, 4 rows of x at a time.
template <int kBits>
void RowsOfW(const Problem& p, int64_t begin, int64_t end) {
  for (int64_t o = begin; o < end; ++o) {
    int64_t r = 0;
    for (; r + 4 <= p.m; r += 4) RowTimesX<4, kBits>(p, o, p.x + r * p.in, p.y + r * p.out + o);
    for (; r < p.m; ++r) RowTimesX<1, kBits>(p, o, p.x + r * p.in, p.y + r * p.out + o);
  }
}

// Chunks of output columns, taken from a shared counter by the caller and by helper tasks on
// XLA's pool. The caller waits only for chunks a helper has already taken (and so is working on):
// a helper that starts late finds nothing left, so a busy pool can delay but never block the call.
struct Work {
  Problem problem;
  void (*columns)(const Problem&, int64_t, int64_t);
  int64_t per_chunk, chunks;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> finished{0};

  void Drain() {
    for (int64_t c; (c = next.fetch_add(1)) < chunks;) {
      const int64_t begin = c * per_chunk;
      columns(problem, begin, std::min(begin + per_chunk, problem.out));
      finished.fetch_add(1, std::memory_order_release);
    }
  }
};

ffi::Error Run(ffi::ThreadPool pool, const Problem& problem,
               void (*columns)(const Problem&, int64_t, int64_t), int64_t per_chunk) {
  auto work = std::make_shared<Work>();
  work->problem = problem;
  work->columns = columns;
  work->per_chunk = per_chunk;
  work->chunks = (problem.out + per_chunk - 1) / per_chunk;
  // The pool has a thread per core and the caller takes a core's share itself.
  const int64_t helpers = std::min<int64_t>(pool.num_threads() - 1, work->chunks - 1);
  for (int64_t h = 0; h < helpers; ++h) pool.Schedule([work] { work->Drain(); });
  work->Drain();
  while (work->finished.load(std::memory_order_acquire) < work->chunks) {
#if RESEARCH_AVX2
    _mm_pause();
#endif
  }
  return ffi::Error::Success();
}

template <int kBits, ffi::DataType kType>
ffi::Error QuantizedMatmulImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                               ffi::Buffer<kType> w, ffi::Buffer<ffi::F32> scales,
                               ffi::ResultBuffer<ffi::F32> y) {
  const auto xd = x.dimensions();
  const auto wd = w.dimensions();
  const auto sd = scales.dimensions();
  const int64_t per_byte = kBits == 8 ? 1 : 2;
  if (xd.size() != 2 || wd.size() != 3 || sd.size() != 2 || sd[0] != wd[0] || sd[1] != wd[1] ||
      xd[1] != wd[1] * wd[2] * per_byte) {
    return ffi::Error::InvalidArgument(
        "quantized_matmul: expected x [M, J*G], values [O, J, G] (int4: [O, J, G/2]), "
        "scales [O, J]");
  }
  const Problem p{x.typed_data(), w.typed_data(), scales.typed_data(), y->typed_data(),
                  xd[0], xd[1], wd[0], wd[1], wd[2] * per_byte};
  return Run(pool, p, RowsOfW<kBits>, 16);
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(Int8Matmul, (QuantizedMatmulImpl<8, ffi::S8>),
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S8>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(Int4Matmul, (QuantizedMatmulImpl<4, ffi::U8>),
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::U8>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
