"""The memory family (issue 7): methods that keep, or regenerate, data of earlier tasks.

buffer.py      the episodic memory every memory method shares (preallocated, selection policies)
projection.py  GEM's and A-GEM's gradient projections
scoring.py     a remembered example scored on its own task's units
replay.py      experience replay
gradient_memory.py  what GEM and A-GEM share
gem.py         GEM
agem.py        A-GEM
distillation.py  knowledge distillation (Hinton, × T², masked units left out): LwF's and DGR+distill's loss
lwf.py         LwF: distilling a frozen copy of the previous model on the new task's inputs (no data kept)
dgr.py         deep generative replay (a VAE's samples labelled by the previous solver), and DGR+distill
icarl.py       iCaRL: herding exemplars, BCE with distillation, nearest-mean-of-exemplars classifier
"""
