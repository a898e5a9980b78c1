"""The pipeline schedule a run's config and mesh ask for, and the checks it needs."""

from __future__ import annotations

import ml_collections

from research.model.pipeline import SCHEDULES, Schedule


def _fail(field: str, value, why: str):
  raise ValueError(f'{field}={value!r}: {why}')


def pipeline_schedule(train_config: ml_collections.ConfigDict,
                      num_stages: int) -> Schedule | None:
  """The schedule over `num_stages` stages (the mesh's 'stage' size); None without stages."""
  if num_stages <= 1:
    return None
  t = train_config
  repeats = t.get('pipeline_repeats', 2) if t.get('pipeline_schedule', 'gpipe') == 'circular' \
      else 1
  return Schedule(num_stages, t.get('pipeline_microbatches', 0) or num_stages, repeats)


def check_pipeline(config: ml_collections.ConfigDict, num_stages: int, stage_axes: tuple,
                   batch_shards: int) -> None:
  """ValueError naming the field when the pipeline fields, or a model on `num_stages` > 1
  stages (the mesh's 'stage' size), cannot run: `stage_axes` are the mesh axes of logical
  'layers', `batch_shards` the devices a micro-batch is split over."""
  t, m = config.train, config.model
  name = t.get('pipeline_schedule', 'gpipe')
  if name not in SCHEDULES:
    _fail('train.pipeline_schedule', name, f'unknown; expected one of {SCHEDULES}')
  for field, low in (('pipeline_microbatches', 0), ('pipeline_repeats', 1)):
    value = t.get(field, low)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
      _fail(f'train.{field}', value, f'must be an integer >= {low}')
  schedule = pipeline_schedule(t, num_stages)
  if schedule is None:
    return
  if stage_axes != ('stage',):
    _fail('mesh.rules', config.mesh.rules, "pipeline stages need the logical axis 'layers' "
          f"mapped to the mesh axis 'stage' alone (it maps to {stage_axes})")
  if not m.scan_layers:
    _fail('model.scan_layers', m.scan_layers, 'pipeline stages split the scanned layer stack; '
          'set it True')
  if m.dropout_rate:
    _fail('model.dropout_rate', m.dropout_rate, 'pipelined layers run without dropout; set 0')
  if t.objective != 'causal':
    _fail('train.objective', t.objective, 'pipelined layers take no prefix mask; use causal')
  s, mb, r = schedule.num_stages, schedule.num_microbatches, schedule.num_repeats
  if name == 'circular' and r < 2:
    _fail('train.pipeline_repeats', r, 'a circular schedule needs at least 2 chunks per stage')
  # MoE layers every moe_every > 1 layers are scanned, so pipelined, in groups of moe_every.
  group = m.moe_every if m.num_experts and m.moe_every > 1 else 1
  if (m.num_layers // group) % (s * r):
    unit = f' groups of moe_every={group} layers' if group > 1 else ''
    _fail('model.num_layers', m.num_layers, f'must divide evenly into {s} stages x {r} chunks'
          f'{unit}')
  if name == 'circular' and mb < s:
    _fail('train.pipeline_microbatches', mb, f'a circular schedule needs at least one '
          f'microbatch per stage ({s})')
  micro = t.batch_size // t.grad_accum_steps
  if micro % mb or (micro // mb) % batch_shards:
    _fail('train.pipeline_microbatches', mb, f'each micro-batch ({micro} sequences) must cut '
          f'into {mb} microbatches that divide evenly over the {batch_shards} batch shards')
