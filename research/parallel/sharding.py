"""Shardings derived from logical axis names: parameters, what follows them, and token batches."""

from __future__ import annotations

import flax.linen as nn
import jax
import optax
from jax.sharding import NamedSharding, PartitionSpec

BATCH_AXES = ('batch', 'length')


def logical_shardings(boxed_tree, mesh, rules):
  """NamedShardings of a tree whose leaves carry logical axis names (boxed params, caches)."""
  return nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed_tree), mesh, rules)


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def optimizer_state_shardings(optimizer, abstract_params, param_shardings, mesh):
  """The optimizer state's shardings: moments follow their params, counters replicate."""
  opt_abstract = jax.eval_shape(optimizer.init, abstract_params)
  return optax.tree_map_params(
      optimizer, lambda _, sharding: sharding, opt_abstract, param_shardings,
      transform_non_params=lambda _: replicated(mesh),
      is_leaf=lambda x: isinstance(x, NamedSharding))


def batch_sharding(mesh, rules) -> NamedSharding:
  """Token batches [B, T] are split along the batch over the data-parallel mesh axes."""
  return NamedSharding(mesh, nn.logical_to_mesh_axes(BATCH_AXES, rules))


def global_batch(local_batch: dict, sharding: NamedSharding) -> dict:
  """Assemble the global batch from each process's rows, without any host holding all of it."""
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()}
