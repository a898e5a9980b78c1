"""Weight-only int8/int4 quantisation of a params tree, read by CPU kernels or dequantised inside
the jitted step.

Each matrix is viewed as [I, O] (I: the axes a matmul contracts, O: the rest) and cut into J
groups of `group_size` along I; each output channel and group gets one float32 scale,
max|w| / qmax (symmetric, round to nearest). `group_size=None` is per-channel (one group spans all
of I). Values are stored output-major, [O, J, G], the layout the CPU kernels read
(research/inference/cpu_kernels.py); int4 values are packed two to a byte, element k of a group
with element k + G/2. So device memory holds 1 (int8) or 1/2 (int4) byte per weight plus the
scales. Norm scales and biases (1-D leaves) stay in float.

`Decoder` passes the matrices that the model multiplies through research/model/weights.py as
QuantizedTensors, whose `matmul` runs the CPU kernel for a few rows of x (decoding steps) and
otherwise dequantises (prefill, other backends); every other quantised leaf is dequantised.
"""

from __future__ import annotations

import math

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from research.inference import cpu_kernels
from research.model import weights

QMAX = {8: 127, 4: 7}
# Contracted axes of each matrix, by leaf name; anything else contracts its first axis.
IN_AXES = {'embed': (1,), 'embedding': (1,), 'out': (0, 1)}
# Not weight matrices: Mamba's per-state decay rates (exp(-exp(A_log) dt) is sensitive to them).
KEPT_EXACT = ('A_log',)
# `matmul` calls the CPU kernel up to this many rows of x (decoding steps); above it, a float
# copy amortised over the rows is faster (prefill). experiments.bench_quantized_matmul measures both.
KERNEL_MAX_ROWS = 32


def _is_bias(name: str) -> bool:
  """Biases stay in float even when they are [N, H] (attention's query/key/value biases)."""
  return name == 'bias' or name.endswith('_bias')


