"""notebooks/scaling_beyond_chinchilla.ipynb runs top to bottom on synthetic sweeps, recovers
their known laws and shows its figures."""

import pathlib
import re

from tests.notebook_helpers import execute_notebook

ROOT = pathlib.Path(__file__).parents[1]
NOTEBOOK = ROOT / 'notebooks' / 'scaling_beyond_chinchilla.ipynb'


def test_notebook_runs_every_section(monkeypatch):
  monkeypatch.delenv('BEYOND_RUNS', raising=False)
  monkeypatch.setenv('BEYOND_N_BOOTSTRAP', '20')
  outputs, text = execute_notebook(NOTEBOOK, monkeypatch)
  print(text)
  assert 'error' not in {o.output_type for o in outputs}
  assert 'sweeps under' in text and 'cooldown, cosine, hyper, mup' in text
  assert re.search(r'parabola \(default\)\s+a = 0\.4\d\d', text)
  assert 'cooldown / cosine compute: 0.' in text
  r_star = float(re.search(r'R\* = ([\d.]+)', text).group(1))
  assert 12 < r_star < 19  # generated with 15.4
  assert re.search(r'learning_rate_opt = [\d.]+ C\^-0\.1[0-5]', text)  # generated with -0.125
  assert re.search(r'batch_size_opt = [\d.]+ C\^0\.3[0-5]', text)  # generated with 0.327
  assert re.search(r'mup\s+learning_rate_opt ∝ width\^-?0\.0', text)
  assert re.search(r'standard\s+learning_rate_opt ∝ width\^-(0\.9|1\.0)', text)
  images = [o for o in outputs if 'image/png' in o.get('data', {})]
  assert len(images) == 7
