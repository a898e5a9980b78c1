"""Model shapes for a target parameter count, and the FLOP/token arithmetic of scaling sweeps.

A shape is picked either at a fixed aspect ratio d_model / num_layers, as Kaplan et al. (2020) vary
size (their loss is nearly flat in shape over a wide range of aspect ratios, figure 5), or as the
nearest member of a family table such as Hoffmann et al.'s (2022, Chinchilla) table A9. Either way
the counts reported are exact: `counting.predict_param_counts` on the resulting model config.

Compute is C = 6 N D (Kaplan section 2.1; Chinchilla section 3), the convention the fits use; the
detailed Chinchilla appendix F count is `chinchilla_training_flops`. Which N goes into 6 N D is the
caller's choice (`kind`): Kaplan's N excludes embeddings, Chinchilla's includes them.
"""

from __future__ import annotations

import dataclasses
import math
import types
from typing import Sequence

import ml_collections

from research.model import counting

PARAM_KINDS = ('total', 'non_embedding')


@dataclasses.dataclass(frozen=True)
class Shape:
  """The sizes a scaling sweep varies."""
  d_model: int
  num_layers: int
  num_heads: int
  head_dim: int  # size of one attention head
  d_ff: int

  @property
  def aspect_ratio(self) -> float:
    return self.d_model / self.num_layers


@dataclasses.dataclass(frozen=True)
class Sizing:
  """A shape applied to a base model config, with the model's exact parameter counts."""
  model: ml_collections.ConfigDict
  shape: Shape
  counts: counting.ParamCounts
  target: float
  kind: str  # which count `target` refers to: 'total' or 'non_embedding'

  @property
  def params(self) -> int:
    """The count of the kind that was targeted."""
    return getattr(self.counts, self.kind)

  @property
  def relative_error(self) -> float:
    return self.params / self.target - 1


def _chinchilla_shapes() -> tuple[Shape, ...]:
  """Hoffmann et al. (2022) table A9: (d_model, kv_size, n_heads, n_layers), d_ff 4 d_model."""
  rows = (
      (512, 64, 8, 8), (576, 64, 9, 9), (640, 64, 10, 10), (640, 64, 10, 13), (640, 64, 10, 16),
      (768, 64, 12, 12), (768, 64, 12, 15), (768, 64, 12, 18), (896, 64, 14, 14),
      (896, 64, 14, 16), (896, 64, 14, 18), (1024, 64, 16, 16), (1024, 64, 16, 18),
      (1024, 64, 16, 20), (1280, 128, 10, 18), (1280, 128, 10, 21), (1408, 128, 11, 18),
      (1280, 128, 10, 24), (1408, 128, 11, 21), (1536, 128, 12, 19), (1408, 128, 11, 24),
      (1536, 128, 12, 22), (1536, 128, 12, 25), (1792, 128, 14, 20), (1792, 128, 14, 23),
      (1792, 128, 14, 26), (2048, 128, 16, 22), (2176, 128, 17, 22), (2048, 128, 16, 25),
      (2048, 128, 16, 28), (2176, 128, 17, 25), (2304, 128, 18, 24), (2176, 128, 17, 28),
      (2304, 128, 18, 28), (2304, 128, 18, 32), (2560, 128, 20, 26), (2560, 128, 20, 30),
      (2560, 128, 20, 34), (2688, 128, 22, 36), (2816, 128, 22, 36), (2944, 128, 22, 36),
      (3072, 128, 24, 36), (3584, 128, 28, 40), (4096, 128, 32, 42), (4352, 128, 32, 47),
      (4608, 128, 36, 44), (4608, 128, 32, 47), (4864, 128, 32, 47), (4992, 128, 32, 49),
      (5120, 128, 40, 47),
  )
  return tuple(Shape(d, layers, heads, kv, 4 * d) for d, kv, heads, layers in rows)


CHINCHILLA_SHAPES = _chinchilla_shapes()


