"""The coordinate check of muP (Yang et al. 2022, appendix D.1): the size of activations after a
few Adam steps, against width. Under muP they stay flat as width grows; under the standard
parametrisation the logits and the residual stream grow with width.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from research.model import Transformer
from research.model.init import init_params
from research.train.optimizer import make_optimizer
from research.train.state import TrainState
from research.train.step import make_train_step


def activation_sizes(config: ml_collections.ConfigDict, steps: int = 4, batch_size: int = 8,
                     seq_len: int = 16, seed: int = 0) -> dict:
  """Mean |coordinate| of the logits and of the last block's output after `steps` Adam steps
  (the config's optimizer, per-layer muP rates included) on one fixed batch of random tokens."""
  m = config.model
  optimizer = make_optimizer(config.train, m)
  params = init_params(m, seed=seed)
  tokens = jax.random.randint(jax.random.key(seed), (batch_size, seq_len + 1), 0, m.vocab_size)
  batch = {'inputs': tokens[:, :-1], 'targets': tokens[:, 1:]}
  step = jax.jit(make_train_step(m, optimizer))
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     opt_state=optimizer.init(params))
  for _ in range(steps):
    state, _ = step(state, batch)
  logits, captured = Transformer(m).apply({'params': state.params}, batch['inputs'],
                                          capture_intermediates=True, mutable=['intermediates'])
  block = captured['intermediates'][f'layers_{m.num_layers - 1}']['__call__'][0][0]
  return {'logits': float(jnp.mean(jnp.abs(logits))), 'block': float(jnp.mean(jnp.abs(block)))}


def width_slopes(configs_by_width: dict, **kwargs) -> tuple[dict, dict]:
  """({width: activation_sizes}, {'logits': slope, 'block': slope}) with each slope that of log
  size against log width (0: flat)."""
  sizes = {w: activation_sizes(c, **kwargs) for w, c in sorted(configs_by_width.items())}
  widths = np.log(list(sizes))
  slopes = {k: float(np.polyfit(widths, np.log([s[k] for s in sizes.values()]), 1)[0])
            for k in ('logits', 'block')}
  return sizes, slopes
