"""Model FLOPs utilisation: the device's measured matmul peak and the ratio against it."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

# Datasheet dense bf16 peaks, shown beside measured figures.
DATASHEET_BF16_PEAK = {'H100': 989e12, 'H200': 989e12, 'A100': 312e12, 'TPU v4': 275e12,
                       'TPU v5 lite': 197e12, 'TPU v5p': 459e12, 'TPU v6 lite': 918e12}


def measure_peak_flops(dtype=None, n: int | None = None, repeats: int = 10) -> float:
  """FLOP/s of a large jitted square matmul: float32 on CPU, bfloat16 on accelerators.

  The fastest of `repeats` timings: noise (other processes, frequency dips) only ever slows a
  matmul down, so the best rate is the device's peak and keeps MFU conservative.
  """
  on_cpu = jax.default_backend() == 'cpu'
  dtype = dtype or (jnp.float32 if on_cpu else jnp.bfloat16)
  n = n or (1024 if on_cpu else 8192)
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), dtype)
  inner = 4 if on_cpu else 20
  matmuls = jax.jit(lambda a, b: jax.lax.fori_loop(0, inner, lambda i, x: x @ b, a))
  matmuls(a, b).block_until_ready()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    matmuls(a, b).block_until_ready()
    times.append(time.perf_counter() - start)
  return 2 * n ** 3 * inner / min(times)


def datasheet_peak(device=None) -> float | None:
  """The datasheet bf16 peak of a known accelerator, else None."""
  kind = (device or jax.devices()[0]).device_kind
  for name, peak in DATASHEET_BF16_PEAK.items():
    if name in kind:
      return peak
  return None
