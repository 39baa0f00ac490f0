"""Checkpoints: after every training stage fit() can save all it needs to go on, so that a run killed at any
moment resumes from its last finished stage and ends with the R matrix, bit for bit, of a run never
stopped.

What is saved (``save``): the model (its structure too: a method may have grown it), the optimizer
(fit()'s, kept across tasks with ``reset_optimizer`` off; a method may also refer to it), the method's
whole state (every attribute, walked by graph.py: importances, anchors, memories, masks, columns, frozen
copies, its own optimizers and random generators), fit()'s generator of batch orders, the global random
states (torch's, CUDA's on a GPU, Python's ``random`` and numpy's), and fit()'s bookkeeping (the rows of R,
per-epoch curves, losses, timings, capacity records). Tensors go to safetensors, the rest to JSON; no
pickles (files.py has the layout and how a write is made atomic).

What is checked on ``load``, each with a one-line error: that the files are whole (sha256), the method's
class and settings, fit()'s settings and the stream (its name, scenario, tasks, sizes and a digest of a
sample of its data) are those of the run, and the versions. A checkpoint from another release of
lifelong or of torch is refused: either may change the numbers or the objects' layout, and the resumed
run would silently not be the run that was started. A checkpoint from another commit of the same
release (``code_version``) is accepted with a warning, since most commits change neither (a README
edit moves the commit too), and a refusal would cost the user the whole run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lifelong.checkpoint import files
from lifelong.checkpoint.graph import CheckpointError, capture, class_name, rebuild
from lifelong.data.task import Stream
from lifelong.errors import warn

FORMAT = 1


@dataclasses.dataclass
class FitState:
    """What fit() carries from one training stage to the next."""

    stages_done: int
    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    batches: torch.Generator  # fit()'s generator of batch orders
    rows: list[dict[str, list[float]]]  # R[0..stages_done] under each view
    curves: list[dict]
    losses: list[list[float]]
    train_s: list[float]
    held: list[dict]  # capacity records
    parameters: int  # the model's parameters after the last stage
    eval_s: float
    elapsed_s: float  # seconds of fit() so far (over every process that ran it)


def has_checkpoint(folder: str | Path) -> bool:
    return (Path(folder) / files.STATE).exists()


def stages_done(folder: str | Path) -> int:
    """The training stages the checkpoint in ``folder`` has finished (0 when there is none); read from its
    state alone, without checking it (load() does)."""
    try:
        return int(json.loads((Path(folder) / files.STATE).read_text(encoding="utf-8"))["stages_done"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def save(folder: str | Path, state: FitState, method, settings, stream: Stream, given_model: nn.Module) -> None:
    """Replace the checkpoint in ``folder`` with ``state`` (atomically: see files.py)."""
    roots = {
        "model": state.model,
        "optimizer": state.optimizer,
        "method": method,
        "batches": state.batches,
        "rng": _global_rng(settings.device),
    }
    document, tensors = capture(roots, stream, method.name)
    fit_part = {k: getattr(state, k) for k in ("rows", "curves", "losses", "train_s", "held", "parameters")}
    document |= {
        "format": FORMAT,
        "stages_done": state.stages_done,
        "versions": _versions(),
        "method": {"class": class_name(type(method)), "settings": method.settings()},
        "settings": dataclasses.asdict(settings),
        "stream": fingerprint(stream),
        "model_is_given": state.model is given_model,
        "fit": fit_part | {"eval_s": state.eval_s, "elapsed_s": state.elapsed_s},
    }
    files.write(Path(folder), document, tensors, state.stages_done)


def load(folder: str | Path, method, settings, stream: Stream, given_model: nn.Module) -> FitState | None:
    """The state saved in ``folder`` (None when there is none), with ``method`` (and ``given_model``, when
    fit() trained the model it was given) restored in place and every random state set as it was."""
    folder = Path(folder)
    found = files.read(folder)
    if found is None:
        return None
    document, tensors = found
    where = folder / files.STATE
    if document.get("format") != FORMAT:
        raise CheckpointError(
            f"{where} is in checkpoint format {document.get('format')}, not {FORMAT}; start the run again"
        )
    _check_versions(document["versions"], where)
    saved_method = document["method"]
    if saved_method["class"] != class_name(type(method)) or saved_method["settings"] != _json_safe(method.settings()):
        raise CheckpointError(
            f"{where} was made by {saved_method['class']} with {saved_method['settings']}, not by "
            f"{class_name(type(method))} with {_json_safe(method.settings())}; resume with the run's own method"
        )
    _same("other training settings", document["settings"], _json_safe(dataclasses.asdict(settings)), where)
    _same("another stream", document["stream"], fingerprint(stream), where)
    into: dict[str, Any] = {"method": method}
    if document["model_is_given"]:
        into["model"] = given_model
    roots = rebuild(document, tensors, stream, into)
    _set_global_rng(roots["rng"])  # last: nothing after it may draw a random number before training goes on
    fit_part = document["fit"]
    return FitState(
        stages_done=document["stages_done"],
        model=roots["model"],
        optimizer=roots["optimizer"],
        batches=roots["batches"],
        **{k: fit_part[k] for k in ("rows", "curves", "losses", "train_s", "held", "parameters", "eval_s")},
        elapsed_s=fit_part["elapsed_s"],
    )


def fingerprint(stream: Stream) -> dict:
    """The stream's name, scenario, tasks, classes and sizes, and a sha256 of its labels and of 64 evenly
    spaced samples of each input tensor: cheap, and enough to tell another stream or other data apart."""
    digest = hashlib.sha256()
    for task in stream.tasks:
        for x, y in ((task.train_x, task.train_y), (task.test_x, task.test_y)):
            sample = x[:: max(1, len(x) // 64)].contiguous().cpu()
            digest.update(sample.numpy().tobytes())
            digest.update(y.contiguous().cpu().numpy().tobytes())
    return {
        "name": stream.name,
        "scenario": stream.scenario,
        "tasks": [[t.name, list(t.classes), list(t.train_x.shape), list(t.test_x.shape)] for t in stream.tasks],
        "sha256": digest.hexdigest(),
    }


def _global_rng(device: str) -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if str(device).startswith("cuda"):
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_global_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _versions() -> dict:
    import lifelong
    from lifelong.results.store import code_version

    return {"lifelong": lifelong.__version__, "code": code_version(), "torch": torch.__version__}


def _check_versions(saved: dict, where: Path) -> None:
    now = _versions()
    for key, what in (("lifelong", "lifelong"), ("torch", "torch")):
        if saved[key] != now[key]:
            raise CheckpointError(
                f"{where} was written by {what} {saved[key]}, this is {what} {now[key]}: the resumed run would not "
                f"be the run that was started; resume with {what} {saved[key]}, or start the run again"
            )
    if saved["code"] != now["code"]:
        warn(
            f"the checkpoint {where} was written by lifelong {saved['code']}, this is {now['code']}; if the "
            "code of the run changed in between, its result mixes the two versions"
        )


def _same(what: str, saved: dict, now: dict, where: Path) -> None:
    """Refuse a checkpoint made with ``what`` (e.g. "other training settings"), naming what differs."""
    if saved != now:
        differ = [k for k in now if saved.get(k) != now[k]]
        detail = ", ".join(f"{k}: {_short(saved.get(k))} then, {_short(now[k])} now" for k in differ[:3])
        raise CheckpointError(f"{where} belongs to a run with {what} ({detail}); resume with the run's own")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _json_safe(value):
    """What JSON gives back for ``value``: tuples become lists, so that saved and current compare equal."""
    return json.loads(json.dumps(value, default=str))


__all__ = ["CheckpointError", "FitState", "has_checkpoint", "load", "save", "stages_done"]
