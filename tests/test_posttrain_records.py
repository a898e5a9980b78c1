"""Records, the chat template and packing: bad lines named by file and line, masks on responses."""

import json

import numpy as np
import pytest

from research.data import tokenizer as tokenizer_lib
from research.posttrain import chat, packing, tasks
from research.posttrain.records import read_records
from research.posttrain.vocab import grow_vocab
from tests.train_helpers import WORDS


@pytest.fixture(scope='module')
def template():
  tokenizer = tokenizer_lib.train_tokenizer([' '.join(WORDS)] * 20, 300, 100_000)
  return chat.ChatTemplate.of(chat.with_chat_tokens(tokenizer))


def _write(path, lines):
  path.write_text(''.join((l if isinstance(l, str) else json.dumps(l)) + '\n' for l in lines))
  return path


@pytest.mark.parametrize('kind,line,match', [
    ('sft', {'prompt': 'a'}, r':2: missing field "response"'),
    ('sft', {'prompt': 'a', 'response': '  '}, r':2: field "response" is empty'),
    ('sft', {'prompt': 3, 'response': 'b'}, r':2: field "prompt" must be a string, got int'),
    ('sft', '{"prompt": "a", "response"', r':2: not valid JSON'),
    ('sft', '["a", "b"]', r':2: expected a JSON object, got list'),
    ('preference', {'prompt': 'a', 'chosen': 'b'}, r':2: missing field "rejected"'),
    ('preference', {'prompt': 'a', 'chosen': 'same', 'rejected': 'same'},
     r':2: fields "chosen" and "rejected" are identical'),
    ('prompt', {'text': 'a'}, r':2: missing field "prompt"'),
])
def test_bad_record_names_file_line_and_field(tmp_path, kind, line, match):
  good = {'sft': {'prompt': 'p', 'response': 'r'}, 'prompt': {'prompt': 'p'},
          'preference': {'prompt': 'p', 'chosen': 'c', 'rejected': 'r'}}[kind]
  path = _write(tmp_path / 'records.jsonl', [good, line])
  with pytest.raises(ValueError, match=str(path) + match):
    read_records(path, kind)


def test_missing_and_empty_files(tmp_path):
  with pytest.raises(ValueError, match="posttrain.train_file='.*nope.jsonl': no such file"):
    read_records(tmp_path / 'nope.jsonl', 'sft', 'posttrain.train_file')
  with pytest.raises(ValueError, match='no records'):
    read_records(_write(tmp_path / 'empty.jsonl', ['', '  ']), 'sft')


def test_template_and_packing_mask_only_response_tokens(tmp_path, template):
  path = _write(tmp_path / 'sft.jsonl', [{'prompt': 'the fox <|end|>', 'response': 'jumps'},
                                         {'prompt': 'a dog', 'response': 'sings old songs'},
                                         {'prompt': 'wind', 'response': 'far'}])
  records = read_records(path, 'sft')
  ids = template.prompt_ids(records[0]['prompt'])
  # A special token's spelling inside a prompt is text, never the token.
  assert ids[:2] == [template.start_id, template.user_id] and ids[-1] == template.assistant_id
  assert template.end_id not in ids and template.decoder.decode(ids[2:-1]) == 'the fox <|end|>'
  examples = [packing.example(template, r, 'response', 64) for r in records]
  rows = packing.sft_rows(template, records, seq_len=sum(len(e[0]) for e in examples[:2]))
  assert rows['tokens'].shape[0] == 2  # the first two fill a row, the third starts the next
  flat_tokens, flat_mask = [], []
  for record, (tokens, mask) in zip(records, examples):
    flat_tokens += list(tokens)
    flat_mask += list(mask)
    response = [t for t, m in zip(tokens, mask) if m]
    assert response[-1] == template.end_id
    assert template.response_text(response) == record['response']
    assert template.prompt_ids(record['prompt']) == [t for t, m in zip(tokens, mask) if not m]
  n = len(examples[0][0]) + len(examples[1][0])
  np.testing.assert_array_equal(rows['tokens'][0], flat_tokens[:n])
  np.testing.assert_array_equal(rows['mask'][0], flat_mask[:n])
  np.testing.assert_array_equal(rows['mask'][1][:len(examples[2][1])], examples[2][1])
  assert rows['mask'][1][len(examples[2][1]):].sum() == 0
  unpacked = packing.sft_rows(template, records, seq_len=32, pack=False)
  assert unpacked['tokens'].shape == (3, 32)


