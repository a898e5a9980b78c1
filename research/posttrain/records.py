"""Post-training records: JSONL files of prompts, responses and preference pairs, checked by line.

One JSON object per line. SFT records hold `prompt` and `response`; preference records `prompt`,
`chosen` and `rejected`; prompt records (PPO, GRPO) `prompt`. Other keys are ignored. A bad line is
reported with its file and line number and the field at fault, before anything is written.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

FIELDS = {
    'sft': ('prompt', 'response'),
    'preference': ('prompt', 'chosen', 'rejected'),
    'prompt': ('prompt',),
}


@dataclasses.dataclass(frozen=True)
class Record:
  """The fields of one record, and where it came from ('file:line') for error messages."""
  fields: dict
  where: str

  def __getitem__(self, name: str) -> str:
    return self.fields[name]


def _check(record, where: str, kind: str) -> dict:
  if not isinstance(record, dict):
    raise ValueError(f'{where}: expected a JSON object, got {type(record).__name__}')
  for name in FIELDS[kind]:
    if name not in record:
      raise ValueError(f'{where}: missing field "{name}" (a {kind} record needs '
                       f'{", ".join(FIELDS[kind])})')
    value = record[name]
    if not isinstance(value, str):
      raise ValueError(f'{where}: field "{name}" must be a string, got {type(value).__name__}')
    if not value.strip():
      raise ValueError(f'{where}: field "{name}" is empty')
  if kind == 'preference' and record['chosen'] == record['rejected']:
    raise ValueError(f'{where}: fields "chosen" and "rejected" are identical; a preference pair '
                     'needs two different responses')
  return {name: record[name] for name in FIELDS[kind]}


def read_records(path, kind: str, field: str = 'file') -> list[Record]:
  """The records of a JSONL file of `kind` ('sft', 'preference' or 'prompt'); blank lines skipped.

  `field` names the config field that gave the path, for the error when the file is missing.
  """
  if kind not in FIELDS:
    raise ValueError(f'kind={kind!r}: expected one of {tuple(FIELDS)}')
  path = pathlib.Path(path)
  if not path.is_file():
    raise ValueError(f'{field}={str(path)!r}: no such file')
  records = []
  with open(path, encoding='utf-8') as f:
    for number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      where = f'{path}:{number}'
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f'{where}: not valid JSON ({e.msg})') from None
      records.append(Record(_check(record, where, kind), where))
  if not records:
    raise ValueError(f'{path}: no records ({field})')
  return records


def write_records(path, records: list[dict]) -> None:
  """One JSON object per line (the task generators write their files with this)."""
  text = ''.join(json.dumps(r, ensure_ascii=False, sort_keys=True) + '\n' for r in records)
  pathlib.Path(path).write_text(text, encoding='utf-8')
