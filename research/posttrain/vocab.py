"""Growing a model's vocabulary for tokens added after pretraining (the chat template's).

New rows of the embedding (and of an untied output matrix) start at the mean of the old rows, so
the new tokens begin as an average token instead of a random one (Hewitt 2021).
"""

from __future__ import annotations

import ml_collections
import numpy as np


def grow_vocab(model_config: ml_collections.ConfigDict, params, vocab_size: int):
  """-> (model config, params) with at least `vocab_size` token ids; unchanged if they fit."""
  if vocab_size <= model_config.vocab_size:
    return model_config, params
  extra = vocab_size - model_config.vocab_size
  config = ml_collections.ConfigDict(model_config.to_dict())
  config.vocab_size = vocab_size
  params = dict(params)
  embed_VxD = np.asarray(params['embed'])
  params['embed'] = np.concatenate([embed_VxD, np.repeat(embed_VxD.mean(0, keepdims=True),
                                                         extra, axis=0)], axis=0)
  if 'unembed' in params:
    unembed_DxV = np.asarray(params['unembed'])
    params['unembed'] = np.concatenate(
        [unembed_DxV, np.repeat(unembed_DxV.mean(1, keepdims=True), extra, axis=1)], axis=1)
  return config, params
