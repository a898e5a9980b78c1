"""A tiny post-training chain end to end (experiments.posttrain_report --preset=test): every stage
finishes in its run directory, a finished run is a no-op, PPO killed with SIGKILL resumes
bitwise-exactly, a held directory is refused and a damaged checkpoint set aside, bad inputs are refused naming the file and line or the field with nothing left
behind, SFT starts from a Hugging Face import, and the notebook draws the chain.

One JAX compilation cache serves the module (and its subprocesses): the programs of the resumed
runs are the chain's, so they are compiled once.
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

os.environ['HF_HUB_OFFLINE'] = '1'  # everything here is local; never reach the hub

import jax
import ml_collections
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache

from experiments import posttrain_report
from research import run_dir
from research.data import tokenizer as tokenizer_lib
from research.posttrain import chat
from research.posttrain.run import posttrain
from research.train.checkpoint import load_state
from tests.notebook_helpers import execute_notebook
from tests.test_train_resume import logged_step, wait_for

ROOT = pathlib.Path(__file__).parents[1]
NOTEBOOK = ROOT / 'notebooks' / 'post_training.ipynb'
QUIET = dict(log=lambda *_: None)


@pytest.fixture(scope='module')
def compile_cache(tmp_path_factory):
  path = tmp_path_factory.mktemp('jax_cache')
  settings = {'jax_compilation_cache_dir': str(path),
              'jax_persistent_cache_min_compile_time_secs': 0.0}
  old = {name: getattr(jax.config, name) for name in settings}
  for name, value in settings.items():
    jax.config.update(name, value)
  compilation_cache.reset_cache()
  yield path
  for name, value in old.items():
    jax.config.update(name, value)
  compilation_cache.reset_cache()


@pytest.fixture(scope='module')
def chain(tmp_path_factory, compile_cache):
  root = tmp_path_factory.mktemp('chain')
  posttrain_report.run_chain(root, 'test', log=lambda *_: None)
  return root


def config(stage, chain, **posttrain_fields):
  c = posttrain_report.stage_config(stage, chain, 'test')
  c.posttrain.update(posttrain_fields)
  return c


RUNS = {'sft': 'loss', 'reward': 'preference_accuracy', 'dpo': 'reward_margin',
        'ppo': 'value_loss', 'grpo': 'groups_with_signal', 'overopt_beta0': 'proxy_score'}


def test_every_stage_finishes_in_its_run_directory(chain):
  base_vocab = run_dir.read_config(chain / 'base')['model']['vocab_size']
  for name, key in RUNS.items():
    summary = run_dir.read_summary(chain / name)
    config = run_dir.read_config(chain / name)
    assert summary['status'] == 'completed' and summary['step'] == config['train']['num_steps']
    assert summary['config_hash'] == run_dir.config_hash(ml_collections.ConfigDict(config))
    assert config['model']['vocab_size'] == base_vocab + len(chat.CHAT_TOKENS)
    assert config['sources']['init_from']['path'] == str(chain / ('base' if name == 'sft'
                                                                  else 'sft'))
    tokenizer = tokenizer_lib.load_tokenizer(str(chain / name / run_dir.TOKENIZER_FILE))
    assert all(tokenizer.token_to_id(t) is not None for t in chat.CHAT_TOKENS)
    records = run_dir.metric_records(chain / name)
    train_steps = [r['step'] for r in records if key in r]
    assert train_steps == list(range(1, summary['step'] + 1)), name
  ppo = [r for r in run_dir.metric_records(chain / 'ppo') if 'value_loss' in r]
  for key in ('score', 'kl', 'entropy', 'clip_fraction', 'value_loss', 'policy_loss'):
    assert all(np.isfinite(r[key]) for r in ppo), key
  evals = [r for r in run_dir.metric_records(chain / 'dpo') if 'eval_kl' in r]
  assert [r['step'] for r in evals] == [0, 4] and evals[0]['eval_kl'] == pytest.approx(0, abs=1e-6)
  assert 0 <= run_dir.read_summary(chain / 'ppo')['eval_accuracy'] <= 1
  _, state = load_state(chain / 'ppo')
  assert set(state['params']) == {'policy', 'value'}


def test_a_finished_run_is_a_no_op_and_a_different_config_is_refused(chain):
  stamps = {p: p.stat().st_mtime_ns for p in (chain / 'sft').rglob('*') if p.is_file()}
  assert posttrain(config('sft', chain), chain / 'sft', **QUIET) == \
      run_dir.read_summary(chain / 'sft')
  assert stamps == {p: p.stat().st_mtime_ns for p in (chain / 'sft').rglob('*') if p.is_file()}
  with pytest.raises(ValueError, match=r'finished run of a different config(.|\n)*posttrain.beta'):
    posttrain(config('dpo', chain, beta=0.5), chain / 'dpo', **QUIET)


def _write_jsonl(path, records):
  path.write_text(''.join(json.dumps(r) + '\n' for r in records))
  return str(path)


def _copy_with_other_tokenizer(chain, tmp_path):
  other = tmp_path / 'other_tokenizer'
  shutil.copytree(chain / 'sft', other)
  tokenizer = tokenizer_lib.load_tokenizer(str(other / run_dir.TOKENIZER_FILE))
  tokenizer.add_tokens(['<|tool|>'])
  (other / run_dir.TOKENIZER_FILE).unlink()
  tokenizer_lib.save_tokenizer(tokenizer, str(other / run_dir.TOKENIZER_FILE))
  return str(other)


def _hf_gpt2(chain, directory, d_model):
  """A random GPT-2 saved by transformers, with the chain's base tokenizer beside it."""
  torch = pytest.importorskip('torch')
  transformers = pytest.importorskip('transformers')
  torch.manual_seed(0)
  vocab = run_dir.read_config(chain / 'base')['model']['vocab_size']
  model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
      vocab_size=vocab, n_embd=d_model, n_layer=1, n_head=2, n_positions=32, bos_token_id=None,
      eos_token_id=None))
  model.save_pretrained(directory, safe_serialization=True)
  shutil.copy(chain / 'base' / run_dir.TOKENIZER_FILE, directory / run_dir.TOKENIZER_FILE)
  return str(directory)


