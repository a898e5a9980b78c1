"""`from_pretrained` and `save_pretrained`: Hugging Face directories <-> our config and params.

Only safetensors is read or written: pickle checkpoints (`pytorch_model.bin`) can run arbitrary code
when loaded, so they are refused. Neither torch nor transformers is imported here.
"""

from __future__ import annotations

import json
import os

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import safetensors
import safetensors.numpy

from research.hf import gpt2
from research.hf import llama
from research.hf import mamba
from research.hf import mixtral
from research.hf.tables import Tensors, to_hf, to_ours
from research.model.config import validate_model_config

CONFIG_FILE = 'config.json'
WEIGHTS_FILE = 'model.safetensors'
WEIGHTS_INDEX_FILE = 'model.safetensors.index.json'
PICKLE_FILES = ('pytorch_model.bin', 'pytorch_model.bin.index.json')
# Each: MODEL_TYPES, config_from_hf/to_hf, exportable, rules.
FAMILIES = (gpt2, llama, mixtral, mamba)
BY_MODEL_TYPE = {t: family for family in FAMILIES for t in family.MODEL_TYPES}


# ---- reading Hugging Face files ------------------------------------------------------------------

def _read_json(path: str) -> dict:
  if not os.path.isfile(path):
    raise ValueError(f'{path}: not found; a Hugging Face model directory needs {CONFIG_FILE}')
  with open(path) as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f'{path}: not valid JSON ({e})') from None


def _read_weights(directory: str) -> tuple[dict, str]:
  """All tensors of `model.safetensors` or of the shards its index lists, as float32 numpy arrays.

  Tensors are read through the flax backend because numpy has no bfloat16.
  """
  single, index = os.path.join(directory, WEIGHTS_FILE), os.path.join(directory, WEIGHTS_INDEX_FILE)
  if os.path.isfile(single):
    files, where = [single], single
  elif os.path.isfile(index):
    weight_map = _read_json(index).get('weight_map')
    if not isinstance(weight_map, dict) or not weight_map:
      raise ValueError(f'{index}: missing or empty "weight_map"')
    names = sorted(set(weight_map.values()))
    for name in names:
      if os.path.basename(name) != name or not name.endswith('.safetensors'):
        raise ValueError(f'{index}: shard {name!r} is not a .safetensors file in {directory}')
    files, where = [os.path.join(directory, name) for name in names], index
  else:
    pickles = [name for name in PICKLE_FILES if os.path.exists(os.path.join(directory, name))]
    if pickles:
      raise ValueError(f'{os.path.join(directory, pickles[0])}: pickle checkpoints are refused '
                       f'(unpickling can run arbitrary code); convert the model to {WEIGHTS_FILE}, '
                       'e.g. load it once in a trusted environment and save_pretrained it with '
                       'safe_serialization=True')
    raise ValueError(f'{directory}: neither {WEIGHTS_FILE} nor {WEIGHTS_INDEX_FILE} found')
  arrays = {}
  for path in files:
    if not os.path.isfile(path):
      raise ValueError(f'{path}: shard listed in {WEIGHTS_INDEX_FILE} not found')
    with safetensors.safe_open(path, framework='flax') as f:
      for name in f.keys():
        arrays[name] = np.asarray(f.get_tensor(name).astype(jnp.float32))
  return arrays, where


def from_pretrained(directory: str | os.PathLike) -> tuple[ml_collections.ConfigDict, dict]:
  """Reads a Hugging Face GPT-2/Llama/Mistral/Mixtral/Mamba directory -> (model config,
  float32 params).

  The params are a nested dict of jnp arrays for `Transformer(config).apply({'params': params},
  tokens)`, with unscanned layers (`layers_{i}`). Raises ValueError naming the file and field for
  missing files, pickle-only checkpoints, unsupported model types or options and shape mismatches.
  """
  directory = os.fspath(directory)
  config_path = os.path.join(directory, CONFIG_FILE)
  hf = _read_json(config_path)
  model_type = hf.get('model_type')
  family = BY_MODEL_TYPE.get(model_type)
  if family is None:
    raise ValueError(f'{config_path}: model_type={model_type!r} is not supported: expected one of '
                     f'{tuple(BY_MODEL_TYPE)}')
  c = family.config_from_hf(hf, config_path)
  try:
    validate_model_config(c)
  except ValueError as e:
    raise ValueError(f'{config_path}: {e}') from None
  arrays, where = _read_weights(directory)
  ignore = family.IGNORED
  if c.tied_embedding:
    ignore += (r'lm_head\.weight',)  # transformers ties it to the embedding, ignoring the copy
  tensors = Tensors(family.normalise_names(arrays), where, ignore)
  flat = to_ours(family.rules(c), tensors)
  tensors.finish()
  params = flax.traverse_util.unflatten_dict({tuple(k.split('/')): jnp.asarray(x, jnp.float32)
                                              for k, x in flat.items()})
  return c, params


