"""The int8 weight matmul for CPU decoding (kernels/int8_matmul.cc), built with the system's C++
compiler on first use and registered with XLA as an FFI target.

`int8_matmul(x_MxI, q_OxI, scale_O)` = x @ (q * scale[:, None]).T, reading the int8 values
directly, where XLA:CPU would first write a float32 copy of the weights (experiments/BENCHMARKS.md,
"Quantised decoding on CPU"). The build is cached per source, compiler and CPU, under
$RESEARCH_KERNEL_CACHE or ~/.cache/research/kernels. `available()` says whether it built here.
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

SOURCE = pathlib.Path(__file__).parent / 'kernels' / 'int8_matmul.cc'
TARGET = 'research_int8_matmul'
FLAGS = ('-O3', '-march=native', '-fopenmp', '-shared', '-fPIC', '-std=c++17')


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
  path = _cache_dir() / f'int8_matmul_{key[:16]}.so'
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
  jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(_library().Int8Matmul), platform='cpu')


def available() -> bool:
  """Whether the kernel builds and loads here (it runs on the CPU backend only)."""
  try:
    _register()
  except (KernelBuildError, OSError):
    return False
  return True


def int8_matmul(x_MxI, q_OxI, scale_O):
  """x [M, I] float32, q [O, I] int8, scale [O] float32 -> [M, O] float32 (CPU only)."""
  m, i = x_MxI.shape
  o, qi = q_OxI.shape
  if qi != i or scale_O.shape != (o,):
    raise ValueError(f'int8_matmul: x {x_MxI.shape}, q {q_OxI.shape} and scale {scale_O.shape} '
                     'do not match (expected [M, I], [O, I], [O])')
  if q_OxI.dtype != jnp.int8:
    raise ValueError(f'int8_matmul: q has dtype {q_OxI.dtype}, expected int8')
  _register()
  return jax.ffi.ffi_call(TARGET, jax.ShapeDtypeStruct((m, o), jnp.float32))(
      x_MxI.astype(jnp.float32), q_OxI, scale_O.astype(jnp.float32))
