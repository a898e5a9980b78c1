"""The one table mapping the model's logical axis names to mesh axes.

Rules are tried in order; a logical axis whose mesh axis is already used by an earlier dimension of
the same array falls through to the next rule, or stays unsharded. With these defaults: the batch
is split over 'data' and 'fsdp' (data parallelism and ZeRO-3 style FSDP), parameters and optimizer
state are split over 'fsdp' along 'embed', and attention heads, MLP width and vocabulary over
'tensor' (Megatron-style tensor parallelism).

The mesh axes 'stage' (pipeline stages, research/model/pipeline.py; they shard the layers) and
'expert' came later. A table that names neither (every table written before them, the defaults
included) is read with them added: the batch is also split over 'expert' (expert-parallel devices
are data-parallel outside the experts), the stacked layers of scanned params over 'stage', and the
experts of an MoE layer (logical 'exp') over 'expert'. With both axes of size 1 this changes no
sharding, and the stored table, hence the run id, stays as it was. A table that names 'stage' or
'expert' is used as written.
"""

DEFAULT_RULES = (
    ('batch', ('data', 'fsdp')),
    ('length', None),
    ('embed', 'fsdp'),
    ('heads', 'tensor'),
    ('kv_heads', 'tensor'),
    ('head_dim', None),
    ('mlp', 'tensor'),
    ('vocab', 'tensor'),
    ('position', None),
    ('layers', None),
)
LATER_AXES = ('stage', 'expert')


def _axes(mesh_axes) -> tuple:
  if mesh_axes is None:
    return ()
  return (mesh_axes,) if isinstance(mesh_axes, str) else tuple(mesh_axes)


def with_later_axes(rules: tuple) -> tuple:
  """A table that names neither 'stage' nor 'expert', read as described above; others as is."""
  if any(axis in LATER_AXES for _, mesh_axes in rules for axis in _axes(mesh_axes)):
    return rules
  out = []
  for logical, mesh_axes in rules:
    if logical == 'batch':
      mesh_axes = _axes(mesh_axes) + ('expert',)
    elif logical == 'layers' and mesh_axes is None:
      mesh_axes = 'stage'
    out.append((logical, mesh_axes))
  return tuple(out) + (('exp', 'expert'),)


def as_rules(table) -> tuple[tuple[str, object], ...]:
  """Normalise a rules table from a config (lists from JSON) into flax's tuple form."""
  out = []
  for entry in table:
    if len(entry) != 2:
      raise ValueError(f'mesh.rules entry {entry!r}: expected (logical_name, mesh_axes)')
    logical, mesh_axes = entry
    if isinstance(mesh_axes, list):
      mesh_axes = tuple(mesh_axes)
    out.append((logical, mesh_axes))
  return with_later_axes(tuple(out))
