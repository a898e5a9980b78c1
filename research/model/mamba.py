"""The Mamba (selective state-space) mixer of Gu & Dao (2023), as transformers' `MambaMixer`.

in_proj splits x into a stream and a gate z (width F = expand * d_model); the stream goes through
a causal depthwise convolution of Z taps and SiLU; x_proj reads from it the step size (rank R),
B and C (X states each); dt_proj and softplus give dt per channel; with A = -exp(A_log) the
recurrence per channel and state is h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t, read out as
y_t = C_t . h_t + D x_t, gated by SiLU(z) and projected back by out_proj.

Training runs the recurrence in parallel with `jax.lax.associative_scan` over time (log T depth);
`recurrent_scan` is the same recurrence one step at a time (the decoding form and a reference).

With `decode=True` the layer keeps a bounded ring of recent history in the 'cache' collection:
'conv_input' [B, W, F] (the convolution's inputs) and 'ssm_state' [B, W, F, X] (the state after
each position), position p in slot p mod W, W = DECODE_REWIND + max(Z - 1, 1) whatever the cache
length. Tokens at positions p..p+T-1 (consecutive in a row) start from the state stored for p-1
and the inputs for p-Z+1..p-1, so a row may be rewound by up to DECODE_REWIND positions (rejected
speculative drafts, right-padded prompts) by moving its index, as for attention. A step reads and
writes one slot: compute and memory per token are constant in the context length.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

CONV_CACHE_AXES = ('batch', None, 'mlp')
STATE_CACHE_AXES = ('batch', None, 'mlp', None)
DECODE_REWIND = 32  # positions a decoding row may step back (speculative drafts, prompt padding)


def ring_slots(d_conv: int) -> int:
  """W, the decode cache's slots: enough history to restart up to DECODE_REWIND positions back
  (the state before the restart and the Z - 1 inputs before it)."""
  return DECODE_REWIND + max(d_conv - 1, 1)


def dt_rank(d_model: int, rank: int) -> int:
  """The step-size rank R: `rank`, or ceil(d_model / 16) when it is 0 (Mamba's 'auto')."""
  return rank or math.ceil(d_model / 16)


def causal_conv(x_BxTxF, prefix_BxZ1xF, kernel_ZxF, bias_F):
  """Depthwise causal convolution: out_t = sum_j kernel_j x_{t - Z + 1 + j} + bias, where the
  Z - 1 inputs before the first come from `prefix_BxZ1xF` (zeros at the start of a sequence)."""
  z, t = kernel_ZxF.shape[0], x_BxTxF.shape[1]
  padded_BxTZ1xF = jnp.concatenate([prefix_BxZ1xF.astype(x_BxTxF.dtype), x_BxTxF], axis=1)
  out_BxTxF = sum(padded_BxTZ1xF[:, j:j + t] * kernel_ZxF[j] for j in range(z))
  return out_BxTxF + bias_F


def _discretize(dt_BxTxF, a_FxX, b_BxTxX, x_BxTxF):
  """exp(dt A) and dt B x, [B, T, F, X] each, in float32."""
  decay_BxTxFxX = jnp.exp(dt_BxTxF[..., None] * a_FxX)
  drive_BxTxFxX = dt_BxTxF[..., None] * b_BxTxX[:, :, None, :] * x_BxTxF[..., None]
  return decay_BxTxFxX, drive_BxTxFxX


def parallel_scan(dt_BxTxF, a_FxX, b_BxTxX, c_BxTxX, x_BxTxF, h0_BxFxX):
  """Every position's state h [B, T, F, X] and readout y = C . h [B, T, F], by associative scan.

  Composing two steps h -> a1 h + b1 -> a2 (a1 h + b1) + b2 is (a1 a2, a2 b1 + b2); the initial
  state is folded into the first step's drive.
  """
  decay_BxTxFxX, drive_BxTxFxX = _discretize(dt_BxTxF, a_FxX, b_BxTxX, x_BxTxF)
  drive_BxTxFxX = drive_BxTxFxX.at[:, 0].add(decay_BxTxFxX[:, 0] * h0_BxFxX)

  def combine(first, second):
    a1, b1 = first
    a2, b2 = second
    return a1 * a2, a2 * b1 + b2

  _, h_BxTxFxX = jax.lax.associative_scan(combine, (decay_BxTxFxX, drive_BxTxFxX), axis=1)
  y_BxTxF = jnp.einsum('btfx,btx->btf', h_BxTxFxX, c_BxTxX)
  return h_BxTxFxX, y_BxTxF


def recurrent_step(h_BxFxX, dt_BxF, a_FxX, b_BxX, c_BxX, x_BxF):
  """One step of the recurrence -> (new state [B, F, X], readout [B, F])."""
  h_BxFxX = jnp.exp(dt_BxF[..., None] * a_FxX) * h_BxFxX + (
      dt_BxF[..., None] * b_BxX[:, None, :] * x_BxF[..., None])
  return h_BxFxX, jnp.einsum('bfx,bx->bf', h_BxFxX, c_BxX)


def recurrent_scan(dt_BxTxF, a_FxX, b_BxTxX, c_BxTxX, x_BxTxF, h0_BxFxX):
  """`parallel_scan` one position at a time (`jax.lax.scan` of `recurrent_step`)."""

  def step(h_BxFxX, inputs):
    h_BxFxX, y_BxF = recurrent_step(h_BxFxX, inputs[0], a_FxX, *inputs[1:])
    return h_BxFxX, (h_BxFxX, y_BxF)

  time_major = lambda v: jnp.moveaxis(v, 1, 0)
  _, (h_TxBxFxX, y_TxBxF) = jax.lax.scan(
      step, h0_BxFxX, tuple(map(time_major, (dt_BxTxF, b_BxTxX, c_BxTxX, x_BxTxF))))
  return jnp.moveaxis(h_TxBxFxX, 0, 1), jnp.moveaxis(y_TxBxF, 0, 1)


def _dt_bias_init(dt_min: float = 1e-3, dt_max: float = 0.1, floor: float = 1e-4):
  """softplus^-1 of step sizes drawn log-uniformly in [dt_min, dt_max] (Mamba's dt init)."""

  def init(key, shape, dtype=jnp.float32):
    u = jax.random.uniform(key, shape)
    dt = jnp.maximum(jnp.exp(u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)),
                     floor)
    return (dt + jnp.log(-jnp.expm1(-dt))).astype(dtype)

  return init


