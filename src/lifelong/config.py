"""Run settings: one table of options that are both CLI flags (``--batch-size``) and config-file keys
(``batch_size`` or ``batch-size``), merged as defaults < config file < flags, and checked once."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

from lifelong import benchmarks, errors, methods
from lifelong.data.task import SCENARIOS
from lifelong.errors import LifelongError
from lifelong.train import OPTIMIZERS, Settings
from lifelong.vectorized import support as vectorized


def int_list(text) -> list[int]:
    """Whole numbers, comma-separated; ``a..b`` is every number from a to b, both included (0..9)."""
    out = []
    for v in _items(text):
        first, dots, last = str(v).partition("..")
        if dots and int(first) > int(last):
            raise ValueError(f"empty range {v!r}")
        out += list(range(int(first), int(last) + 1)) if dots else [int(v)]
    return out


def float_list(text) -> list[float]:
    return [float(v) for v in _items(text)]


def str_list(text) -> list[str]:
    return [str(v).strip() for v in _items(text)]


def boolean(text) -> bool:
    if isinstance(text, bool):
        return text
    if str(text).lower() in ("1", "true", "yes", "on"):
        return True
    if str(text).lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a yes/no value: {text!r}")


def _items(text) -> list:
    if isinstance(text, list | tuple):
        return list(text)
    return [v for v in str(text).split(",") if v.strip()]


# List options whose values must be distinct (a repeated seed would pass for an independent run).
UNIQUE_LISTS = ("seeds", "task_order", "class_order", "method")


@dataclass(frozen=True)
class Option:
    name: str  # config key, with underscores; the flag is --name-with-dashes
    convert: typing.Callable
    default: typing.Any
    help: str
    group: str  # "experiment", "benchmark", "model", "train" or "method"
    choices: tuple | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


_SETTINGS_HELP = {
    "epochs": "passes over each task's training data",
    "iterations": "mini-batches per task (replaces --epochs)",
    "batch_size": "mini-batch size",
    "lr": "learning rate",
    "optimizer": "optimizer",
    "momentum": "SGD momentum",
    "weight_decay": "weight decay (L2 on all weights, every step)",
    "reset_optimizer": "a fresh optimizer state for every task",
    "seed": "seed of the stream, the initialisation and the batch order",
    "device": "cpu, or cuda[:N]",
    "eval_every_epoch": "evaluate all tasks after every epoch (per-epoch curves)",
    "eval_batch_size": "batch size for evaluation",
    "lr_decay_every": "multiply the learning rate by --lr-decay every this many epochs of a task",
    "lr_decay": "the factor of --lr-decay-every",
    "lr_decay_start": "epochs of a task at --lr before --lr-decay-every starts counting",
    "clip_grad_norm": "clip the gradient's L2 norm to this before each step",
}

# The methods a run compares when none is named (the main job's): the lecture's reference points, then one
# method per way of measuring importance, each at its default λ (chosen on the main job's validation split).
MAIN_METHODS = ("finetune", "joint", "independent", "ewc", "si", "mas")

EXPERIMENT = [
    Option("benchmark", str, "permuted-minimnist", "benchmark: builder-dataset", "experiment", benchmarks.NAMES),
    Option(
        "method",
        str_list,
        list(MAIN_METHODS),
        "method(s), comma-separated; each may carry its own settings: ewc:lam=10:fisher=sampled",
        "experiment",
    ),
    Option(
        "seeds", int_list, None, "several seeds, e.g. 0,1,2 or 0..9: report mean ± sd (overrides --seed)", "experiment"
    ),
    Option(
        "vectorize",
        boolean,
        False,
        f"train all seeds of a method at once as one vectorised model (the MLP; {vectorized.SUPPORTED}); "
        "recorded as one run per seed",
        "experiment",
    ),
    Option("store", str, "lifelong-runs/runs.db", "results database (run folders go beside it)", "experiment"),
    Option("report", boolean, True, "write a Markdown + PNG report after the runs", "experiment"),
]
BENCHMARK = [
    Option("scenario", str, None, "task, domain or class (default: the builder's usual one)", "benchmark", SCENARIOS),
    Option("tasks", int, None, "number of tasks (default: 5; babi: all 20)", "benchmark"),
    Option("data_dir", str, None, "folder holding dataset files (else $LIFELONG_DATA, else the cache)", "benchmark"),
    Option("samples_per_task", int, None, "at most this many training samples per task", "benchmark"),
    Option("task_order", int_list, None, "present the tasks in this order, e.g. 4,3,2,1,0", "benchmark"),
    Option("permute_first", boolean, False, "permuted: permute task 1 too", "benchmark"),
    Option("pad_to", int, None, "permuted: zero-pad images to this side first (e.g. 32)", "benchmark"),
    Option("angles", float_list, None, "rotated: one angle in degrees per task", "benchmark"),
    Option("classes_per_task", int, None, "split: classes per task (default: all classes / tasks)", "benchmark"),
    Option("class_order", int_list, None, "split: the order classes are dealt to tasks", "benchmark"),
    Option("sentences", int, None, "babi: the most recent story sentences a question sees (default: 50)", "benchmark"),
    Option(
        "noise", float_list, None, "noisy: one noise sd per task, e.g. 0.6,0 (default: evenly 0.6 to 0)", "benchmark"
    ),
]
MODEL = [
    Option(
        "model",
        str,
        None,
        "mlp, memn2n or transformer (LAMOL's network) (default: memn2n for babi, else mlp)",
        "model",
        ("mlp", "memn2n", "transformer"),
    ),
    Option("hidden", int_list, [50, 50, 50], "hidden layer sizes of the MLP", "model"),
    Option("embedding", int, 50, "memn2n: embedding size d (the paper: 50 joint, 20 per task)", "model"),
    Option("hops", int, 3, "memn2n: memory hops", "model"),
    Option("linear_start_epochs", int, 0, "memn2n: epochs of each task without the memory softmax", "model"),
    Option("tie_answers", boolean, False, "memn2n: the answer layer is the last output embedding (paper)", "model"),
    Option(
        "position_encoding",
        str,
        "paper",
        "memn2n: word positions weighted as the paper's PE, the authors' code's, or none (bag of words)",
        "model",
        ("paper", "authors", "none"),
    ),
    Option(
        "empty_slots",
        str,
        "masked",
        "memn2n: empty memory slots masked out of the attention, or attended with score 0 (authors' code)",
        "model",
        ("masked", "attended"),
    ),
]


def _settings_options() -> list[Option]:
    out = []
    hints = typing.get_type_hints(Settings)
    for f in dataclasses.fields(Settings):
        kind = typing.get_args(hints[f.name])[0] if typing.get_args(hints[f.name]) else hints[f.name]
        convert = boolean if kind is bool else kind
        choices = OPTIMIZERS if f.name == "optimizer" else None
        out.append(Option(f.name, convert, f.default, _SETTINGS_HELP[f.name], "train", choices))
    return out


def _method_options() -> list[Option]:
    """Every hyper-parameter of every method, once (methods share names such as lam)."""
    seen: dict[str, Option] = {}
    for cls in methods.METHODS.values():
        hints = typing.get_type_hints(cls)
        for f in cls.hyperparameters():
            if f.name in seen:
                continue
            kind = typing.get_args(hints[f.name])[0] if typing.get_args(hints[f.name]) else hints[f.name]
            convert = boolean if kind is bool else kind
            owners = [n for n, c in methods.METHODS.items() if f.name in {g.name for g in c.hyperparameters()}]
            help = f"{f.metadata.get('help', '')} [{', '.join(owners)}]"
            seen[f.name] = Option(f.name, convert, None, help, "method", f.metadata.get("choices"))
    return list(seen.values())


def options() -> list[Option]:
    return EXPERIMENT + BENCHMARK + MODEL + _settings_options() + _method_options()


def convert(option: Option, value, where: str):
    """Turn a flag's text or a config value into the option's type, with a one-line error."""
    if value is None:
        return None
    try:
        out = option.convert(value)
    except (TypeError, ValueError):
        raise LifelongError(
            f"{where}: {errors.option(option.name)} got {value!r}, which is not a valid {option.convert.__name__}"
        ) from None
    if option.choices and out not in option.choices:
        raise LifelongError(
            f"{where}: {errors.option(option.name)} {out} is not one of: {', '.join(map(str, option.choices))}"
        )
    values = out if isinstance(out, list) else [out]
    if isinstance(out, list) and not out:
        raise LifelongError(f"{where}: {errors.option(option.name)} needs at least one value (got {value!r})")
    if any(isinstance(v, float) and not math.isfinite(v) for v in values):
        raise LifelongError(f"{where}: {errors.option(option.name)} got {value!r}; give finite numbers (no nan or inf)")
    if option.name in UNIQUE_LISTS and len(set(out)) != len(out):
        raise LifelongError(f"{where}: {errors.option(option.name)} {value!r} repeats a value; give each value once")
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice is an error instead of the last one silently winning."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


# Options that name a path: in a config file they are relative to the file's folder, not the working directory.
PATH_OPTIONS = ("data_dir",)


def read_yaml(path, what: str = "config file", flag: str = " to --config"):
    """The YAML document of the file at ``path`` (keys must be unique), or a one-line LifelongError that
    names it as ``what`` (a config file, a sweep file) and, in its hints, the ``flag`` that gave it."""
    p = Path(path)
    if p.is_dir():
        raise LifelongError(f"{what} {path} is a folder; give the YAML file inside it{flag}")
    if not p.is_file():
        raise LifelongError(f"{what} {path} does not exist; check the path{' given' + flag if flag else ''}")
    try:
        return yaml.load(p.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError:
        raise LifelongError(f"{what} {path} is not UTF-8 text; give a YAML file") from None
    except OSError as e:
        raise LifelongError(f"cannot read {what} {path} ({e.strerror or e}); check its permissions") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or ""
        what_is = "has a duplicate key" if problem.startswith("duplicate key") else "is not valid YAML"
        detail = f" ({problem})" if what_is.startswith("has") else ""
        raise LifelongError(f"{what} {path} {what_is}{where}{detail}; fix it and run again") from None


def read_config_file(path: str) -> dict:
    """A YAML mapping of option names to values; keys may use dashes or underscores."""
    p, data = Path(path), read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LifelongError(f"config file {path} must be a mapping of option: value lines")
    by_name = {o.name: o for o in options()}
    out = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in by_name:
            raise LifelongError(f"config file {path}: unknown key {key!r}; `lifelong list` shows every option")
        out[name] = convert(by_name[name], value, path)
        if name in PATH_OPTIONS and out[name] is not None:
            out[name] = str(p.parent.resolve() / Path(out[name]).expanduser())
    return out


def resolve(config_file: str | None, flags: dict) -> dict:
    """Defaults < config file < flags given on the command line (None = not given)."""
    cfg = {o.name: o.default for o in options()}
    if config_file:
        cfg.update(read_config_file(config_file))
    cfg.update({k: v for k, v in flags.items() if v is not None})
    for name in ("method",):
        if isinstance(cfg[name], str):
            cfg[name] = str_list(cfg[name])
    return cfg


def split_config(cfg: dict) -> dict[str, dict]:
    """Group a resolved config by what consumes it: benchmark, model, train, method options."""
    groups: dict[str, dict] = {"experiment": {}, "benchmark": {}, "model": {}, "train": {}, "method": {}}
    for o in options():
        if o.group != "method" or cfg.get(o.name) is not None:
            groups[o.group][o.name] = cfg.get(o.name, o.default)
    return groups