def test_bad_inputs_are_refused_naming_file_line_or_field_and_leave_nothing(chain, tmp_path):
  prompt = 'sort 31415='
  records = lambda name, rows: dict(train_file=_write_jsonl(tmp_path / name, rows))
  unfinished = tmp_path / 'unfinished'
  shutil.copytree(chain / 'base', unfinished)
  (unfinished / run_dir.SUMMARY_FILE).unlink()
  cases = [  # (stage, the fields to set, made when the case runs; the error expected)
      ('sft', lambda: records('a.jsonl', [{'prompt': prompt, 'response': '1'}, {'prompt': prompt}]),
       r'a.jsonl:2: missing field "response"'),
      ('sft', lambda: records('b.jsonl', [{'prompt': prompt, 'response': ''}]),
       r'b.jsonl:1: field "response" is empty'),
      ('sft', lambda: records('c.jsonl', [{'prompt': prompt * 5, 'response': '11345'}]),
       r'c.jsonl:1: "prompt" and "response" take \d+ tokens .*posttrain.seq_len=32'),
      ('dpo', lambda: records('d.jsonl', [{'prompt': prompt, 'chosen': '1', 'rejected': '1'}]),
       r'd.jsonl:1: fields "chosen" and "rejected" are identical'),
      ('ppo', lambda: dict(eval_file=_write_jsonl(tmp_path / 'e.jsonl', [{'prompt': prompt * 3}])),
       r'e.jsonl:1: "prompt" take \d+ tokens .*posttrain.max_new_tokens'),
      ('dpo', lambda: dict(reference=_copy_with_other_tokenizer(chain, tmp_path)),
       r'posttrain.reference=.*other_tokenizer.*its tokenizer differs'),
      ('dpo', lambda: dict(reference=_hf_gpt2(chain, tmp_path / 'gpt2', d_model=8)),
       r'posttrain.reference=.*gpt2.*its model differs.*model.d_model: 16 in '
       r'posttrain.init_from, 8 in posttrain.reference'),
      ('ppo', lambda: dict(reward='model', reward_from=str(chain / 'dpo')),
       r"posttrain.reward_from=.*a 'dpo' run, not a reward-model run"),
      ('sft', lambda: dict(init_from=str(unfinished)), r'posttrain.init_from=.*has not finished'),
      ('sft', lambda: dict(init_from=str(tmp_path)), r'posttrain.init_from=.*not a run directory'),
      ('sft', lambda: dict(seq_len=64), r'posttrain.seq_len=64: exceeds the model context'),
      ('grpo', lambda: dict(group_size=1), r'posttrain.group_size=1: must be an integer >= 2'),
  ]
  for stage, fields, match in cases:
    with pytest.raises(ValueError, match=match):
      posttrain(config(stage, chain, **fields()), tmp_path / 'run', **QUIET)
    assert not (tmp_path / 'run').exists(), match