def _symmetric_uniform(bound: float):
  """uniform(-bound, bound), torch's default for the convolution and Mamba's for dt_proj."""
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound,
                                                                  bound)


def _a_log_init(key, shape, dtype=jnp.float32):
  """log(1..X) for every channel: S4D-real's A = -(1..X)."""
  del key
  return jnp.broadcast_to(jnp.log(jnp.arange(1, shape[1] + 1, dtype=jnp.float32)),
                          shape).astype(dtype)


class Mamba(nn.Module):
  """Mamba mixer: [B, T, D] -> [B, T, D] (see the module docstring for the cache)."""
  d_state: int = 16
  d_conv: int = 4
  expand: int = 2
  dt_rank: int = 0  # 0: ceil(d_model / 16)
  use_bias: bool = False  # biases of in_proj and out_proj (the convolution always has one)
  init_std: float = 0.02
  out_init_std: float = 0.02
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32
  decode: bool = False

  def _param(self, name, init, shape, axes):
    return self.param(name, nn.with_logical_partitioning(init, axes), shape, self.param_dtype)

  def _dense(self, name, x, shape, axes, std, bias: bool, bias_axes=None):
    kernel = self._param(name, nn.initializers.normal(std), shape, axes)
    out = jnp.einsum('...i,io->...o', x, kernel.astype(self.dtype))
    if bias:
      out = out + self._param(f'{name}_bias', nn.initializers.zeros, shape[-1:],
                              bias_axes).astype(self.dtype)
    return out

  @nn.compact
  def __call__(self, x_BxTxD, positions_BxT=None):
    d = x_BxTxD.shape[-1]
    f, n_state, z, r = self.expand * d, self.d_state, self.d_conv, dt_rank(d, self.dt_rank)
    x_BxTxD = x_BxTxD.astype(self.dtype)
    xz_BxTx2F = self._dense('in_proj', x_BxTxD, (d, 2 * f), ('embed', 'mlp'), self.init_std,
                            self.use_bias, ('mlp',))
    x_BxTxF, gate_BxTxF = jnp.split(xz_BxTx2F, 2, axis=-1)
    x_BxTxF = nn.with_logical_constraint(x_BxTxF, ('batch', 'length', 'mlp'))
    kernel_ZxF = self._param('conv_kernel', _symmetric_uniform(1 / math.sqrt(z)), (z, f),
                             (None, 'mlp'))
    conv_bias_F = self._param('conv_bias', nn.initializers.zeros, (f,), ('mlp',))
    b = x_BxTxF.shape[0]
    prefix_BxZ1xF = jnp.zeros((b, z - 1, f), self.dtype)
    h0_BxFxX = jnp.zeros((b, f, n_state), jnp.float32)
    cached = self.decode and self.has_variable('cache', 'conv_input')
    if self.decode:
      w = ring_slots(z)
      conv_input = self.variable('cache', 'conv_input',
                                 nn.with_logical_partitioning(jnp.zeros, CONV_CACHE_AXES),
                                 (b, w, f), self.dtype)
      ssm_state = self.variable('cache', 'ssm_state',
                                nn.with_logical_partitioning(jnp.zeros, STATE_CACHE_AXES),
                                (b, w, f, n_state), jnp.float32)
    if cached:
      prefix_BxZ1xF, h0_BxFxX = _read_cache(conv_input.value, ssm_state.value,
                                            positions_BxT[:, 0], z)
    xc_BxTxF = nn.silu(causal_conv(x_BxTxF, prefix_BxZ1xF, kernel_ZxF.astype(self.dtype),
                                   conv_bias_F.astype(self.dtype)))
    dbc_BxTxRX2 = self._dense('x_proj', xc_BxTxF, (f, r + 2 * n_state), ('mlp', None),
                              self.init_std, False)
    dt_BxTxR, b_BxTxX, c_BxTxX = jnp.split(dbc_BxTxRX2, [r, r + n_state], axis=-1)
    dt_kernel_RxF = self._param('dt_proj', _symmetric_uniform(1 / math.sqrt(r)), (r, f),
                                (None, 'mlp'))
    dt_bias_F = self._param('dt_bias', _dt_bias_init(), (f,), ('mlp',))
    dt_BxTxF = jax.nn.softplus(
        jnp.einsum('btr,rf->btf', dt_BxTxR.astype(jnp.float32), dt_kernel_RxF.astype(jnp.float32))
        + dt_bias_F.astype(jnp.float32))
    a_FxX = -jnp.exp(self._param('A_log', _a_log_init, (f, n_state), ('mlp', None))
                     .astype(jnp.float32))
    skip_F = self._param('D', nn.initializers.ones, (f,), ('mlp',)).astype(jnp.float32)
    args = (dt_BxTxF, a_FxX, b_BxTxX.astype(jnp.float32), c_BxTxX.astype(jnp.float32),
            xc_BxTxF.astype(jnp.float32), h0_BxFxX)
    if x_BxTxF.shape[1] == 1:  # one decoding step: the recurrent form
      h_BxFxX, y_BxF = recurrent_step(h0_BxFxX, dt_BxTxF[:, 0], a_FxX, args[2][:, 0],
                                      args[3][:, 0], args[4][:, 0])
      h_BxTxFxX, y_BxTxF = h_BxFxX[:, None], y_BxF[:, None]
    else:
      h_BxTxFxX, y_BxTxF = parallel_scan(*args)
    y_BxTxF = (y_BxTxF + xc_BxTxF.astype(jnp.float32) * skip_F).astype(self.dtype)
    y_BxTxF = y_BxTxF * nn.silu(gate_BxTxF)
    y_BxTxF = nn.with_logical_constraint(y_BxTxF, ('batch', 'length', 'mlp'))
    if cached:
      _write_cache(conv_input, ssm_state, x_BxTxF, h_BxTxFxX, positions_BxT)
    return self._dense('out_proj', y_BxTxF, (f, d), ('mlp', 'embed'), self.out_init_std,
                       self.use_bias, ('embed',))


