"""Tensor tables: each Hugging Face tensor and the params of ours it holds, in both directions.

A family (GPT-2, Llama, Mixtral) is a list of `Rule`s; import reads every rule's Hugging Face
tensors and writes our params, export reads our params and writes the tensors, so a mapping is
written once.
Every tensor must be claimed, so a weight we cannot map is an error rather than silently dropped.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Rule:
  """Hugging Face tensors `hf` of shapes `hf_shapes` <-> our params `ours` of `our_shapes`.

  `to_ours(*theirs)` returns our arrays, `to_hf(*ours)` theirs, each in the order named.
  """
  hf: tuple[str, ...]
  hf_shapes: tuple[tuple[int, ...], ...]
  ours: tuple[str, ...]
  our_shapes: tuple[tuple[int, ...], ...]
  to_ours: Callable[..., Sequence[np.ndarray]]
  to_hf: Callable[..., Sequence[np.ndarray]]


def _one_to_one(hf: str, hf_shape, ours: str, our_shape, to_ours, to_hf) -> Rule:
  return Rule((hf,), (tuple(hf_shape),), (ours,), (tuple(our_shape),),
              lambda x: (to_ours(x),), lambda x: (to_hf(x),))


def same(hf: str, ours: str, shape) -> Rule:
  """Stored alike (norm scales, biases, embeddings)."""
  return _one_to_one(hf, shape, ours, shape, lambda x: x, lambda x: x)


def reshaped(hf: str, hf_shape, ours: str, our_shape) -> Rule:
  """The same values in another shape (heads split out of a width)."""
  hf_shape, our_shape = tuple(hf_shape), tuple(our_shape)
  return _one_to_one(hf, hf_shape, ours, our_shape, lambda x: x.reshape(our_shape),
                     lambda x: x.reshape(hf_shape))


def transposed(hf: str, ours: str, our_shape, heads_first: bool = False) -> Rule:
  """nn.Linear's [out, in] <-> our [in, ...out] (or, `heads_first`, our [...in, out])."""
  our_shape = tuple(our_shape)
  if heads_first:  # ours [N, H, D] <-> theirs [D, N*H]
    hf_shape = (our_shape[-1], int(np.prod(our_shape[:-1])))
  else:  # ours [D, ...] <-> theirs [prod(...), D]
    hf_shape = (int(np.prod(our_shape[1:])), our_shape[0])
  return _one_to_one(hf, hf_shape, ours, our_shape, lambda x: x.T.reshape(our_shape),
                     lambda x: x.reshape(hf_shape[1], hf_shape[0]).T)


def fused(hf: str, hf_shape, ours: Sequence[str], our_shape, axis: int) -> Rule:
  """One tensor holding several of ours side by side along `axis` (GPT-2's q, k, v in c_attn)."""
  hf_shape, our_shape = tuple(hf_shape), tuple(our_shape)
  pieces = len(ours)
  to_ours = lambda x: tuple(p.reshape(our_shape) for p in np.split(x, pieces, axis=axis))
  flat = hf_shape[:axis] + (hf_shape[axis] // pieces,) + hf_shape[axis + 1:]
  to_hf = lambda *xs: (np.concatenate([x.reshape(flat) for x in xs], axis=axis),)
  return Rule((hf,), (hf_shape,), tuple(ours), (our_shape,) * pieces, to_ours, to_hf)


def stacked(hf: Sequence[str], ours: str, our_shape) -> Rule:
  """One nn.Linear [out, in] per expert <-> our stacked [E, in, out] (Mixtral's experts)."""
  our_shape = tuple(our_shape)
  e, d_in, d_out = our_shape
  if len(hf) != e:
    raise ValueError(f'{ours}: {len(hf)} tensors for {e} experts')
  return Rule(tuple(hf), ((d_out, d_in),) * e, (ours,), (our_shape,),
              lambda *xs: (np.stack([x.T for x in xs]),),
              lambda x: tuple(x[i].T for i in range(e)))


class Tensors:
  """A flat {name: float32 array} being consumed: `take` checks shapes, `finish` rejects leftovers.

  `where` names the file (or params) in error messages; names matching `ignore` (regexes of
  buffers such as GPT-2's causal mask) may be left over.
  """

  def __init__(self, arrays: dict, where: str, ignore: tuple[str, ...] = ()):
    self.arrays, self.where, self.ignore = dict(arrays), where, ignore

  def take(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
    if name not in self.arrays:
      raise ValueError(f'{self.where}: missing tensor {name!r} (expected shape {tuple(shape)})')
    x = self.arrays.pop(name)
    if tuple(x.shape) != tuple(shape):
      raise ValueError(f'{self.where}: tensor {name!r} has shape {tuple(x.shape)}, expected '
                       f'{tuple(shape)} from the config')
    return x

  def finish(self) -> None:
    left = sorted(k for k in self.arrays if not any(re.fullmatch(p, k) for p in self.ignore))
    if left:
      more = f' and {len(left) - 5} more' if len(left) > 5 else ''
      raise ValueError(f'{self.where}: unexpected tensors the config has no place for: '
                       f'{left[:5]}{more}')


def _apply(convert, names, shapes, source: Tensors, targets) -> dict:
  arrays = convert(*[source.take(name, shape) for name, shape in zip(names, shapes)])
  return dict(zip(targets, arrays))


def to_ours(rules: Sequence[Rule], theirs: Tensors) -> dict:
  """Import: {our param path: array} from the Hugging Face tensors the rules name."""
  out = {}
  for rule in rules:
    out.update(_apply(rule.to_ours, rule.hf, rule.hf_shapes, theirs, rule.ours))
  return out


def to_hf(rules: Sequence[Rule], ours: Tensors) -> dict:
  """Export: {Hugging Face tensor name: array} from our params the rules name."""
  out = {}
  for rule in rules:
    out.update(_apply(rule.to_hf, rule.ours, rule.our_shapes, ours, rule.hf))
  return out
