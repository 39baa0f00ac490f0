"""Many seeds of one configuration trained at once as one vectorised model (issue 12, item 3).

``fit_seeds(stream, models, method, seeds, **settings)`` returns what ``fit()`` returns for each seed
(loop.py); ``lifelong run --seeds 0..9 --vectorize`` records them as S ordinary runs (runs.py). For the
MLP and the methods whose per-step hooks are elementwise per parameter (support.py).
"""

from lifelong.vectorized.loop import fit_seeds
from lifelong.vectorized.support import SUPPORTED

__all__ = ["SUPPORTED", "fit_seeds"]
