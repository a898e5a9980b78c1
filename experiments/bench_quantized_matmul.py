"""The quantised weight matmul kernels against XLA's float32 product and XLA's dequantise-then-dot,
on GPT-2 small's matrices.

  python -m experiments.bench_quantized_matmul [--batches=1,8,32,64] [--repeats=5]

One jitted call each, median over `--repeats` timings of `--calls` calls (fewer for the output
layer), after a warm-up: float32 weights [I, O] (the params layout); int8 per-channel weights
dequantised by XLA inside the jit, then dotted (what `QuantizedTensor.matmul` does above
KERNEL_MAX_ROWS rows); and research.inference.cpu_kernels.quantized_matmul reading int8
per-channel and int4 (groups of 32) values directly. The weights are quantised by
research.inference.quantize.quantize_tensor; each kernel's largest error relative to the float32
product of its own dequantised weights is printed.
"""

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments.timing import median_time
from research.inference import cpu_kernels
from research.inference.quantize import quantize_tensor

_BATCHES = flags.DEFINE_list('batches', ['1', '8', '32', '64'], 'Rows of x (tokens per call).')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timings per cell; the median is printed.')
_CALLS = flags.DEFINE_integer('calls', 50, 'Calls per timing (5 for matrices over 10M weights).')

# (name, I, O) of GPT-2 small's per-token matrices: attention q/k/v each, attention out, MLP in,
# MLP out, and the tied output layer.
MATRICES = [('attention q, k, v, out', 768, 768), ('mlp in', 768, 3072),
            ('mlp out', 3072, 768), ('output layer', 768, 50257)]


def _per_call_us(fn, args, calls, repeats):
  def many():
    for _ in range(calls):
      out = fn(*args)
    return out.block_until_ready()
  return median_time(many, repeats) / calls * 1e6


def _relative_error(got, want):
  return float(np.abs(np.asarray(got) - np.asarray(want)).max() / np.abs(np.asarray(want)).max())


def main(argv):
  del argv
  if not cpu_kernels.available():
    raise SystemExit('the quantised matmul kernels did not build here (a C++ compiler is needed)')
  f32 = jax.jit(lambda x, w_IxO: x @ w_IxO)
  dequantised = jax.jit(lambda x, q: x @ q.dequantize())
  kernel = jax.jit(lambda x, q: cpu_kernels.quantized_matmul(x, q.values, q.scales, q.bits))
  rng = np.random.default_rng(0)
  print('| matrix [I x O] | rows | float32 (us) | XLA dequantised int8 (us) | int8 kernel (us) | '
        'int4 kernel (us) | int8 kernel vs float32 | int4 kernel vs float32 | '
        'max rel. error int8 / int4 |')
  print('|---|---|---|---|---|---|---|---|---|')
  for name, i, o in MATRICES:
    w_IxO = rng.standard_normal((i, o)).astype(np.float32) * 0.02
    q8, q4 = quantize_tensor(w_IxO, 8, None, (0,)), quantize_tensor(w_IxO, 4, 32, (0,))
    calls = 5 if i * o > 10_000_000 else _CALLS.value
    for b in map(int, _BATCHES.value):
      x = jnp.asarray(rng.standard_normal((b, i)), jnp.float32)
      err8 = _relative_error(kernel(x, q8), f32(x, q8.dequantize()))
      err4 = _relative_error(kernel(x, q4), f32(x, q4.dequantize()))
      t = [_per_call_us(f32, (x, jnp.asarray(w_IxO)), calls, _REPEATS.value),
           _per_call_us(dequantised, (x, q8), calls, _REPEATS.value),
           _per_call_us(kernel, (x, q8), calls, _REPEATS.value),
           _per_call_us(kernel, (x, q4), calls, _REPEATS.value)]
      print(f'| {name}, {i} x {o} | {b} | {t[0]:,.0f} | {t[1]:,.0f} | {t[2]:,.0f} | '
            f'{t[3]:,.0f} | x{t[0] / t[2]:.2f} | x{t[0] / t[3]:.2f} | {err8:.1e} / {err4:.1e} |',
            flush=True)


if __name__ == '__main__':
  app.run(main)
