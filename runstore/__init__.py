"""The run layer: what a search leaves on disk and the rules for reading it back, with no torch and no Ray.

``runstore.layout`` (the files of a run directory), ``runstore.trials`` (the trial table), ``runstore.metrics`` (metric
names and directions), ``runstore.ranking`` (the one ranking rule), ``runstore.errors`` (``UserError`` and the ``cli``
wrapper), ``runstore.atomic`` (atomic writes), ``runstore.trust`` (which runs may be resumed) and
``runstore.cachedir`` (where the cache lives). ``search``, ``reports`` and ``trainables`` all build on it; it imports
none of them.
"""
