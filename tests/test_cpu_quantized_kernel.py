"""The C++ quantised weight matmuls (research/inference/cpu_kernels.py) against a float64 NumPy
product of the same int8 or packed int4 values and scales."""

import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.inference import cpu_kernels

pytestmark = pytest.mark.skipif(
    shutil.which('g++') is None and shutil.which('c++') is None, reason='no C++ compiler')


@pytest.fixture(scope='module', autouse=True)
def fresh_build(tmp_path_factory):
  """Compiles the kernels from this checkout's source into a fresh directory. The FFI targets a
  process registers stay registered (XLA refuses a second library under the same names), and the
  build cache is keyed by the source, so whichever build registered them ran this source."""
  directory = tmp_path_factory.mktemp('kernels')
  mp = pytest.MonkeyPatch()
  mp.setenv('RESEARCH_KERNEL_CACHE', str(directory))
  cpu_kernels._library.cache_clear()
  library = cpu_kernels._library()
  assert pathlib.Path(library._name).parent == directory
  yield
  mp.undo()


def _random_values(rng, bits, o, j, g):
  if bits == 8:
    return rng.integers(-127, 128, (o, j, g)).astype(np.int8)
  return rng.integers(0, 256, (o, j, g // 2)).astype(np.uint8)


def _reference(x_MxI, values, scales_OxJ, bits):
  """float64 x @ w.T, unpacking int4 as documented: byte k holds elements k and k + G/2."""
  if bits == 4:
    q = np.concatenate([(values & 15).astype(np.int64) - 8, (values >> 4).astype(np.int64) - 8],
                       axis=-1)
  else:
    q = values.astype(np.int64)
  w_OxI = (q * scales_OxJ[..., None].astype(np.float64)).reshape(q.shape[0], -1)
  return x_MxI.astype(np.float64) @ w_OxI.T


# M covers the 4-row tiles and the leftover rows; G covers the 32- and 8-wide vector loops (int8),
# the 16- and 8-byte loops (int4) and the scalar tails; J > 1 covers the per-group scales.
@pytest.mark.parametrize('bits,m,o,j,g', [
    (8, 1, 96, 1, 768), (8, 3, 5, 1, 37), (8, 5, 33, 3, 40), (8, 8, 7, 1, 130), (8, 1, 1, 1, 1),
    (4, 1, 96, 24, 32), (4, 3, 7, 2, 38), (4, 5, 50, 3, 64), (4, 4, 9, 1, 770), (4, 2, 3, 5, 2)])
def test_matches_float64_reference(bits, m, o, j, g):
  assert cpu_kernels.available()
  rng = np.random.default_rng(m * 1000 + g + bits)
  x_MxI = rng.standard_normal((m, j * g)).astype(np.float32)
  values = _random_values(rng, bits, o, j, g)
  scales_OxJ = rng.uniform(0.01, 1.0, (o, j)).astype(np.float32)
  got = np.asarray(jax.jit(cpu_kernels.quantized_matmul, static_argnums=3)(
      jnp.asarray(x_MxI), jnp.asarray(values), jnp.asarray(scales_OxJ), bits))
  want = _reference(x_MxI, values, scales_OxJ, bits)
  assert got.shape == (m, o) and got.dtype == np.float32
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize('bits', [8, 4])
def test_every_output_uses_its_own_row_and_scales(bits):
  """A permutation of the weight rows permutes the outputs the same way."""
  rng = np.random.default_rng(7)
  x_MxI = jnp.asarray(rng.standard_normal((2, 96)), jnp.float32)
  values = _random_values(rng, bits, 41, 3, 32)
  scales_OxJ = rng.uniform(0.01, 1.0, (41, 3)).astype(np.float32)
  perm = rng.permutation(41)
  y = np.asarray(cpu_kernels.quantized_matmul(x_MxI, jnp.asarray(values),
                                              jnp.asarray(scales_OxJ), bits))
  y_perm = np.asarray(cpu_kernels.quantized_matmul(x_MxI, jnp.asarray(values[perm]),
                                                   jnp.asarray(scales_OxJ[perm]), bits))
  np.testing.assert_array_equal(y_perm, y[:, perm])


def test_bad_shapes_and_dtypes_are_refused():
  x = jnp.ones((2, 8), jnp.float32)
  ones = lambda shape, dtype=jnp.float32: jnp.ones(shape, dtype)
  with pytest.raises(ValueError, match='do not match'):
    cpu_kernels.quantized_matmul(x, ones((4, 1, 9), jnp.int8), ones((4, 1)), 8)
  with pytest.raises(ValueError, match='do not match'):
    cpu_kernels.quantized_matmul(x, ones((4, 1, 8), jnp.int8), ones((3, 1)), 8)
  with pytest.raises(ValueError, match='do not match'):  # int4: 8 inputs are 4 bytes a row
    cpu_kernels.quantized_matmul(x, ones((4, 1, 8), jnp.uint8), ones((4, 1)), 4)
  with pytest.raises(ValueError, match='dtype'):
    cpu_kernels.quantized_matmul(x, ones((4, 1, 8)), ones((4, 1)), 8)
  with pytest.raises(ValueError, match='bits=3'):
    cpu_kernels.quantized_matmul(x, ones((4, 1, 8), jnp.int8), ones((4, 1)), 3)
