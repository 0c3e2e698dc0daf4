"""Task generators of the studies: rows with known preferences and code that checks a response against them.

``synthetic`` (32 users sharing 10 queries), ``synthetic_unique`` (every user asks their own queries, like
the public datasets) and ``personas`` (a persona set for a real instruct model). Their checkers plug into
``axolotl-mipo eval --checker``, e.g. ``--checker experiments.tasks.synthetic:synthetic_checker``.
"""
