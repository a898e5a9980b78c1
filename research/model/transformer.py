"""The decoder-only transformer: embeddings, positions, a stack of blocks, final norm, logits."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from research.model import mup
from research.model import pipeline as pipeline_lib
from research.model import positions as positions_lib
from research.model import weights
from research.model.block import Block, BlockGroup
from research.model.config import (REMAT_POLICIES, is_moe_layer, layer_mixer, mtp_field,
                                   resolve_dtype, validate_model_config)
from research.model.moe import COLLECTION as MOE_COLLECTION, from_microbatch_means
from research.model.mtp import MTPHeads
from research.model.norms import Norm


def scan_groups(c: ml_collections.ConfigDict) -> bool:
  """Whether scanned layers are scanned in groups (dense and MoE layers alternating)."""
  return c.scan_layers and c.num_experts > 0 and c.moe_every > 1


def _block_class(c: ml_collections.ConfigDict, decode: bool):
  """The block (or group of blocks), wrapped in remat (training only) and scan as the config asks.

  Scanned decoding stacks each layer's cache on a leading layer axis, like the params; so are the
  values MoE layers sow.
  """
  block = BlockGroup if scan_groups(c) else Block
  if c.remat != 'none' and not decode:
    block = nn.remat(block, policy=REMAT_POLICIES[c.remat], prevent_cse=not c.scan_layers)
  if c.scan_layers:
    variable_axes = {'params': 0, MOE_COLLECTION: 0, weights.QUANTIZED: 0}
    if decode:
      variable_axes['cache'] = 0
    length = c.num_layers // c.moe_every if scan_groups(c) else c.num_layers
    block = nn.scan(block, variable_axes=variable_axes,
                    split_rngs={'params': True, 'dropout': True}, in_axes=nn.broadcast,
                    length=length, metadata_params={nn.PARTITION_NAME: 'layers'})
  return block


def _layer_fn(c: ml_collections.ConfigDict, deterministic: bool):
  """`(one layer's params, x, positions) -> x`: a scanned layer (or group of layers) as a pure
  function (pipeline); with experts `-> (x, what its MoE layers sowed)`."""
  if scan_groups(c):
    block = BlockGroup(c, deterministic, False, parent=None)
  else:
    block = Block(c, deterministic, False, c.num_experts > 0, layer_mixer(c, 0), parent=None)

  def fn(params, x_BxTxD, positions_BxT):
    if not c.num_experts:
      return block.apply({'params': params}, x_BxTxD, positions_BxT)[0]
    (x_BxTxD, _), sown = block.apply({'params': params}, x_BxTxD, positions_BxT,
                                     mutable=[MOE_COLLECTION])
    return x_BxTxD, sown[MOE_COLLECTION]
  if c.remat != 'none':
    fn = jax.checkpoint(fn, policy=REMAT_POLICIES[c.remat])
  return fn


def _decode_positions(module, tokens_BxT, positions_BxT):
  """Decoding: positions default to each row's cache index onward; the index moves past them."""
  index = module.variable('cache', 'index',
                          nn.with_logical_partitioning(jnp.zeros, ('batch',)),
                          tokens_BxT.shape[:1], jnp.int32)
  if positions_BxT is None:
    positions_BxT = index.value[:, None] + jnp.arange(tokens_BxT.shape[1], dtype=jnp.int32)
  if not module.is_initializing():
    index.value = positions_BxT[:, -1].astype(jnp.int32) + 1
  return positions_BxT