@struct.dataclass
class QuantizedTensor:
  """int8 values [.., O, J, G] (int4: packed uint8 [.., O, J, G/2]) and scales [.., O, J] of a
  matrix of `shape`; leading axes `..` (a scanned layer axis) hold stacked matrices."""
  values: jax.Array
  scales: jax.Array
  shape: tuple[int, ...] = struct.field(pytree_node=False)
  in_axes: tuple[int, ...] = struct.field(pytree_node=False)
  bits: int = struct.field(pytree_node=False)

  @property
  def in_dims(self) -> tuple[int, ...]:
    return tuple(self.shape[a] for a in self.in_axes)

  @property
  def out_dims(self) -> tuple[int, ...]:
    return tuple(n for a, n in enumerate(self.shape) if a not in self.in_axes)

  def _float_OxI(self, values, scales):
    """[.., O, I] float32 of (some rows of) the values and their scales."""
    q = _unpack_int4(values) if self.bits == 4 else values
    w = q.astype(jnp.float32) * scales[..., None]
    return w.reshape(*w.shape[:-2], -1)[..., :math.prod(self.in_dims)]

  def dequantize(self, dtype=jnp.float32):
    """The float matrix, in its original shape (leading stacked axes first)."""
    w_OxI = self._float_OxI(self.values, self.scales)
    lead = w_OxI.shape[:-2]
    order = _order(len(self.shape), self.in_axes)
    w = jnp.swapaxes(w_OxI, -1, -2).reshape(*lead, *(self.shape[a] for a in order))
    back = [len(lead) + a for a in np.argsort(order)]
    return jnp.transpose(w, [*range(len(lead)), *back]).astype(dtype)

  def matmul(self, x):
    """x [.., *in_dims] times the matrix -> float32 [.., *out_dims]: through the CPU kernel for
    up to KERNEL_MAX_ROWS rows of x, else as a float product."""
    n_in, i = len(self.in_dims), math.prod(self.in_dims)
    if x.shape[x.ndim - n_in:] != self.in_dims or self.values.ndim != 3:
      raise ValueError(f'QuantizedTensor.matmul: x {x.shape} does not end in the contracted '
                       f'dims {self.in_dims} of one matrix of shape {self.shape}')
    lead = x.shape[:x.ndim - n_in]
    x_MxI = x.reshape(-1, i).astype(jnp.float32)
    if x_MxI.shape[0] <= KERNEL_MAX_ROWS and _kernel_here():
      padded = self.scales.shape[1] * self.values.shape[2] * (8 // self.bits)
      y_MxO = cpu_kernels.quantized_matmul(jnp.pad(x_MxI, ((0, 0), (0, padded - i))),
                                           self.values, self.scales, self.bits)
    else:
      y_MxO = jnp.einsum('mi,oi->mo', x_MxI, self._float_OxI(self.values, self.scales))
    return y_MxO.reshape(*lead, *self.out_dims)

  def take(self, ids):
    """Rows `ids` of a [V, D] embedding quantised along D (in_axes (1,)) -> float32 [.., D]."""
    if self.in_axes != (1,) or len(self.shape) != 2:
      raise ValueError(f'QuantizedTensor.take: needs a [V, D] matrix quantised along D, got '
                       f'shape {self.shape} with in_axes {self.in_axes}')
    return self._float_OxI(jnp.take(self.values, ids, axis=0), jnp.take(self.scales, ids, axis=0))

  @property
  def nbytes(self) -> int:
    return self.values.nbytes + self.scales.nbytes


def _kernel_here() -> bool:
  return jax.default_backend() == 'cpu' and cpu_kernels.available()


def _order(ndim: int, in_axes: tuple[int, ...]) -> list[int]:
  return list(in_axes) + [a for a in range(ndim) if a not in in_axes]


def _pack_int4(q):
  """[.., G] int8 in [-7, 7] -> [.., G/2] uint8: element k low nibble, k + G/2 high, offset 8."""
  u = (q + 8).astype(np.uint8)
  half = q.shape[-1] // 2
  return u[..., :half] | (u[..., half:] << 4)


def _unpack_int4(packed):
  low = (packed & 0xF).astype(jnp.int8) - 8
  high = (packed >> 4).astype(jnp.int8) - 8
  return jnp.concatenate([low, high], axis=-1)


def quantize_tensor(w, bits: int, group_size: int | None, in_axes: tuple[int, ...],
                    stacked: int = 0):
  """One matrix (after `stacked` leading axes of copies) -> QuantizedTensor; I is zero-padded up
  to a multiple of the group size (int4 per-channel: to an even size).

  Computed on the host in NumPy (a one-off, with no compilation per shape).
  """
  if bits not in QMAX:
    raise ValueError(f'bits={bits!r}: expected one of {sorted(QMAX)}')
  if group_size is not None and (group_size <= 0 or group_size % 2):
    raise ValueError(f'group_size={group_size!r} must be a positive even integer or None')
  w = np.asarray(jax.device_get(w), np.float32)
  lead, shape = w.shape[:stacked], w.shape[stacked:]
  order = _order(len(shape), in_axes)
  i = math.prod(shape[a] for a in in_axes)
  w_OxI = np.transpose(w, [*range(stacked), *(stacked + a for a in order)])
  w_OxI = np.swapaxes(w_OxI.reshape(*lead, i, -1), -1, -2)
  g = group_size or (i + i % 2 if bits == 4 else i)
  w_OxI = np.pad(w_OxI, [(0, 0)] * (w_OxI.ndim - 1) + [(0, -i % g)])
  w_OxJxZ = w_OxI.reshape(*w_OxI.shape[:-1], -1, g)
  scales_OxJ = np.max(np.abs(w_OxJxZ), axis=-1) / QMAX[bits]
  scales_OxJ = np.where(scales_OxJ > 0, scales_OxJ, 1.0).astype(np.float32)
  q = np.clip(np.round(w_OxJxZ / scales_OxJ[..., None]), -QMAX[bits], QMAX[bits]).astype(np.int8)
  values = _pack_int4(q) if bits == 4 else q
  return QuantizedTensor(jnp.asarray(values), jnp.asarray(scales_OxJ), tuple(shape),
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
    in_axes = IN_AXES.get(path[-1], (0,))  # scanned: one matrix per layer, stacked
    out[path] = quantize_tensor(w, bits, group_size, in_axes, stacked=int('layers' in path))
  return flax.traverse_util.unflatten_dict(out)


def is_quantized(x) -> bool:
  return isinstance(x, QuantizedTensor)


def dequantize_params(params, dtype=jnp.float32):
  """Quantised leaves back to float `dtype`; float leaves unchanged. Call it inside jit."""
  return jax.tree.map(lambda x: x.dequantize(dtype) if is_quantized(x) else x, params,
                      is_leaf=is_quantized)


def model_variables(params) -> dict:
  """A params tree, float or quantised -> the variables a Transformer applies with: quantised
  matrices the model multiplies itself (research/model/weights.py) in 'quantized', every other
  quantised leaf dequantised into 'params'. Call it inside jit."""
  flat = flax.traverse_util.flatten_dict(params)
  floats, kept = {}, {}
  for path, x in flat.items():
    if is_quantized(x) and weights.reads_quantized(path, len(x.shape)):
      kept[path] = x
    else:
      floats[path] = x.dequantize() if is_quantized(x) else x
  variables = {'params': flax.traverse_util.unflatten_dict(floats)}
  if kept:
    variables[weights.QUANTIZED] = flax.traverse_util.unflatten_dict(kept)
  return variables


def params_nbytes(params) -> int:
  """Device bytes the tree holds (quantised values plus scales, or float leaves)."""
  leaves = jax.tree.leaves(params, is_leaf=is_quantized)
  return sum(x.nbytes for x in leaves)
