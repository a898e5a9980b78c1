"""Records -> fixed-width rows of token ids with a per-token loss mask (1 on response tokens only).

SFT examples are packed: whole examples laid one after another in a row of `seq_len` tokens
(first fit, in file order), padding after the last; the model has no segment masking, so an
example attends to the ones before it in its row, as pretraining documents do across an EOS.
Preference pairs and prompts get one row each. Mask column t refers to token t (the target
predicted from tokens :t), the convention of `sequence_logprobs`.
"""

from __future__ import annotations

import numpy as np

from research.posttrain.chat import ChatTemplate
from research.posttrain.records import Record


def _too_long(record: Record, fields: str, length: int, limit: int, what: str):
  raise ValueError(f'{record.where}: {fields} take {length} tokens in the chat template, more '
                   f'than {what}={limit}')


def example(template: ChatTemplate, record: Record, response_field: str, seq_len: int):
  """(token ids, loss mask) of prompt + response in the template; ValueError if over `seq_len`."""
  prompt, response = template.prompt_ids(record['prompt']), template.response_ids(
      record[response_field])
  if len(prompt) + len(response) > seq_len:
    _too_long(record, f'"prompt" and "{response_field}"', len(prompt) + len(response), seq_len,
              'posttrain.seq_len')
  return (np.asarray(prompt + response, np.int32),
          np.asarray([0] * len(prompt) + [1] * len(response), np.int32))


def _rows(pieces, seq_len: int, pad_id: int):
  """Rows of concatenated (tokens, mask) pieces, right-padded to `seq_len`."""
  tokens_NxT = np.full((len(pieces), seq_len), pad_id, np.int32)
  mask_NxT = np.zeros((len(pieces), seq_len), np.int32)
  for row, parts in enumerate(pieces):
    tokens = np.concatenate([p[0] for p in parts])
    mask = np.concatenate([p[1] for p in parts])
    tokens_NxT[row, :len(tokens)] = tokens
    mask_NxT[row, :len(mask)] = mask
  return tokens_NxT, mask_NxT


def sft_rows(template: ChatTemplate, records: list[Record], seq_len: int, pack: bool = True):
  """{'tokens', 'mask'}: [N, seq_len] int32 rows of SFT examples, packed or one per row."""
  examples = [example(template, r, 'response', seq_len) for r in records]
  rows, used = [], []
  for ex in examples:
    if pack and rows and used[-1] + len(ex[0]) <= seq_len:
      rows[-1].append(ex)
      used[-1] += len(ex[0])
    else:
      rows.append([ex])
      used.append(len(ex[0]))
  tokens, mask = _rows(rows, seq_len, template.pad_id)
  return {'tokens': tokens, 'mask': mask}


def preference_rows(template: ChatTemplate, records: list[Record], seq_len: int):
  """{'chosen', 'chosen_mask', 'rejected', 'rejected_mask'}: one [N, seq_len] row per pair."""
  out = {}
  for side in ('chosen', 'rejected'):
    tokens, mask = _rows([[example(template, r, side, seq_len)] for r in records], seq_len,
                         template.pad_id)
    out[side], out[f'{side}_mask'] = tokens, mask
  return out


def prompt_rows(template: ChatTemplate, records: list[Record], prompt_len: int):
  """{'prompt': [N, prompt_len] right-padded ids, 'length': [N]}: prompts for sampling."""
  ids = [template.prompt_ids(r['prompt']) for r in records]
  for record, prompt in zip(records, ids):
    if len(prompt) > prompt_len:
      _too_long(record, '"prompt"', len(prompt), prompt_len,
                'posttrain.seq_len - posttrain.max_new_tokens')
  prompts = np.full((len(ids), prompt_len), template.pad_id, np.int32)
  for row, prompt in enumerate(ids):
    prompts[row, :len(prompt)] = prompt
  return {'prompt': prompts, 'length': np.asarray([len(p) for p in ids], np.int32)}
