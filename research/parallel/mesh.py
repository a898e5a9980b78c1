"""The device mesh (data, stage, fsdp, expert, tensor), built and validated from `config.mesh`.

`mesh.ici` is the shape inside a slice (or host group linked by fast interconnect) and `mesh.dcn`
the shape across slices; -1 in `ici` means "all remaining devices". Each has 5 entries, one per
axis, or 3 for (data, fsdp, tensor) with no pipeline stages and no expert parallelism (the form of
configs written before 'stage' and 'expert' existed; they keep their meaning and their run ids).
"""

from __future__ import annotations

import math

import jax
import ml_collections
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh

MESH_AXES = ('data', 'stage', 'fsdp', 'expert', 'tensor')
SHORT_AXES = ('data', 'fsdp', 'tensor')  # the 3-entry form: stage = expert = 1


def default_mesh_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.ici = (-1, 1, 1)  # (data, fsdp, tensor) or (data, stage, fsdp, expert, tensor); -1: the rest
  c.dcn = (1, 1, 1)  # the same across slices
  return c


def full_shape(name: str, shape) -> tuple[int, ...]:
  """A 3-entry (data, fsdp, tensor) or 5-entry shape as the 5 sizes of MESH_AXES."""
  shape = tuple(int(x) for x in shape)
  if len(shape) == len(SHORT_AXES):
    return (shape[0], 1, shape[1], 1, shape[2])
  if len(shape) != len(MESH_AXES):
    raise ValueError(f'{name}={shape}: needs one size per axis {MESH_AXES}, or three for '
                     f'{SHORT_AXES}')
  return shape


def axis_size(shape, axis: str) -> int:
  """The size of one named axis in a resolved 5-entry shape."""
  return shape[MESH_AXES.index(axis)]


def resolve_shape(ici, dcn, num_devices: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """Fill in -1 and check that ici x dcn uses exactly `num_devices`; errors name the field.

  Returns 5-entry shapes (data, stage, fsdp, expert, tensor).
  """
  # Messages show the shapes as written (3 or 5 entries).
  ici_text = tuple(int(x) for x in ici)
  dcn_text = tuple(int(x) for x in dcn)
  ici, dcn = full_shape('mesh.ici', ici), full_shape('mesh.dcn', dcn)
  for name, shape, text in (('mesh.ici', ici, ici_text), ('mesh.dcn', dcn, dcn_text)):
    if any(x == 0 or x < -1 for x in shape):
      raise ValueError(f'{name}={text}: sizes must be positive or -1')
  if -1 in dcn:
    raise ValueError(f'mesh.dcn={dcn_text}: -1 is only allowed in mesh.ici')
  if ici.count(-1) > 1:
    raise ValueError(f'mesh.ici={ici_text}: at most one -1')
  slices = math.prod(dcn)
  if num_devices % slices:
    raise ValueError(f'mesh.dcn={dcn_text}: {slices} slices do not divide the {num_devices} '
                     'devices')
  per_slice = num_devices // slices
  if -1 in ici:
    known = math.prod(x for x in ici if x != -1)
    if per_slice % known:
      raise ValueError(f'mesh.ici={ici_text}: {known} does not divide the {per_slice} devices '
                       'per slice')
    ici = tuple(per_slice // known if x == -1 else x for x in ici)
  if math.prod(ici) != per_slice:
    raise ValueError(f'mesh.ici={ici_text} x mesh.dcn={dcn_text} uses '
                     f'{math.prod(ici) * slices} devices, but {num_devices} are available')
  return ici, dcn


def make_mesh(mesh_config: ml_collections.ConfigDict, devices=None) -> Mesh:
  """A `Mesh` over `devices` (all by default) with Auto axis types, as flax's gathers need."""
  devices = list(jax.devices() if devices is None else devices)
  ici, dcn = resolve_shape(mesh_config.ici, mesh_config.dcn, len(devices))
  if math.prod(dcn) > 1:
    array = mesh_utils.create_hybrid_device_mesh(ici, dcn, devices)
  elif len(devices) == len(jax.devices()):
    array = mesh_utils.create_device_mesh(ici, devices)
  else:
    array = np.asarray(devices).reshape(ici)
  shape = tuple(i * d for i, d in zip(ici, dcn))
  return Mesh(np.asarray(array).reshape(shape), MESH_AXES,
              axis_types=(AxisType.Auto,) * len(MESH_AXES))
