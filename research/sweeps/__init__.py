"""Sweeps: many training runs planned from a base config, run, and collected into one table.

  sizing      model shapes for a target parameter count; C = 6 N D arithmetic
  generators  Kaplan N and D sweeps, IsoFLOP grids, compute-optimal ladders: (label, config) pairs
  cooldown    constant-learning-rate runs and their cooldown (WSD) branches at IsoFLOP points
  data_constrained  runs repeating a fixed number of unique tokens for several epochs
  tuning      learning-rate x batch-size grids per compute budget
  transfer    learning-rate grids per width, standard and muP
  plan        a sweep file's get_sweep() -> runs, each in its run directory named by its hash
  executors   where runs execute: local subprocesses or Ray tasks
  runner      run_sweep: skip finished runs, resume interrupted ones, record failures
  table       results.csv rebuilt from the run directories, and read back for the fits
  frames      the results table and every run's curves as pandas DataFrames, for notebooks
  synthetic   sweeps drawn from known laws, for tests and the notebooks
"""
