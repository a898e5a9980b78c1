"""Weight-only int8/int4 quantisation of a params tree, dequantised inside the jitted step.

Each matrix is viewed as [I, O] (I: the axes a matmul contracts, O: the rest) and cut into groups
of `group_size` rows along I; each group and output channel gets one float32 scale, max|w| / qmax
(symmetric, round to nearest). `group_size=None` is per-channel (one group spans all of I). int4
values are packed two to a byte, so device memory holds 1 (int8) or 1/2 (int4) byte per weight
plus the scales. Norm scales and biases (1-D leaves) stay in float.
"""

from __future__ import annotations

import math

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

QMAX = {8: 127, 4: 7}
# Contracted axes of each matrix, by leaf name; anything else contracts its first axis.
IN_AXES = {'embed': (1,), 'embedding': (1,), 'out': (0, 1)}
# Not weight matrices: Mamba's per-state decay rates (exp(-exp(A_log) dt) is sensitive to them).
KEPT_EXACT = ('A_log',)


def _is_bias(name: str) -> bool:
  """Biases stay in float even when they are [N, H] (attention's query/key/value biases)."""
  return name == 'bias' or name.endswith('_bias')


@struct.dataclass
class QuantizedTensor:
  """int8 (or packed int4) values [I/G, G, O] (int4: [I/G, G/2, O]) and scales [I/G, 1, O]."""
  values: jax.Array
  scales: jax.Array
  shape: tuple[int, ...] = struct.field(pytree_node=False)
  in_axes: tuple[int, ...] = struct.field(pytree_node=False)
  bits: int = struct.field(pytree_node=False)

  def dequantize(self, dtype=jnp.float32):
    """The float matrix, in its original shape."""
    q = _unpack_int4(self.values) if self.bits == 4 else self.values
    w_IxO = (q.astype(jnp.float32) * self.scales).reshape(-1, self.scales.shape[-1])
    order = _order(len(self.shape), self.in_axes)
    moved = [self.shape[a] for a in order]
    w = w_IxO[:math.prod(moved[:len(self.in_axes)])].reshape(moved)
    return jnp.transpose(w, np.argsort(order)).astype(dtype)

  @property
  def nbytes(self) -> int:
    return self.values.nbytes + self.scales.nbytes


def _order(ndim: int, in_axes: tuple[int, ...]) -> list[int]:
  return list(in_axes) + [a for a in range(ndim) if a not in in_axes]


def _pack_int4(q):
  """[.., G, O] int8 in [-7, 7] -> [.., G/2, O] uint8, two offset nibbles a byte."""
  u = (q + 8).astype(np.uint8)
  return u[..., 0::2, :] | (u[..., 1::2, :] << 4)


def _unpack_int4(packed):
  low = (packed & 0xF).astype(jnp.int8) - 8
  high = (packed >> 4).astype(jnp.int8) - 8
  return jnp.stack([low, high], axis=-2).reshape(*packed.shape[:-2], -1, packed.shape[-1])


def quantize_tensor(w, bits: int, group_size: int | None, in_axes: tuple[int, ...]):
  """One matrix -> QuantizedTensor; I is zero-padded up to a multiple of the group size.

  Computed on the host in NumPy (a one-off, with no compilation per shape).
  """
  if bits not in QMAX:
    raise ValueError(f'bits={bits!r}: expected one of {sorted(QMAX)}')
  if group_size is not None and (group_size <= 0 or group_size % 2):
    raise ValueError(f'group_size={group_size!r} must be a positive even integer or None')
  w = np.asarray(jax.device_get(w), np.float32)
  order = _order(w.ndim, in_axes)
  i = math.prod(w.shape[a] for a in in_axes)
  w_IxO = np.transpose(w, order).reshape(i, -1)
  g = group_size or i + i % 2
  w_IxO = np.pad(w_IxO, ((0, -i % g), (0, 0)))
  w_JxZxO = w_IxO.reshape(-1, g, w_IxO.shape[-1])
  scales_Jx1xO = np.max(np.abs(w_JxZxO), axis=1, keepdims=True) / QMAX[bits]
  scales_Jx1xO = np.where(scales_Jx1xO > 0, scales_Jx1xO, 1.0).astype(np.float32)
  q = np.clip(np.round(w_JxZxO / scales_Jx1xO), -QMAX[bits], QMAX[bits]).astype(np.int8)
  values = _pack_int4(q) if bits == 4 else q
  return QuantizedTensor(jnp.asarray(values), jnp.asarray(scales_Jx1xO), tuple(w.shape),
                         tuple(in_axes), bits)


def quantize_params(params, bits: int = 8, group_size: int | None = None):
  """Every matrix (ndim >= 2 per layer) of a plain params tree quantised; scanned layer axes kept
  per layer; vectors (norm scales, scanned or not), biases of any shape and Mamba's A_log left
  as they are.

  Typical choices: int8 per-channel (`group_size=None`), int4 with `group_size=32..128`.
  """
  # Boxed trees (straight from `init`) hold LogicallyPartitioned leaves, which have no ndim:
  # unboxed first, or nothing would be quantised.
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(nn.unbox(params)))
  out = {}
  for path, w in flat.items():
    per_layer_ndim = getattr(w, 'ndim', 0) - ('layers' in path)  # scanned: a leading layer axis
    if per_layer_ndim < 2 or path[-1] in KEPT_EXACT or _is_bias(path[-1]):
      out[path] = w
      continue
    in_axes = IN_AXES.get(path[-1], (0,))
    if 'layers' in path:  # scanned: axis 0 is the layer axis
      in_axes = tuple(a + 1 for a in in_axes)
    out[path] = quantize_tensor(w, bits, group_size, in_axes)
  return flax.traverse_util.unflatten_dict(out)


def is_quantized(x) -> bool:
  return isinstance(x, QuantizedTensor)


def dequantize_params(params, dtype=jnp.float32):
  """Quantised leaves back to float `dtype`; float leaves unchanged. Call it inside jit."""
  return jax.tree.map(lambda x: x.dequantize(dtype) if is_quantized(x) else x, params,
                      is_leaf=is_quantized)


def params_nbytes(params) -> int:
  """Device bytes the tree holds (quantised values plus scales, or float leaves)."""
  leaves = jax.tree.leaves(params, is_leaf=is_quantized)
  return sum(x.nbytes for x in leaves)