def test_sft_from_a_hugging_face_import(chain, tmp_path):
  hf_dir = _hf_gpt2(chain, tmp_path / 'gpt2', d_model=16)
  c = config('sft', chain, init_from=hf_dir, eval_file='')
  c.train.num_steps = 2
  summary = posttrain(c, tmp_path / 'sft', **QUIET)
  assert summary['status'] == 'completed' and np.isfinite(summary['final_loss'])
  assert run_dir.read_config(tmp_path / 'sft')['sources']['init_from'] == {'path': hf_dir,
                                                                           'kind': 'hf'}
  _, state = load_state(tmp_path / 'sft')
  vocab = run_dir.read_config(chain / 'base')['model']['vocab_size'] + len(chat.CHAT_TOKENS)
  assert state['params']['embed'].shape == (vocab, 16)


PPO_STEPS = 12


def test_ppo_killed_with_sigkill_resumes_bitwise_exactly(chain, compile_cache, tmp_path):
  overrides = dict(num_steps=PPO_STEPS, checkpoint_every=3)
  reference = config('ppo', chain, eval_file='')
  reference.train.update(overrides)
  posttrain(reference, tmp_path / 'reference', **QUIET)
  config_file = tmp_path / 'ppo.py'
  config_file.write_text(
      'from experiments import posttrain_report\n\n\ndef get_config():\n'
      f'  c = posttrain_report.stage_config("ppo", {str(chain)!r}, "test")\n'
      '  c.posttrain.eval_file = ""\n'
      f'  c.train.update({overrides!r})\n  return c\n')
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS='cpu',
             JAX_COMPILATION_CACHE_DIR=str(compile_cache),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
  command = [sys.executable, '-m', 'experiments.posttrain', f'--config={config_file}',
             f'--workdir={tmp_path / "run"}']
  launch = lambda: subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
  process = launch()
  assert wait_for(lambda: logged_step(tmp_path / 'run') >= 4, process, timeout=300)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert logged_step(tmp_path / 'run') < PPO_STEPS
  process = launch()
  out, _ = process.communicate(timeout=300)
  assert process.returncode == 0 and 'status=completed' in out, out
  step, state = load_state(tmp_path / 'run')
  ref_step, ref_state = load_state(tmp_path / 'reference')
  assert step == ref_step == PPO_STEPS
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  metrics = [r for r in run_dir.metric_records(tmp_path / 'run') if 'score' in r]
  assert [r['step'] for r in metrics] == list(range(1, PPO_STEPS + 1))


def test_a_held_directory_is_refused_and_a_corrupted_checkpoint_is_set_aside(chain, tmp_path):
  """A second process on a live run directory is refused; a run stopped after its last save but
  before its summary, whose newest checkpoint was damaged since, resumes from the one before it
  and ends bitwise equal to the uninterrupted run."""
  with run_dir.RunLock(tmp_path / 'held'):
    with pytest.raises(run_dir.DirectoryInUse):
      posttrain(config('sft', chain), tmp_path / 'held', **QUIET)
  workdir = tmp_path / 'run'
  shutil.copytree(chain / 'sft', workdir)
  (workdir / run_dir.SUMMARY_FILE).unlink()
  steps = sorted(int(p.name) for p in (workdir / run_dir.CHECKPOINT_DIR).iterdir()
                 if p.name.isdigit())
  assert len(steps) >= 2, steps
  newest = workdir / run_dir.CHECKPOINT_DIR / str(steps[-1])
  largest = max((p for p in newest.rglob('*') if p.is_file()), key=lambda p: p.stat().st_size)
  largest.write_bytes(largest.read_bytes()[::-1])
  lines = []
  posttrain(config('sft', chain), workdir, log=lines.append)
  assert any(f'checkpoint at step {steps[-1]} rejected' in line for line in lines), lines
  assert f'resumed from the checkpoint at step {steps[-2]}' in lines, lines
  assert (workdir / run_dir.REJECTED_DIR / str(steps[-1]) / 'reason.txt').exists()
  assert run_dir.read_summary(workdir)['step'] == steps[-1]
  (step, state), (ref_step, ref_state) = load_state(workdir), load_state(chain / 'sft')
  assert step == ref_step
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_notebook_draws_the_chain(chain, compile_cache, monkeypatch):
  report = posttrain_report.write_report(chain)
  assert [r['model'] for r in report['table']] == ['base', 'sft', 'dpo', 'ppo', 'grpo']
  assert list(report['overoptimization']) == ['0']
  for name in ('stages.png', 'accuracy.png', 'overoptimization.png'):
    assert (chain / posttrain_report.REPORT_DIR / name).stat().st_size > 1000
  monkeypatch.setenv('POSTTRAIN_DIR', str(chain))
  outputs, text = execute_notebook(NOTEBOOK, monkeypatch)
  assert 'error' not in {o.output_type for o in outputs}
  assert f'chain: {chain}' in text and '| grpo |' in text and 'beta=0:' in text
  assert len([o for o in outputs if 'image/png' in o.get('data', {})]) == 3
