"""notebooks/scaling_laws.ipynb runs top to bottom on a synthetic sweep and shows its figures."""

import pathlib

from research.sweeps import synthetic
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