def _tiny_shapes() -> tuple[Shape, ...]:
  """A CPU-sized family for quick sweeps: every d_model in steps of 16 up to 256 with each depth
  that keeps d_model / num_layers between 16 and 32, plus one 16-wide layer; heads of 16,
  d_ff = 4 d_model. 80 shapes from 3k to 12.6M non-embedding parameters, neighbouring counts
  within 4x of each other (within 1.5x above 100k)."""
  rows = [(16, 1)] + [(d, layers) for d in range(32, 257, 16) for layers in range(1, 17)
                      if 16 <= d / layers <= 32]
  return tuple(Shape(d, layers, d // 16, 16, 4 * d) for d, layers in rows)


TINY_SHAPES = _tiny_shapes()


def _two_layer_shapes(d_step: int = 4) -> tuple[Shape, ...]:
  """The smallest CPU family: two layers of two heads, d_model from 8 to 128 in steps of `d_step`,
  d_ff = 4 d_model. With a 512-token vocabulary, 7k to 0.48M total parameters, neighbouring counts
  within 1.7x (within 1.3x above 30k) in steps of 4: fine steps where `TINY_SHAPES` jumps 2.5x
  (13.6k to 33k), and one depth, so a profile's loss changes with width alone (at these sizes extra
  layers cost more tokens than they give back). Steps of 2 halve the gaps (within 1.35x)."""
  return tuple(Shape(d, 2, 2, d // 2, 4 * d) for d in range(8, 129, d_step))


TWO_LAYER_SHAPES = _two_layer_shapes()
FINE_TWO_LAYER_SHAPES = _two_layer_shapes(d_step=2)  # every even width: odd head sizes too


def feed_forward_size(d_model: int, mlp: str, ratio: float | None = None, multiple: int = 8) -> int:
  """d_ff: 4 d_model for GELU, 8/3 d_model for SwiGLU (same weights), rounded up to `multiple`."""
  if ratio is None:
    ratio = 8 / 3 if mlp == 'swiglu' else 4.0
  if ratio <= 0 or multiple <= 0:
    raise ValueError(f'ff_ratio={ratio!r} and ff_multiple={multiple!r} must be positive')
  return int(math.ceil(ratio * d_model / multiple - 1e-9)) * multiple


def _kv_heads(base: dict, num_heads: int) -> int:
  """Keep the base's query heads per kv head (MHA stays MHA); if num_heads is not a multiple of
  that group, the largest kv head count dividing num_heads below num_heads / group."""
  group = max(1, base['num_heads'] // base['num_kv_heads'])
  kv = max(1, num_heads // group)
  while num_heads % kv:
    kv -= 1
  return kv


def _model_fields(base: dict, shape: Shape) -> dict:
  return {
      'd_model': shape.d_model, 'num_layers': shape.num_layers, 'num_heads': shape.num_heads,
      'num_kv_heads': _kv_heads(base, shape.num_heads), 'd_ff': shape.d_ff,
      'head_dim': 0 if shape.num_heads * shape.head_dim == shape.d_model else shape.head_dim,
  }


def _fast_counts(base: dict, shape: Shape) -> counting.ParamCounts:
  """The same `predict_param_counts`, on a plain namespace: cheap enough to search thousands."""
  return counting.predict_param_counts(types.SimpleNamespace(**{**base, **_model_fields(base,
                                                                                         shape)}))


def apply_shape(base_model: ml_collections.ConfigDict, shape: Shape) -> ml_collections.ConfigDict:
  """A copy of `base_model` with the shape's sizes; everything else (vocab, norms...) kept."""
  model = base_model.copy_and_resolve_references()
  model.update(_model_fields(base_model.to_dict(), shape))
  return model


def _sizing(base_model, shape: Shape, target: float, kind: str) -> Sizing:
  model = apply_shape(base_model, shape)
  return Sizing(model, shape, counting.predict_param_counts(model), float(target), kind)


def _check(target: float, kind: str) -> None:
  if kind not in PARAM_KINDS:
    raise ValueError(f'kind={kind!r}: expected one of {PARAM_KINDS}')
  if not target > 0:
    raise ValueError(f'target={target!r}: a parameter count must be positive')


def kaplan_shape(target: float, base_model: ml_collections.ConfigDict, *,
                 aspect_ratio: float = 64.0, head_dim: int = 64, kind: str = 'non_embedding',
                 tolerance: float = 0.05, ff_ratio: float | None = None, ff_multiple: int = 8,
                 max_layers: int = 512) -> Sizing:
  """The shape with `target` parameters (of `kind`) closest to d_model / num_layers = aspect_ratio.

  d_model is a multiple of `head_dim` (num_heads = d_model / head_dim, a multiple of the base's
  query heads per kv head, so grouped-query attention keeps its ratio) and d_ff follows
  `feed_forward_size`. Among shapes whose count is within `tolerance` of the target, the one whose
  aspect ratio is nearest (in log) wins; when the grid allows none, the nearest count wins. Pass a
  small head_dim (e.g. 16) for models under a million parameters, where width steps of 64 are
  coarse.
  """
  _check(target, kind)
  if aspect_ratio <= 0 or head_dim <= 0 or tolerance < 0 or max_layers < 1:
    raise ValueError(f'aspect_ratio={aspect_ratio!r}, head_dim={head_dim!r}, '
                     f'tolerance={tolerance!r}, max_layers={max_layers!r}: must be positive')
  base = base_model.to_dict()
  group = max(1, base['num_heads'] // base['num_kv_heads'])  # whole kv groups keep GQA's ratio

  def shape(layers: int, k: int) -> Shape:
    heads = k * group
    d = heads * head_dim
    return Shape(d, layers, heads, head_dim,
                 feed_forward_size(d, base['mlp'], ff_ratio, ff_multiple))

  def params(s: Shape) -> int:
    return getattr(_fast_counts(base, s), kind)

  candidates = []
  for layers in range(1, max_layers + 1):
    if params(shape(layers, 1)) > target * (1 + tolerance) and candidates:
      break  # deeper models only get bigger
    lo, hi = 1, 2  # bisect the width: the largest one at or below the target, and one more
    while params(shape(layers, hi)) <= target:
      lo, hi = hi, hi * 2
    while hi - lo > 1:
      mid = (lo + hi) // 2
      lo, hi = (mid, hi) if params(shape(layers, mid)) <= target else (lo, mid)
    candidates += [shape(layers, lo), shape(layers, hi)]
  error = lambda s: abs(math.log(params(s) / target))
  close = [s for s in candidates if abs(params(s) / target - 1) <= tolerance]
  if close:
    best = min(close, key=lambda s: (abs(math.log(s.aspect_ratio / aspect_ratio)), error(s)))
  else:
    best = min(candidates, key=error)
    if params(best) > target * (1 + tolerance):
      raise ValueError(f'target={target:,.0f} {kind} params is below the smallest shape with '
                       f'head_dim={head_dim} (1 layer, d_model={best.d_model}: '
                       f'{params(best):,}); lower head_dim')
  return _sizing(base_model, best, target, kind)


def family_shape(target: float, base_model: ml_collections.ConfigDict,
                 shapes: Sequence[Shape] = CHINCHILLA_SHAPES, *,
                 kind: str = 'non_embedding') -> Sizing:
  """The member of a family table whose count (of `kind`, in log) is nearest to `target`."""
  _check(target, kind)
  if not shapes:
    raise ValueError('shapes: the family table is empty')
  base = base_model.to_dict()
  best = min(shapes, key=lambda s: abs(math.log(getattr(_fast_counts(base, s), kind) / target)))
  return _sizing(base_model, best, target, kind)


def _positive(**values) -> None:
  for name, value in values.items():
    if not value > 0:
      raise ValueError(f'{name}={value!r}: must be positive')


def training_flops(params: float, tokens: float) -> float:
  """C = 6 N D: forward 2 FLOPs per parameter per token, backward twice that."""
  _positive(params=params, tokens=tokens)
  return 6.0 * params * tokens


def tokens_for_flops(flops: float, params: float) -> float:
  """D = C / (6 N)."""
  _positive(flops=flops, params=params)
  return flops / (6.0 * params)


def params_for_flops(flops: float, tokens: float) -> float:
  """N = C / (6 D)."""
  _positive(flops=flops, tokens=tokens)
  return flops / (6.0 * tokens)


def chinchilla_training_flops(model_config: ml_collections.ConfigDict, tokens: float,
                              seq_len: int | None = None) -> float:
  """Training FLOPs by Hoffmann et al.'s appendix F count (attention and logits included)."""
  _positive(tokens=tokens)
  return counting.chinchilla_flops_per_token(model_config, seq_len)['train'] * tokens


def steps_for_tokens(tokens: float, batch_size: int, seq_len: int) -> int:
  """Optimizer steps that consume `tokens` (rounded, at least 1), batch_size x seq_len per step."""
  _positive(tokens=tokens, batch_size=batch_size, seq_len=seq_len)
  return max(1, round(tokens / (batch_size * seq_len)))