def test_too_long_records_name_the_line(tmp_path, template):
  path = _write(tmp_path / 'sft.jsonl', [{'prompt': 'a', 'response': 'b'},
                                         {'prompt': 'the quick brown fox ' * 4, 'response': 'b'}])
  with pytest.raises(ValueError, match=rf'{path}:2: "prompt" and "response" take \d+ tokens.*'
                                       r'posttrain.seq_len=16'):
    packing.sft_rows(template, read_records(path, 'sft'), 16)
  prompts = read_records(_write(tmp_path / 'p.jsonl', [{'prompt': 'the quick brown fox ' * 4}]),
                         'prompt')
  with pytest.raises(ValueError, match=r'p.jsonl:1: "prompt" take .*posttrain.seq_len - '
                                       r'posttrain.max_new_tokens=8'):
    packing.prompt_rows(template, prompts, 8)


def test_chat_tokens_are_added_once_and_the_embedding_grows_by_the_mean():
  tokenizer = tokenizer_lib.train_tokenizer(['abc'], 259, 1000)
  grown = chat.with_chat_tokens(tokenizer)
  assert chat.vocab_size(grown) == 262
  assert chat.vocab_size(chat.with_chat_tokens(grown)) == 262
  from research.model import default_model_config
  config = default_model_config()
  config.update(vocab_size=259, d_model=4, tied_embedding=False)
  rng = np.random.default_rng(0)
  params = {'embed': rng.normal(size=(259, 4)), 'unembed': rng.normal(size=(4, 259))}
  new_config, new_params = grow_vocab(config, params, 262)
  assert new_config.vocab_size == 262 and config.vocab_size == 259
  np.testing.assert_array_equal(new_params['embed'][:259], params['embed'])
  np.testing.assert_allclose(new_params['embed'][261], params['embed'].mean(0))
  np.testing.assert_allclose(new_params['unembed'][:, 260], params['unembed'].mean(1))
  assert grow_vocab(config, params, 100) == (config, params)


@pytest.mark.parametrize('name', sorted(tasks.TASKS))
def test_task_files_and_verifier(tmp_path, name):
  directory = tasks.write_task_files(name, tmp_path, pretrain_docs=2, lines_per_doc=3, sft=5,
                                     preferences=5, prompts=5, evaluation=4)
  task = tasks.get_task(name)
  train_prompts = set()
  for file in (tasks.SFT_FILE, tasks.PREFERENCES_FILE, tasks.PROMPTS_FILE):
    kind = {tasks.SFT_FILE: 'sft', tasks.PREFERENCES_FILE: 'preference'}.get(file, 'prompt')
    train_prompts |= {r['prompt'] for r in read_records(directory / file, kind)}
  for r in read_records(directory / tasks.SFT_FILE, 'sft'):
    assert tasks.verify(task, r['prompt'], ' ' + r['response']) == 1.0
  for r in read_records(directory / tasks.PREFERENCES_FILE, 'preference'):
    assert tasks.verify(task, r['prompt'], r['chosen']) == 1.0
    assert tasks.verify(task, r['prompt'], r['rejected']) == 0.0
  held_out = {r['prompt'] for r in read_records(directory / tasks.EVAL_PROMPTS_FILE, 'prompt')}
  assert len(held_out) == 4 and not held_out & train_prompts
  text = ''.join(p.read_text() for p in (directory / tasks.PRETRAIN_DIR).iterdir())
  lines = text.splitlines()
  assert len(lines) == 6 and not {l[:l.index('=') + 1] for l in lines} & held_out
  with pytest.raises(ValueError, match='posttrain.task='):
    tasks.get_task('multiplication')
