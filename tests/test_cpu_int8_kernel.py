"""The C++ int8 weight matmul (research/inference/cpu_kernels.py) against a float64 NumPy product."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.inference import cpu_kernels

pytestmark = pytest.mark.skipif(
    shutil.which('g++') is None and shutil.which('c++') is None, reason='no C++ compiler')


@pytest.fixture(scope='module', autouse=True)
def kernel_cache(tmp_path_factory):
  """A fresh build directory, so the test compiles the kernel from this checkout's source."""
  mp = pytest.MonkeyPatch()
  mp.setenv('RESEARCH_KERNEL_CACHE', str(tmp_path_factory.mktemp('kernels')))
  cpu_kernels._library.cache_clear()
  cpu_kernels._register.cache_clear()
  yield
  mp.undo()


def _quantised(rng, o, i):
  w_OxI = rng.standard_normal((o, i)).astype(np.float32)
  scale_O = (np.abs(w_OxI).max(axis=1) / 127).astype(np.float32)
  q_OxI = np.clip(np.round(w_OxI / scale_O[:, None]), -127, 127).astype(np.int8)
  return q_OxI, scale_O


# M covers the 4-row tiles and the leftover rows; I covers the 16-wide vector loop and its tail.
@pytest.mark.parametrize('m,i,o', [(1, 768, 96), (3, 37, 5), (5, 64, 33), (8, 130, 7), (1, 1, 1)])
def test_matches_float64_reference(m, i, o):
  assert cpu_kernels.available()
  rng = np.random.default_rng(m * 1000 + i)
  x_MxI = rng.standard_normal((m, i)).astype(np.float32)
  q_OxI, scale_O = _quantised(rng, o, i)
  got = np.asarray(jax.jit(cpu_kernels.int8_matmul)(
      jnp.asarray(x_MxI), jnp.asarray(q_OxI), jnp.asarray(scale_O)))
  want = x_MxI.astype(np.float64) @ (q_OxI.astype(np.float64) * scale_O[:, None]).T
  assert got.shape == (m, o) and got.dtype == np.float32
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_every_output_uses_its_own_row_and_scale():
  """A permutation of the weight rows permutes the outputs the same way."""
  rng = np.random.default_rng(7)
  x_MxI = jnp.asarray(rng.standard_normal((2, 48)), jnp.float32)
  q_OxI, scale_O = _quantised(rng, 9, 48)
  perm = rng.permutation(9)
  y = np.asarray(cpu_kernels.int8_matmul(x_MxI, jnp.asarray(q_OxI), jnp.asarray(scale_O)))
  y_perm = np.asarray(cpu_kernels.int8_matmul(x_MxI, jnp.asarray(q_OxI[perm]),
                                              jnp.asarray(scale_O[perm])))
  np.testing.assert_array_equal(y_perm, y[:, perm])


def test_bad_shapes_and_dtypes_are_refused():
  x = jnp.ones((2, 8), jnp.float32)
  with pytest.raises(ValueError, match='do not match'):
    cpu_kernels.int8_matmul(x, jnp.ones((4, 9), jnp.int8), jnp.ones((4,), jnp.float32))
  with pytest.raises(ValueError, match='do not match'):
    cpu_kernels.int8_matmul(x, jnp.ones((4, 8), jnp.int8), jnp.ones((3,), jnp.float32))
  with pytest.raises(ValueError, match='dtype'):
    cpu_kernels.int8_matmul(x, jnp.ones((4, 8), jnp.float32), jnp.ones((4,), jnp.float32))
