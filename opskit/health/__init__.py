"""Host and fleet health: samples (psutil locally, a stdlib probe on targets), Nagios-style
checks against thresholds, working-set fit, Munin plugin output, and the live fleet view.

A *sample* is one dict of the machine's numbers (see :mod:`opskit.health.local`); local and
remote samples share one shape, so :mod:`opskit.health.checks` judges both the same way.
"""