class Transformer(nn.Module):
  """`Transformer(model_config).apply({'params': p}, tokens_BxT)` -> float32 logits [B, T, vocab].

  `positions_BxT` defaults to 0..T-1; pass `deterministic=False` and a 'dropout' rng to train with
  dropout. `return_hidden=True` returns `(hidden_BxTxD, unembed_DxV)` instead of logits, both in
  the compute dtype, for a loss that fuses the output layer (decoding with a quantised output
  layer: that weight, to multiply with `weights.contract`). With `decode=True` (inference) the
  call also reads and updates a 'cache' collection: per-layer keys/values, [B, S, K, H] (Mamba
  layers: convolution inputs and states per slot, see research/model/mamba.py), and per-row
  `index`, the next free slot; positions then default to index..index+T-1, and token t of
  row b is cached at slot `positions[b, t]` (`ring_cache=True`: slot positions mod S). With
  `model.mtp_heads` > 0, `return_mtp=True` returns `(output, heads)`: `heads` holds head k's
  logits [B, T, V] (hidden [B, T, D] with `return_hidden`) for the token k + 2 positions ahead
  (research/model/mtp.py).
  `in_prefix_BxT` (bool, training only) makes attention bidirectional over each row's prefix
  positions (prefix LM; all True for MLM). A `pipeline` schedule of more than one stage runs the
  scanned layers as pipeline stages over microbatches (research/model/pipeline.py; training and
  evaluation, not decoding); the params keep their layout, and MoE layers' 'moe' collection
  keeps the scanned layout with whole-batch values (`moe.from_microbatch_means`).
  """
  config: ml_collections.ConfigDict
  decode: bool = False
  pipeline: pipeline_lib.Schedule | None = None
  # decode with a sliding window: the cache is a ring, position p at slot p mod S (attention.py)
  ring_cache: bool = False

  def setup(self):
    validate_model_config(self.config)

  @nn.compact
  def __call__(self, tokens_BxT, positions_BxT=None, deterministic: bool = True,
               return_hidden: bool = False, return_mtp: bool = False, in_prefix_BxT=None):
    c = self.config
    dtype, param_dtype = resolve_dtype(c.dtype), jnp.dtype(c.param_dtype)
    if self.decode:
      positions_BxT = _decode_positions(self, tokens_BxT, positions_BxT)
    elif positions_BxT is None:
      positions_BxT = jnp.broadcast_to(jnp.arange(tokens_BxT.shape[1]), tokens_BxT.shape)
    # Float params, or in decoding maybe quantised weights (research/model/weights.py).
    embed_VxD = weights.matrix(self, 'embed', nn.initializers.normal(c.init_std),
                               (c.vocab_size, c.d_model), ('vocab', 'embed'), param_dtype)
    x_BxTxD = weights.lookup(embed_VxD, tokens_BxT, dtype)
    added_BxTxD = positions_lib.embedding_positions(c, positions_BxT, dtype, param_dtype)
    if added_BxTxD is not None:
      x_BxTxD += added_BxTxD
    x_BxTxD = nn.Dropout(c.dropout_rate, deterministic=deterministic)(x_BxTxD)

    block = _block_class(c, self.decode)
    if (self.pipeline is not None and self.pipeline.num_stages > 1 and not self.decode
        and not self.is_initializing()):
      x_BxTxD = pipeline_lib.run(self.pipeline, _layer_fn(c, deterministic),
                                 self.variables['params']['layers'], x_BxTxD, positions_BxT,
                                 with_aux=c.num_experts > 0)
      if c.num_experts:  # the layers' sown values, laid out as the scanned stack sows them
        x_BxTxD, sown_L = x_BxTxD
        if self.is_mutable_collection(MOE_COLLECTION):
          self.put_variable(MOE_COLLECTION, 'layers', from_microbatch_means(sown_L))
    elif scan_groups(c):
      x_BxTxD, _ = block(c, deterministic, self.decode, ring_cache=self.ring_cache,
                         name='layers')(x_BxTxD, positions_BxT, in_prefix_BxT)
    elif c.scan_layers:  # one kind of mixer (validation refuses scanning a mixed pattern)
      x_BxTxD, _ = block(c, deterministic, self.decode, c.num_experts > 0, layer_mixer(c, 0),
                         ring_cache=self.ring_cache, name='layers')(x_BxTxD, positions_BxT,
                                                                    in_prefix_BxT)
    else:
      for i in range(c.num_layers):
        x_BxTxD, _ = block(c, deterministic, self.decode, is_moe_layer(c, i), layer_mixer(c, i),
                           ring_cache=self.ring_cache, name=f'layers_{i}')(
                               x_BxTxD, positions_BxT, in_prefix_BxT)

    heads = ()
    if mtp_field(c, 'mtp_heads') and (return_mtp or self.is_initializing()):
      heads = MTPHeads(c, name='mtp')(x_BxTxD)
    if c.final_norm:
      x_BxTxD = Norm(c.norm, c.norm_eps, dtype, param_dtype, name='final_norm')(x_BxTxD)
    if c.tied_embedding:  # a quantised embedding already contracts its D axis
      unembed_DxV = embed_VxD if weights.is_quantized(embed_VxD) else embed_VxD.T
    else:
      unembed_DxV = weights.matrix(self, 'unembed', nn.initializers.normal(c.init_std),
                                   (c.d_model, c.vocab_size), ('embed', 'vocab'), param_dtype)
    if not weights.is_quantized(unembed_DxV):
      unembed_DxV = unembed_DxV.astype(dtype)

    def output(h_BxTxD):
      if mup.output_multiplier(c) != 1.0:  # muP: logits / width multiplier
        h_BxTxD = h_BxTxD * mup.output_multiplier(c)
      h_BxTxD = h_BxTxD.astype(dtype)
      if return_hidden:
        return h_BxTxD
      logits_BxTxV = weights.contract('btd,dv->btv', h_BxTxD, unembed_DxV, dtype,
                                      preferred_element_type=jnp.float32)
      return nn.with_logical_constraint(logits_BxTxV, ('batch', 'length', 'vocab'))

    main = (output(x_BxTxD), unembed_DxV) if return_hidden else output(x_BxTxD)
    if return_mtp:
      return main, tuple(output(h_BxTxD) for h_BxTxD in heads)
    return main
