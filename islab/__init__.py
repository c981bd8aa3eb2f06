"""islab: the shared library of the importance-sampling-under-label-noise experiments.

Small modules with one job each; the experiment scripts compose them.  Importing islab has
no side effects (no seeding, no device set-up, no file I/O).
"""
