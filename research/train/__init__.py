"""Training: optimizer, schedules, steps, the fused loss, the compiled program, checkpoints, loop.

`research.train.loop.train(config, workdir)` trains one run in its run directory.
"""
