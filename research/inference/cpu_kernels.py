"""The quantised weight matmuls for CPU decoding (kernels/quantized_matmul.cc), built with the
system's C++ compiler on first use and registered with XLA as FFI targets.

`quantized_matmul(x_MxI, values, scales_OxJ, bits)` = x @ w.T for w [O, I] stored as int8 values
[O, J, G] or packed int4 [O, J, G/2] with a scale per row and group (research.inference.quantize's
layout), reading the quantised values directly, where XLA:CPU would first write a float32 copy of
the weights (experiments/BENCHMARKS.md, "Quantised decoding on CPU"). It has no gradient: it is for
decoding programs. The build is cached per source, compiler and CPU, under $RESEARCH_KERNEL_CACHE
or ~/.cache/research/kernels. `available()` says whether it built here (remembered for the
process).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import pathlib
import platform
import shutil
import subprocess
import tempfile

import jax
import jax.numpy as jnp

SOURCE = pathlib.Path(__file__).parent / 'kernels' / 'quantized_matmul.cc'
TARGETS = {8: ('research_int8_matmul', 'Int8Matmul'), 4: ('research_int4_matmul', 'Int4Matmul')}
FLAGS = ('-O3', '-march=native', '-shared', '-fPIC', '-std=c++17')


class KernelBuildError(RuntimeError):
  """The C++ kernel could not be compiled or loaded on this machine."""


def _cpu_tag() -> str:
  """What -march=native depends on: a library built on one CPU may not run on another."""
  try:
    flags = next(line for line in pathlib.Path('/proc/cpuinfo').read_text().splitlines()
                 if line.startswith('flags'))
  except (OSError, StopIteration):
    flags = platform.processor()
  return platform.machine() + flags


def _cache_dir() -> pathlib.Path:
  root = os.environ.get('RESEARCH_KERNEL_CACHE')
  return pathlib.Path(root) if root else pathlib.Path.home() / '.cache' / 'research' / 'kernels'


@functools.lru_cache(maxsize=None)
def _library() -> ctypes.CDLL:
  """Compiles (once per source, flags, compiler and CPU) and loads the kernel library."""
  compiler = os.environ.get('CXX') or shutil.which('g++') or shutil.which('c++')
  if compiler is None:
    raise KernelBuildError('no C++ compiler found (set CXX, or install g++)')
  include = jax.ffi.include_dir()
  key = hashlib.sha256('\0'.join(
      [SOURCE.read_text(), ' '.join(FLAGS), compiler, include, _cpu_tag()]).encode()).hexdigest()
  path = _cache_dir() / f'quantized_matmul_{key[:16]}.so'
  if not path.exists():
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
      built = pathlib.Path(tmp) / path.name
      done = subprocess.run([compiler, *FLAGS, '-I', include, str(SOURCE), '-o', str(built)],
                            capture_output=True, text=True)
      if done.returncode != 0:
        raise KernelBuildError(f'compiling {SOURCE.name} failed:\n{done.stderr[-2000:]}')
      os.replace(built, path)  # atomic: a concurrent build never leaves a half-written library
  return ctypes.cdll.LoadLibrary(str(path))


@functools.lru_cache(maxsize=None)
def _register() -> None:
  library = _library()
  for target, symbol in TARGETS.values():
    jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)),
                                platform='cpu')


@functools.lru_cache(maxsize=None)
def available() -> bool:
  """Whether the kernels build and load here (they run on the CPU backend only)."""
  try:
    _register()
  except (KernelBuildError, OSError):
    return False
  return True


def quantized_matmul(x_MxI, values, scales_OxJ, bits: int):
  """x [M, I] float32 times w.T -> [M, O] float32 (CPU only), w [O, I] given as int8 `values`
  [O, J, G] (bits 8) or packed uint8 [O, J, G/2] (bits 4) and float32 `scales_OxJ`; I = J * G."""
  if bits not in TARGETS:
    raise ValueError(f'quantized_matmul: bits={bits!r}, expected 8 or 4')
  want = jnp.int8 if bits == 8 else jnp.uint8
  m, i = x_MxI.shape
  o, j = scales_OxJ.shape
  if (values.ndim != 3 or values.shape[:2] != (o, j)
      or i != j * values.shape[2] * (8 // bits)):
    raise ValueError(f'quantized_matmul: x {x_MxI.shape}, values {values.shape} and scales '
                     f'{scales_OxJ.shape} do not match (expected [M, J*G], [O, J, G] (int4: '
                     '[O, J, G/2]), [O, J])')
  if values.dtype != want:
    raise ValueError(f'quantized_matmul: values have dtype {values.dtype}, expected '
                     f'{jnp.dtype(want).name} for bits={bits}')
  _register()
  return jax.ffi.ffi_call(TARGETS[bits][0], jax.ShapeDtypeStruct((m, o), jnp.float32),
                          vmap_method='sequential')(
      x_MxI.astype(jnp.float32), values, scales_OxJ.astype(jnp.float32))

