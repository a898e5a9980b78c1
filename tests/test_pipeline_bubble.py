"""experiments.pipeline_bubble end to end at toy size: it times the step without stages and
pipelined, and reports the theory next to each measurement (slow: one process per setting)."""

import json
import pathlib
import subprocess
import sys

import pytest

from research.model.pipeline import Schedule, theoretical_bubble

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_bubble_is_measured_for_each_setting_on_two_devices(tmp_path):
  small = ('model.d_model=16,model.d_ff=32,model.num_heads=2,model.num_kv_heads=2,'
           'data.seq_len=16,model.max_seq_len=16')
  done = subprocess.run(
      [sys.executable, '-m', 'experiments.pipeline_bubble', '--devices=2', '--steps=2',
       '--batch_size=8', '--microbatches=2', f'--set={small}', f'--out={tmp_path / "b.png"}',
       f'--json={tmp_path / "b.json"}'], cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  result = json.loads((tmp_path / 'b.json').read_text())
  assert result['no_stages']['step_time_s'] > 0
  settings = {(r['schedule'], r['stages'], r['microbatches'], r['repeats']) for r in result['rows']}
  assert settings == {('gpipe', 2, 2, 1), ('circular', 2, 2, 2)}  # S=4 needs 4 devices
  for r in result['rows']:
    assert r['theory'] == theoretical_bubble(Schedule(r['stages'], r['microbatches'], r['repeats']))
    assert r['measured'] == 1 - result['no_stages']['step_time_s'] / r['step_time_s']
  assert (tmp_path / 'b.png').stat().st_size > 0 and '| circular | 2 | 2 | 2 |' in done.stdout
