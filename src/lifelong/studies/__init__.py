"""Studies of a stream rather than single runs (issue 10): which task order forgets least (orders.py),
which tasks help which (affinity.py, normalised as taskonomy does in ahp.py, clustered in taxonomy.py),
and a curriculum chosen from those measurements (curriculum.py). The units of work run in parallel worker
processes (pool.py); report.py and plots.py print and draw the results.

from lifelong.studies import orders, affinity, curriculum
study = orders.study(cfg, "all", workers=2)          # cfg: a resolved config (lifelong.config.resolve)
aff = affinity.study(cfg, workers=2)                 # T² trainings of one task
proposal = curriculum.plan(aff.gain, aff.forgetting)
"""
