"""Why forgetting happens, drawn: the loss surfaces of two tasks over a plane of parameter space, and the
paths training takes across them (the lecture's picture; Mirzadeh et al. 2020, "Understanding the role of
training regimes in continual learning", arXiv 2006.06958), and each task's loss along the straight lines
between solutions (Mirzadeh et al. 2021, "Linear mode connectivity in multitask and continual learning",
arXiv 2010.04495).

    import lifelong as ll
    from lifelong import landscape
    stream = ll.benchmarks.noisy("minimnist", n_tasks=2, noise=[0.4, 0.0])
    ls = landscape.draw(stream, ll.methods.create("ewc", lam=100), epochs=10)
    ls.loss["finetune"][0], ls.loss["method"][0]     # task 1's loss at θ*_2 finetune and θ*_2 EWC
    landscape.write(ls, "landscape/")                # report.md, PNGs, landscape.json

plane.py (the plane through three points) · path.py (θ recorded while training) · grid.py (losses at many
points, vectorised) · linear.py (straight lines, barriers) · run.py (draw: the three trainings) · result.py
(Landscape) · plots.py (the figures) · report.py (the Markdown report) · commands.py (`lifelong landscape`).
"""

from lifelong.landscape.linear import Line, line
from lifelong.landscape.path import Recorder
from lifelong.landscape.plane import Plane
from lifelong.landscape.report import write
from lifelong.landscape.result import Landscape
from lifelong.landscape.run import draw

__all__ = ["Landscape", "Line", "Plane", "Recorder", "draw", "line", "write"]
