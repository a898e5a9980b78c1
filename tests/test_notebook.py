"""The notebooks run top to bottom and show their figures: scaling_laws.ipynb on a synthetic
sweep, interpretability.ipynb and evaluation.ipynb on a small trained run."""

import importlib.util
import pathlib

import pytest

from research import run_dir
from research.sweeps import synthetic
from tests import eval_helpers
from tests.notebook_helpers import execute_notebook

ROOT = pathlib.Path(__file__).parents[1]
NOTEBOOK = ROOT / 'notebooks' / 'scaling_laws.ipynb'


def test_notebook_fits_and_shows_every_law(tmp_path, monkeypatch):
  synthetic.write_sweep(tmp_path / 'sweep', seed=21)
  monkeypatch.setenv('SCALING_RESULTS', str(tmp_path / 'sweep'))
  monkeypatch.setenv('SCALING_N_BOOTSTRAP', '10')
  outputs, text = execute_notebook(NOTEBOOK, monkeypatch)
  assert 'error' not in {o.output_type for o in outputs}
  assert f'results table: {tmp_path / "sweep" / "results.csv"}' in text
  assert '35 completed runs, 35 training curves, 5 IsoFLOP budgets' in text
  for law in ('Chinchilla approach 1', 'Chinchilla approach 2', 'Chinchilla approach 3',
              'Kaplan L(N)', 'Kaplan L(N, D)', 'Emergence'):
    assert law in text
  images = [o for o in outputs if 'image/png' in o.get('data', {})]
  assert len(images) == 9
  assert 'approach3: a = 0.4' in text
  assert (tmp_path / 'sweep' / 'fits' / 'frontier.png').exists()


def _execute(notebook_name, env, monkeypatch):
  """Runs a notebook with `env` set -> (printed text, number of images shown); no cell errors."""
  for key, value in env.items():
    monkeypatch.setenv(key, str(value))
  outputs, text = execute_notebook(ROOT / 'notebooks' / notebook_name, monkeypatch)
  assert 'error' not in {o.output_type for o in outputs}
  return text, sum('image/png' in o.get('data', {}) for o in outputs)


def test_interpretability_notebook_on_a_trained_run(tmp_path, tmp_path_factory, monkeypatch):
  run = eval_helpers.trained_run(tmp_path_factory)
  text, images = _execute('interpretability.ipynb',
                          {'INTERP_RUN': run, 'INTERP_FIGURES': tmp_path}, monkeypatch)
  assert f'run: {run} step 30: 2 layers x 2 heads, d_model 32' in text
  assert 'attention patterns (2, 1, 2, ' in text and 'best induction head: L' in text
  assert text.count('top next token') == 3
  own = float(text.split('moves the metric by at most ')[1].split()[0])
  assert own < 1e-5
  line = text.split('direct logit attribution: parts sum to ')[1].split('\n')[0]
  parts, logit = map(float, line.split(', the logit difference is '))
  assert parts == pytest.approx(logit, abs=1e-3)
  assert images == 5 and (tmp_path / 'patch_heads.png').exists()


def test_evaluation_notebook_on_a_trained_run(tmp_path, tmp_path_factory, monkeypatch):
  run = eval_helpers.trained_run(tmp_path_factory)
  env = {'EVAL_RUN': run, 'EVAL_FIGURES': tmp_path, 'EVAL_STDLIB_FILES': 2}
  if importlib.util.find_spec('lm_eval'):
    env.update(EVAL_TASKS=eval_helpers.write_tasks(tmp_path / 'tasks'), HF_DATASETS_OFFLINE=1,
               HF_DATASETS_CACHE=tmp_path / 'hf')
  text, images = _execute('evaluation.ipynb', env, monkeypatch)
  summary = run_dir.read_summary(run)
  assert f'in_domain: {summary["final_eval_bits_per_byte"]:.4f} bits/byte' in text
  assert 'out_of_domain: ' in text and 'standard library (2 modules)' in text
  if 'EVAL_TASKS' in env:
    assert text.count('harness local_') == 3
  assert 'lost in the middle, accuracy by depth:' in text and 'addition: exact match' in text
  assert images == 2