def _read_cache(conv_input_BxWxF, ssm_state_BxWxFxX, start_B, z: int):
  """The Z - 1 convolution inputs and the state before position `start_B` of each row, from their
  ring slots (zeros before position 0)."""
  w = conv_input_BxWxF.shape[1]
  positions_BxZ1 = start_B[:, None] + jnp.arange(1 - z, 0)
  prefix_BxZ1xF = jnp.take_along_axis(conv_input_BxWxF, (positions_BxZ1 % w)[..., None], axis=1)
  prefix_BxZ1xF = jnp.where((positions_BxZ1 >= 0)[..., None], prefix_BxZ1xF, 0)
  h0_BxFxX = ssm_state_BxWxFxX[jnp.arange(start_B.shape[0]), (start_B - 1) % w]
  h0_BxFxX = jnp.where((start_B > 0)[:, None, None], h0_BxFxX, 0.0)
  return prefix_BxZ1xF, h0_BxFxX


def _write_cache(conv_input, ssm_state, x_BxTxF, h_BxTxFxX, positions_BxT):
  """Stores the inputs and states of the last min(T, W) positions in their ring slots, in place
  (earlier ones would be overwritten within the call anyway)."""
  w = conv_input.value.shape[1]
  rows_Bx1 = jnp.arange(x_BxTxF.shape[0])[:, None]
  slots_BxW = positions_BxT[:, -w:] % w
  conv_input.value = nn.with_logical_constraint(
      conv_input.value.at[rows_Bx1, slots_BxW].set(x_BxTxF[:, -w:].astype(conv_input.value.dtype)),
      CONV_CACHE_AXES)
  ssm_state.value = nn.with_logical_constraint(
      ssm_state.value.at[rows_Bx1, slots_BxW].set(h_BxTxFxX[:, -w:]), STATE_CACHE_AXES)


