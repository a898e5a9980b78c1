"""Loss-spike and NaN detection (PaLM-style: roll back to the last good checkpoint, skip batches)."""

from __future__ import annotations

import collections
import math


class SpikeDetector:
  """Flags a loss that is not finite, or above the running mean by `threshold` std devs.

  The window holds the last `window` accepted losses; no spike is called before it holds
  `min_history` of them. The train loop checkpoints `history` and passes it back on resume.
  """

  def __init__(self, threshold: float, window: int, min_history: int = 10, history=()):
    self.threshold = threshold
    self.min_history = min(min_history, window)
    self.history = collections.deque(history, maxlen=window)

  def is_bad(self, loss: float, grad_norm: float = 0.0) -> bool:
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
      return True
    if self.threshold <= 0 or len(self.history) < self.min_history:
      return False
    mean = sum(self.history) / len(self.history)
    std = math.sqrt(sum((x - mean) ** 2 for x in self.history) / len(self.history))
    return loss > mean + self.threshold * max(std, 1e-3 * abs(mean), 1e-6)

  def accept(self, loss: float) -> None:
    self.history.append(loss)

  def restart(self, history=()) -> None:
    """After a rollback: the losses accepted up to the restored step, not the ones after it
    (those are lower than the restored model's, so its first losses would look like spikes)."""
    self.history.clear()
    self.history.extend(history)
