"""The int8 weight matmul kernel against XLA's float32 and int8 products, GPT-2 small's matrices.

  python -m experiments.bench_int8_matmul [--batches=1,8] [--repeats=5]

One jitted call each, median over `--repeats` timings of `--calls` calls (fewer for the output
layer), after a warm-up: float32 weights [I, O] (the params layout), int8 [O, I] converted by XLA
inside the jit then dotted (scale on the output), and research.inference.cpu_kernels.int8_matmul,
which reads the int8 values directly. All three compute the same product (printed: the kernel's
largest error relative to the float32 result). Issue 19's quantised decoding builds on the kernel.
"""

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments.timing import median_time
from research.inference import cpu_kernels

_BATCHES = flags.DEFINE_list('batches', ['1', '8'], 'Rows of x (decoding batch sizes).')
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


def main(argv):
  del argv
  if not cpu_kernels.available():
    raise SystemExit('the int8 kernel did not build here (a C++ compiler is needed)')
  f32 = jax.jit(lambda x, w_IxO: x @ w_IxO)
  xla_int8 = jax.jit(lambda x, q_OxI, s_O: (x @ q_OxI.astype(jnp.float32).T) * s_O)
  kernel = jax.jit(cpu_kernels.int8_matmul)
  rng = np.random.default_rng(0)
  print('| matrix [I x O] | batch | float32 (us) | XLA int8 (us) | kernel (us) | '
        'kernel vs float32 | kernel vs XLA int8 | max rel. error |')
  print('|---|---|---|---|---|---|---|---|')
  for name, i, o in MATRICES:
    w_OxI = rng.standard_normal((o, i)).astype(np.float32)
    s_O = (np.abs(w_OxI).max(axis=1) / 127).astype(np.float32)
    q_OxI = np.clip(np.round(w_OxI / s_O[:, None]), -127, 127).astype(np.int8)
    w_IxO = jnp.asarray((q_OxI * s_O[:, None]).T.copy())
    q_OxI, s_O = jnp.asarray(q_OxI), jnp.asarray(s_O)
    calls = 5 if i * o > 10_000_000 else _CALLS.value
    for b in map(int, _BATCHES.value):
      x = jnp.asarray(rng.standard_normal((b, i)), jnp.float32)
      want = np.asarray(f32(x, w_IxO))
      err = np.abs(np.asarray(kernel(x, q_OxI, s_O)) - want).max() / np.abs(want).max()
      t = [_per_call_us(f32, (x, w_IxO), calls, _REPEATS.value),
           _per_call_us(xla_int8, (x, q_OxI, s_O), calls, _REPEATS.value),
           _per_call_us(kernel, (x, q_OxI, s_O), calls, _REPEATS.value)]
      print(f'| {name}, {i} x {o} | {b} | {t[0]:,.0f} | {t[1]:,.0f} | {t[2]:,.0f} | '
            f'x{t[0] / t[2]:.2f} | x{t[1] / t[2]:.2f} | {err:.1e} |', flush=True)


if __name__ == '__main__':
  app.run(main)
