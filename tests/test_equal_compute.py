"""The equal-compute comparisons of tokenizers, objectives and dedup: the injected-duplicates
corpus (copies in train, validation untouched, every copy found by dedup), the config overrides,
and `experiments.equal_compute` end to end at toy size."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from research.config import base_config, load_python_file
from research.data import clean
from research.data import corpus
from research.data import injected_duplicates
from research.data import sources
from tests.train_helpers import write_corpus

pytest.importorskip('datasketch')
ROOT = pathlib.Path(__file__).parents[1]
SHARED = load_python_file(ROOT / 'configs' / 'equal_compute.py')


def _data_config(text_dir, cache):
  c = base_config()
  c.data.update(corpus='text_dir', text_dir=str(text_dir), data_dir=str(cache),
                validation_fraction=0.2)
  return c.data


def test_injected_copies_are_in_train_and_dedup_finds_every_one(tmp_path):
  original = _data_config(write_corpus(tmp_path / 'text', num_docs=40), tmp_path / 'cache')
  record = injected_duplicates.write_injected_corpus(
      original, str(tmp_path / 'injected'), num_originals=5, exact_copies=3, near_copies=2)
  assert record['injected'] == 25 and record['exact_copies'] == 15
  copies = sorted((tmp_path / 'injected').glob('dup_*.txt'))
  assert len(copies) == 25
  assert all(sources.text_unit(p.read_text()) >= 0.2 for p in copies)  # every copy trains
  injected = original.copy_and_resolve_references()
  injected.text_dir = str(tmp_path / 'injected')
  assert (sorted(corpus.load_split(injected, 'validation'))
          == sorted(corpus.load_split(original, 'validation')))  # the validation split stays clean
  train = list(corpus.load_split(injected, 'train'))
  assert len(train) == record['train_documents'] + 25
  left = injected_duplicates.audit(train, injected.text_dir, record)
  assert left == {'duplicates_left': 25, 'false_positives': 0}
  injected.update(exact_dedup=True, near_dedup=True)
  kept = clean.train_split(injected, log=lambda _: None)
  assert injected_duplicates.audit(kept, injected.text_dir, record) == {
      'duplicates_left': 0, 'false_positives': 0}
  counts = clean.train_record(injected)['removed']
  assert counts == {'exact_dedup': 15, 'near_dedup': 10}
  again = injected_duplicates.write_injected_corpus(original, str(tmp_path / 'injected'))
  assert again == record  # written once, then read back


def test_overrides_set_fields_and_name_bad_ones():
  c = SHARED.base(4, ('model.d_model=32', 'data.tokenizer=char', 'train.init_from.step=3'))
  assert (c.model.d_model, c.data.tokenizer, c.train.init_from.step, c.train.num_steps) == (
      32, 'char', 3, 4)
  for bad in ('model.no_such_field=1', 'nope.x=1', 'model', 'd_model=3'):
    with pytest.raises(ValueError, match='override'):
      SHARED.base(4, (bad,))


TOY = ('model.vocab_size=320', 'model.d_model=32', 'model.num_layers=1', 'model.num_heads=2',
       'model.num_kv_heads=2', 'model.d_ff=64', 'model.max_seq_len=16', 'data.seq_len=16',
       'data.eval_batches=1', 'data.tokenizer_train_chars=20000', 'data.corpus=text_dir',
       'data.validation_fraction=0.2', 'train.batch_size=2')


@pytest.mark.slow
def test_the_command_runs_all_three_comparisons_and_writes_tables_and_a_plot(tmp_path):
  text = write_corpus(tmp_path / 'text', num_docs=40)
  overrides = TOY + (f'data.text_dir={text}', f'data.data_dir={tmp_path / "cache"}')
  command = [sys.executable, '-m', 'experiments.equal_compute', f'--workdir={tmp_path / "equal"}',
             '--num_steps=2', '--tokenizers=byte,char', '--objectives=causal,mlm',
             '--set=' + ','.join(overrides)]
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS='cpu')
  done = subprocess.run(command, cwd=ROOT, env=env, text=True, capture_output=True, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  for heading in ('## tokenizers', '## objectives', '## dedup', '| byte |', '| mlm |'):
    assert heading in done.stdout
  results = json.loads((tmp_path / 'equal' / 'equal_compute.json').read_text())
  assert (tmp_path / 'equal' / 'equal_compute.png').stat().st_size > 1000
  tokenizers = {r['tokenizer']: r for r in results['tokenizers']}
  assert tokenizers['byte']['bytes_per_token'] == pytest.approx(1.0, abs=0.02)
  assert all(r['status'] == 'completed' and r['steps'] == 2 and r['eval_bits_per_byte'] > 0
             for rows in results.values() for r in rows)
  objectives = {r['objective']: r for r in results['objectives']}
  causal = objectives['causal']  # scored as a causal LM, a causal run gives its own eval numbers
  assert causal['causal_bits_per_byte'] == pytest.approx(causal['eval_bits_per_byte'], rel=1e-4)
  assert objectives['mlm']['causal_bits_per_byte'] > 0
  none, dedup = results['dedup']
  assert none['removed_exact'] == none['removed_near'] == 0
  assert none['duplicates_left'] == none['injected'] == 192
  assert none['kept_documents'] - dedup['kept_documents'] == 192
  assert dedup['removed_exact'] + dedup['removed_near'] == 192
  assert dedup['duplicates_left'] == dedup['false_positives'] == 0
