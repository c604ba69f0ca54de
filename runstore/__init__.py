"""The run layer: what a search leaves on disk and the rules for reading it back, with no torch and no Ray.

``runstore.layout`` (the files of a run directory), ``runstore.trials`` (the trial table), ``runstore.metrics`` (metric
names and directions), ``runstore.ranking`` (the one ranking rule) and ``runstore.errors`` (``UserError`` and the
``cli`` wrapper). ``search``, ``reports`` and ``trainables`` all build on it; it imports none of them.
"""
