"""Sweeps: `lifelong sweep sweep.yaml` runs a grid or random search over methods × hyper-parameters ×
seeds × task orders × benchmarks, on this machine or on a Ray cluster, into the results store.

- schema.py: the YAML file, checked key by key (one-line errors), and its expansion into runs;
- plan.py: every run checked (as `lifelong run` checks its options) and identified by its config hash;
- unit.py: the unit of work, one run claimed in the store and run, resumed or left; the hash;
- executors.py: ``local`` (the process pool of lifelong.studies.pool) and ``ray``;
- driver.py: plan, leave what is recorded, dispatch the rest, read back; summary.py: what is printed.

Idempotent and resumable: each run is identified by the hash of its resolved settings, stored with its
row, unique within the sweep's group (``sweep-<name>``). A re-run of a sweep leaves the runs that finished
(or failed), resumes those that were killed or interrupted from their last checkpoint, and runs the
missing ones. Any number of processes running sweeps into one SQLite store record one row per
configuration: each claims its run with an insert-or-ignore in a BEGIN IMMEDIATE transaction, and
SQLite's busy timeout makes the others wait for it.

Open: a store that workers on several machines can write at once. The results store is SQLite, which
suits one machine (the local pool, or Ray workers on one host); SQLite on a network file system is not
safe to share. The issue asks for PostgreSQL behind the same Store API (claim() is one INSERT ... ON
CONFLICT DO NOTHING there); until it exists, a cluster sweep keeps its store on the driver's machine and
its Ray workers on that machine.
"""