# ---- writing Hugging Face files ------------------------------------------------------------------

def _no_equivalent(field: str, value, family: str, why: str):
  raise ValueError(f'model.{field}={value!r} has no equivalent in Hugging Face {family}: {why}')


def _export_family(c: ml_collections.ConfigDict):
  """(family module, model_type) for a config; ValueError naming the field that does not fit."""
  if c.get('parametrization', 'standard') != 'standard':
    _no_equivalent('parametrization', c.parametrization, 'gpt2 or llama', 'their attention and '
                   'output layer have no muP multipliers')
  if c.get('mtp_heads', 0):
    _no_equivalent('mtp_heads', c.mtp_heads, 'gpt2, llama or mamba', 'they have no multi-token '
                   'prediction heads')
  if 'M' in c.get('block_pattern', 'A'):
    family, model_type = mamba, 'mamba'
  elif c.num_experts:
    family, model_type = mixtral, mixtral.export_type(c)
  elif c.position == 'learned':
    family, model_type = gpt2, 'gpt2'
  elif c.position == 'rope':
    family, model_type = llama, llama.export_type(c)
  else:
    _no_equivalent('position', c.position, 'gpt2 or llama', 'GPT-2 learns positions, Llama '
                   'rotates them (position=learned or rope)')
  want = {**family.exportable(c), 'norm_position': 'pre', 'final_norm': True}
  for field, value in want.items():
    if c[field] != value:
      _no_equivalent(field, c[field], model_type, f'it needs {field}={value!r} with '
                     f'position={c.position!r}' + (' (every layer Mamba)'
                                                   if family is mamba else ''))
  return family, model_type


def _our_tensors(c: ml_collections.ConfigDict, params) -> Tensors:
  """Boxed or plain, scanned or not, {'params': ...}-wrapped or not -> flat float32 numpy params."""
  params = flax.core.unfreeze(nn.unbox(params))
  if set(params) == {'params'}:
    params = params['params']
  params = jax.tree.map(lambda x: np.asarray(jax.device_get(x), np.float32), params)
  if 'layers' in params:  # scan_layers=True: every leaf has a leading [num_layers] axis
    stacked = params.pop('layers')
    for leaf in jax.tree.leaves(stacked):
      if leaf.shape[:1] != (c.num_layers,):
        raise ValueError(f'params/layers: scanned leaf of shape {leaf.shape} has no leading '
                         f'model.num_layers={c.num_layers} axis')
    for i in range(c.num_layers):
      params[f'layers_{i}'] = jax.tree.map(lambda x, i=i: x[i], stacked)
  return Tensors(flax.traverse_util.flatten_dict(params, sep='/'), 'params')


def save_pretrained(model_config: ml_collections.ConfigDict, params,
                    directory: str | os.PathLike) -> None:
  """Writes `config.json` + `model.safetensors` (float32) that transformers loads as GPT-2/Llama.

  GPT-2 style: learned positions, LayerNorm, GELU, biases. Llama style: RoPE, RMSNorm, SwiGLU
  (biases optional; a sliding window exports as Mistral). Mixtral: Llama style without biases,
  every layer a dropless MoE without shared experts. Mamba: every layer Mamba
  (block_pattern='M'), RMSNorm, no positions. All pre-norm with a final norm.
  `params` may be boxed (logical partitioning) or plain, scanned (`layers`) or not. Anything
  without a Hugging Face equivalent raises ValueError naming the field. No tokenizer is written,
  and bos/eos token ids are left unset.
  """
  c = model_config
  validate_model_config(c)
  family, model_type = _export_family(c)
  ours = _our_tensors(c, params)
  tensors = to_hf(family.rules(c), ours)
  ours.finish()
  directory = os.fspath(directory)
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, CONFIG_FILE), 'w') as f:
    json.dump(family.config_to_hf(c, model_type), f, indent=2, sort_keys=True)
    f.write('\n')
  tensors = {name: np.ascontiguousarray(x, np.float32) for name, x in tensors.items()}
  safetensors.numpy.save_file(tensors, os.path.join(directory, WEIGHTS_FILE),
                              metadata={'format': 'pt'})
