"""Figures for interpretability: attention maps, per-layer logit-lens loss, head-score maps and
curves over training. Each writes a PNG and returns its path."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=110, bbox_inches='tight')
  plt.close(fig)
  return str(path)


def plot_attention(patterns_LxNxTxT, path, labels=None, title: str = 'attention') -> str:
  """One panel per layer (rows) and head (columns): [L, N, T, T] probabilities of one sequence;
  `labels` (T strings) name the positions on the axes when the sequence is short."""
  patterns = np.asarray(patterns_LxNxTxT)
  l, n, t, _ = patterns.shape
  fig, axes = plt.subplots(l, n, figsize=(2.2 * n + 0.6, 2.2 * l + 0.4), squeeze=False)
  for i in range(l):
    for j in range(n):
      ax = axes[i, j]
      ax.imshow(patterns[i, j], cmap='viridis', vmin=0.0, vmax=1.0)
      ax.set_title(f'L{i}.H{j}', fontsize=8)
      if labels is not None and t <= 24:
        ax.set_xticks(range(t), labels, rotation=90, fontsize=5)
        ax.set_yticks(range(t), labels, fontsize=5)
      else:
        ax.set_xticks([])
        ax.set_yticks([])
  fig.suptitle(f'{title} (rows: query position, columns: key position)', fontsize=9)
  return _save(fig, path)


def plot_head_scores(scores_LxN, path, title: str, label: str = 'score') -> str:
  """A [L, N] map of a number per head (induction score, patching effect, ablation loss)."""
  scores = np.asarray(scores_LxN)
  fig, ax = plt.subplots(figsize=(0.6 * scores.shape[1] + 2.2, 0.5 * scores.shape[0] + 1.4))
  image = ax.imshow(scores, cmap='magma', aspect='auto')
  for (i, j), v in np.ndenumerate(scores):
    ax.text(j, i, f'{v:.2f}', ha='center', va='center', fontsize=7,
            color='white' if v < (scores.min() + scores.max()) / 2 else 'black')
  ax.set_xlabel('head')
  ax.set_ylabel('layer')
  ax.set_xticks(range(scores.shape[1]))
  ax.set_yticks(range(scores.shape[0]))
  fig.colorbar(image, ax=ax, label=label)
  ax.set_title(title, fontsize=9)
  return _save(fig, path)


def plot_layer_losses(loss_L1, path, model_loss: float | None = None,
                      title: str = 'logit lens') -> str:
  """Loss of each entry of the residual stream read out through the final norm and unembedding."""
  loss = np.asarray(loss_L1)
  fig, ax = plt.subplots(figsize=(5, 3.2))
  ax.plot(range(len(loss)), loss, 'o-')
  ax.set_xticks(range(len(loss)), ['embed'] + [f'after {i}' for i in range(len(loss) - 1)],
                fontsize=7)
  ax.set_xlabel('residual stream entry (input of block l; last: after the last block)')
  ax.set_ylabel('next-token loss (nats)')
  if model_loss is not None:
    ax.axhline(model_loss, color='grey', ls=':', label='model')
    ax.legend()
  ax.set_title(title, fontsize=9)
  return _save(fig, path)


def plot_training_curves(steps, curves: dict, path, title: str, marks=(),
                         ylabels: dict | None = None) -> str:
  """One panel per named curve against training step, with vertical lines at `marks` (steps)."""
  fig, axes = plt.subplots(len(curves), 1, figsize=(6, 2.4 * len(curves)), sharex=True,
                           squeeze=False)
  for ax, (name, values) in zip(axes[:, 0], curves.items()):
    ax.plot(steps, values, 'o-', ms=3)
    for step in marks:
      ax.axvline(step, color='grey', ls=':')
    ax.set_ylabel((ylabels or {}).get(name, name), fontsize=8)
    ax.grid(alpha=0.3)
  axes[-1, 0].set_xlabel('training step')
  axes[0, 0].set_title(title, fontsize=9)
  return _save(fig, path)
