"""Figures of a post-training chain: each stage's curves, accuracy per stage, over-optimisation.

Drawn on matplotlib's Agg canvas (no pyplot), so they work headless and in notebooks alike; each
function writes a PNG and returns its path (and the figure, for a notebook to show).
"""

from __future__ import annotations

import pathlib

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from research import run_dir

# (stage, metric key, label): what each stage's panel shows, training curve first.
STAGE_PANELS = (
    ('sft', 'loss', 'SFT: response NLL (nats/token)'),
    ('reward', 'preference_accuracy', 'reward model: preference accuracy'),
    ('dpo', 'reward_margin', 'DPO: implicit reward margin'),
    ('ppo', 'gold_score', 'PPO: verifier reward of rollouts'),
    ('grpo', 'gold_score', 'GRPO: verifier reward of rollouts'),
)


def _axes(ncols: int, width: float = 4.2, height: float = 3.4):
  fig = Figure(figsize=(width * ncols, height), layout='constrained')
  FigureCanvasAgg(fig)
  return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _write(fig, path) -> pathlib.Path:
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=110)
  return path


def _series(records, key):
  points = [(r['step'], r[key]) for r in records if key in r and 'step' in r]
  return [p[0] for p in points], [p[1] for p in points]


def stage_curves(run_dirs: dict, path):
  """One panel per stage present in `run_dirs` (stage -> run directory): its training curve, and
  its held-out verifier accuracy (greedy) where it was evaluated."""
  panels = [p for p in STAGE_PANELS if p[0] in run_dirs]
  fig, axes = _axes(len(panels))
  for ax, (stage, key, label) in zip(axes, panels):
    records = run_dir.metric_records(run_dirs[stage])
    ax.plot(*_series(records, key), color='tab:blue', lw=1.2, label='training')
    eval_key = 'eval_preference_accuracy' if stage == 'reward' else 'eval_accuracy'
    steps, values = _series(records, eval_key)
    if steps:
      twin = ax if stage == 'reward' else ax.twinx()
      twin.plot(steps, values, 'o-', color='tab:orange', ms=3, label='held-out accuracy')
      if twin is not ax:
        twin.set_ylabel('held-out verifier accuracy (greedy)', color='tab:orange')
    ax.set_title(label, fontsize=10)
    ax.set_xlabel('step')
  return _write(fig, path), fig


def accuracy_by_stage(rows: list[dict], path):
  """Bars of greedy and sampled verifier accuracy per model, with its KL to the SFT model."""
  fig, (ax,) = _axes(1, width=6.0)
  names = [r['model'] for r in rows]
  x = range(len(rows))
  ax.bar([i - 0.2 for i in x], [r['accuracy'] for r in rows], 0.4, label='greedy')
  ax.bar([i + 0.2 for i in x], [r['sampled_accuracy'] for r in rows], 0.4,
         label='sampled (temperature 1)')
  for i, r in enumerate(rows):
    ax.annotate(f'KL {r["kl_to_sft"]:.2f}', (i, max(r['accuracy'], r['sampled_accuracy'])),
                ha='center', va='bottom', fontsize=8)
  ax.set_xticks(list(x), names)
  ax.set_ylabel('held-out verifier accuracy')
  ax.set_ylim(0, 1.1)
  ax.legend(fontsize=8, loc='upper left')
  return _write(fig, path), fig


def overoptimization(curves: dict, path):
  """Proxy (reward model) and gold (verifier) reward against KL(pi || pi_SFT), one line per beta.

  `curves`: beta -> list of {'kl', 'proxy', 'gold'} points in step order (Gao et al. 2022, fig. 1).
  """
  fig, (proxy_ax, gold_ax) = _axes(2, width=5.0, height=3.8)
  colours = colormaps['viridis']
  betas = sorted(curves)
  for i, beta in enumerate(betas):
    points = curves[beta]
    colour = colours(i / max(len(betas) - 1, 1))
    kl = [p['kl'] for p in points]
    proxy_ax.plot(kl, [p['proxy'] for p in points], 'o-', ms=3, color=colour,
                  label=f'beta={beta:g}')
    gold_ax.plot(kl, [p['gold'] for p in points], 'o-', ms=3, color=colour, label=f'beta={beta:g}')
  proxy_ax.set_ylabel('proxy reward (reward-model score)')
  gold_ax.set_ylabel('gold reward (verifier accuracy, sampled)')
  for ax in (proxy_ax, gold_ax):
    ax.set_xlabel('KL(pi || pi_SFT), nats per response')
    ax.legend(fontsize=8)
  fig.suptitle('PPO against a learned reward model: held-out prompts', fontsize=10)
  return _write(fig, path), fig
