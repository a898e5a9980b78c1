"""muP (`model.parametrization='mup'`): the forward pass against an independent NumPy one, init
and Adam learning rates scaled per layer, and the coordinate check: activations keep their size
as width grows after a few Adam steps, where the standard parametrisation's grow with width."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.config import base_config
from research.model import Transformer
from research.model.init import init_params
from research.train import coordinate_check
from research.train.optimizer import make_optimizer
from tests import numpy_reference

HEAD = 16


def config(width, parametrization='mup', base_width=32, layers=2, **model):
  c = base_config()
  c.model.update(vocab_size=128, d_model=width, num_layers=layers, num_heads=width // HEAD,
                 num_kv_heads=width // HEAD, d_ff=4 * width, max_seq_len=16,
                 parametrization=parametrization, mup_base_width=base_width, **model)
  c.train.update(learning_rate=1e-2, warmup_steps=0, schedule='constant', weight_decay=0.0,
                 grad_clip_norm=0.0, loss_chunk_len=0)
  return c


@pytest.mark.parametrize('tied', [True, False])
def test_forward_matches_numpy_with_mup_scalings(tied):
  c = config(96, base_width=32, tied_embedding=tied, position='rope').model
  params = init_params(c, seed=3)
  params = jax.tree.map(lambda p: p + 0.02 * jax.random.normal(jax.random.key(1), p.shape),
                        params)  # biases and norms away from 0 and 1
  tokens = np.random.default_rng(0).integers(0, 128, (1, 11))
  logits = Transformer(c).apply({'params': params}, jnp.asarray(tokens))[0]
  expected = numpy_reference.forward(c, jax.tree.map(lambda p: np.asarray(p, np.float64), params),
                                     tokens[0], attention_scale=1 / HEAD, logit_multiplier=1 / 3)
  np.testing.assert_allclose(np.asarray(logits), expected, rtol=2e-4, atol=2e-5)


def test_init_scales_hidden_matrices_by_one_over_root_width_multiplier():
  stds = {}
  for width, kind in ((64, 'standard'), (256, 'standard'), (256, 'mup')):
    p = init_params(config(width, kind, base_width=64).model, seed=0)
    stds[width, kind] = {name: float(np.std(p['layers_0'][part][name]))
                         for part, name in (('attn', 'query'), ('mlp', 'wi'))}
    stds[width, kind]['embed'] = float(np.std(p['embed']))
  for name in ('query', 'wi'):
    assert stds[256, 'standard'][name] == pytest.approx(0.02, rel=0.05)
    assert stds[256, 'mup'][name] == pytest.approx(0.02 / 2, rel=0.05)  # m = 4
  assert stds[256, 'mup']['embed'] == pytest.approx(0.02, rel=0.05)


def test_multi_token_heads_are_initialised_like_the_hidden_layers_under_mup():
  layers = 2
  for kind, want in (('standard', 0.02), ('mup', 0.02 / 2)):  # m = 256 / 64 = 4
    p = init_params(config(256, kind, base_width=64, layers=layers, mtp_heads=1).model, seed=0)
    head = p['mtp']['head_0_mlp']
    assert float(np.std(head['wi'])) == pytest.approx(want, rel=0.05)
    assert float(np.std(head['wo'])) == pytest.approx(want / np.sqrt(2 * layers), rel=0.05)


def test_adam_learning_rate_of_hidden_matrices_is_divided_by_the_width_multiplier():
  c = config(128, 'mup', base_width=32)  # m = 4
  params = init_params(c.model, seed=0)
  grads = jax.tree.map(lambda p: jnp.ones_like(p), params)
  updates = {}
  for kind in ('standard', 'mup'):
    optimizer = make_optimizer(c.train, config(128, kind, base_width=32).model)
    updates[kind], _ = optimizer.update(grads, optimizer.init(params), params)
  flat = lambda u: {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(u)}
  standard, mup_ = flat(updates['standard']), flat(updates['mup'])
  for key, u in standard.items():
    ratio = float(jnp.max(jnp.abs(mup_[key]))) / float(jnp.max(jnp.abs(u)))
    hidden = any(f"['{n}']" in key for n in ('query', 'key', 'value', 'out', 'wi', 'wo'))
    assert ratio == pytest.approx(0.25 if hidden else 1.0, rel=1e-5), key


@pytest.mark.slow
def test_coordinate_check():
  widths = (32, 64, 128, 256)
  slopes = {}
  for kind in ('standard', 'mup'):
    sizes, slopes[kind] = coordinate_check.width_slopes({w: config(w, kind) for w in widths})
    print(kind, {w: {k: round(v, 3) for k, v in s.items()} for w, s in sizes.items()},
          'slopes in log width:', {k: round(v, 3) for k, v in slopes[kind].items()})
  # muP: flat in width; standard: the logits and the residual stream grow with width.
  assert abs(slopes['mup']['logits']) < 0.25 and abs(slopes['mup']['block']) < 0.25
  assert slopes['standard']['logits'] > 0.5 and slopes['standard']['block'] > 0.5