def numpy_reference(params: dict, x_BxTxD: np.ndarray, d_state: int, d_conv: int,
                    rank: int) -> np.ndarray:
  """The mixer as a plain float64 numpy loop over positions (tests only)."""
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  x = np.asarray(x_BxTxD, np.float64)
  b, t, _ = x.shape
  xz = x @ p['in_proj'] + p.get('in_proj_bias', 0.0)
  xs, gate = np.split(xz, 2, axis=-1)
  f = xs.shape[-1]
  silu = lambda v: v / (1 + np.exp(-v))
  a = -np.exp(p['A_log'])
  out = np.zeros((b, t, f))
  for row in range(b):
    h = np.zeros((f, d_state))
    for i in range(t):
      conv = p['conv_bias'].copy()
      for j in range(d_conv):
        src = i - d_conv + 1 + j
        if src >= 0:
          conv += p['conv_kernel'][j] * xs[row, src]
      xc = silu(conv)
      dbc = xc @ p['x_proj']
      dt_low, bb, cc = dbc[:rank], dbc[rank:rank + d_state], dbc[rank + d_state:]
      dt = np.log1p(np.exp(dt_low @ p['dt_proj'] + p['dt_bias']))
      h = np.exp(dt[:, None] * a) * h + dt[:, None] * bb[None, :] * xc[:, None]
      out[row, i] = (h @ cc + p['D'] * xc) * silu(gate[row, i])
  return out @ p['out_proj'] + p.get('out_proj_bias', 0.0)
