"""Draw pipeline schedules: which microbatch and chunk each stage works on at each iteration.

`python -m experiments.pipeline_schedule [--stages=4] [--microbatches=4] [--repeats=2]
[--out=docs/pipeline_schedule.png]` draws GPipe and the circular schedule with `--repeats` chunks
per stage (research/model/pipeline.py) side by side, idle slots (the bubble) left white, and
prints each schedule's bubble counted slot by slot next to (S-1)/(R M + S-1).
"""

import matplotlib
from absl import app
from absl import flags

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from research.model.pipeline import Schedule, bubble_fraction, theoretical_bubble  # noqa: E402

_STAGES = flags.DEFINE_integer('stages', 4, 'S, pipeline stages.')
_MICRO = flags.DEFINE_integer('microbatches', 4, 'M, microbatches per batch.')
_REPEATS = flags.DEFINE_integer('repeats', 2, 'R, chunks of layers per stage (circular).')
_OUT = flags.DEFINE_string('out', 'docs/pipeline_schedule.png', 'Where to write the figure.')


def draw(ax, schedule: Schedule, title: str) -> None:
  """One schedule as a stage x iteration grid; cell 'm.c' is microbatch m in its chunk c."""
  s, m = schedule.num_stages, schedule.num_microbatches
  colours = plt.get_cmap('tab10')
  for stage in range(s):
    for t in range(schedule.num_iterations):
      busy = schedule.active(t, stage)
      v = t - stage
      ax.add_patch(plt.Rectangle((t, stage), 1, 1, edgecolor='grey',
                                 facecolor=colours(v % m % 10) if busy else 'white',
                                 alpha=0.35 + 0.65 * (v // m + 1) / schedule.num_repeats
                                 if busy else 1.0))
      if busy:
        ax.text(t + 0.5, stage + 0.5, f'{v % m}.{v // m}', ha='center', va='center', fontsize=7)
  ax.set_xlim(0, schedule.num_iterations)
  ax.set_ylim(s, 0)
  ax.set_yticks([i + 0.5 for i in range(s)], [f'stage {i}' for i in range(s)])
  ax.set_xlabel('iteration')
  ax.set_title(f'{title}: bubble {bubble_fraction(schedule):.3f} '
               f'(theory {theoretical_bubble(schedule):.3f})', fontsize=9)


def main(argv):
  del argv
  gpipe = Schedule(_STAGES.value, _MICRO.value, 1)
  circular = Schedule(_STAGES.value, _MICRO.value, _REPEATS.value)
  fig, axes = plt.subplots(2, 1, figsize=(max(6, circular.num_iterations * 0.45), 4.5),
                           constrained_layout=True)
  draw(axes[0], gpipe, f'GPipe, S={gpipe.num_stages}, M={gpipe.num_microbatches}')
  draw(axes[1], circular, f'circular, S={circular.num_stages}, M={circular.num_microbatches}, '
       f'R={circular.num_repeats}')
  fig.suptitle('cell m.c: microbatch m in chunk c of the stage; white: idle', fontsize=9)
  fig.savefig(_OUT.value, dpi=120)
  print(f'{"schedule":<10} {"S":>3} {"M":>3} {"R":>3} {"iterations":>10} {"bubble":>8} '
        f'{"theory":>8}')
  for name, schedule in (('gpipe', gpipe), ('circular', circular)):
    print(f'{name:<10} {schedule.num_stages:>3} {schedule.num_microbatches:>3} '
          f'{schedule.num_repeats:>3} {schedule.num_iterations:>10} '
          f'{bubble_fraction(schedule):>8.3f} {theoretical_bubble(schedule):>8.3f}')
  print(f'wrote {_OUT.value}')


if __name__ == '__main__':
  app.run(main)
