"""Scaling-law fits (Kaplan et al. 2020; Hoffmann et al. 2022; data-constrained and
hyperparameter laws), their report and figures.

The fits take arrays (N, D, C, losses, training curves); `research.sweeps.table` reads them from a
sweep's results table. Nothing here imports the training or sweep packages.
"""

from research.scaling.chinchilla import fit_envelope
from research.scaling.chinchilla import fit_isoflop
from research.scaling.chinchilla import fit_parametric
from research.scaling.data_constrained import fit_data_constrained
from research.scaling.emergence import fit_emergence
from research.scaling.hyperparameters import fit_hyperparameter_law
from research.scaling.kaplan import fit_kaplan_c
from research.scaling.kaplan import fit_kaplan_d
from research.scaling.kaplan import fit_kaplan_n
from research.scaling.kaplan import fit_kaplan_nd
