"""``ray-tagger bench ...``: each benchmark measures a baseline in the same run and reports ratios."""
