"""The memory family (issue 7): methods that keep, or regenerate, data of earlier tasks.

buffer.py      the episodic memory every memory method shares (preallocated, selection policies)
projection.py  GEM's and A-GEM's gradient projections
scoring.py     a remembered example scored on its own task's units
replay.py      experience replay
gradient_memory.py  what GEM and A-GEM share
gem.py         GEM
agem.py        A-GEM
"""
