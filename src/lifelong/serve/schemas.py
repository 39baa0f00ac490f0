"""The HTTP API's request and response bodies (pydantic), and the checks pydantic cannot express alone.

Inputs arrive as JSON numbers and nothing else: the body is parsed by the JSON parser, checked here value by
value (numbers only — no strings, booleans or nulls —, finite, within float32, the model's shape) and only
then copied into a float32 tensor. Nothing received is unpickled or evaluated.

An input is accepted in the model's own shape (``Service.input_shape``, e.g. 14 × 14 nested lists) or as one
flat list of the same number of values, since that is what most clients have at hand.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import torch
from pydantic import BaseModel, ConfigDict, Field, StrictInt

FLOAT32_MAX = 3.4028234663852886e38
TASK_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"  # printable, not blank
TASK_RULE = "1 to 200 printable characters"

TaskName = Annotated[str, Field(max_length=200, pattern=TASK_PATTERN, description=f"a task tag: {TASK_RULE}")]


class Invalid(ValueError):
    """A request the schema admits but the model cannot take; the message is the one-line answer (422)."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored


class PredictRequest(_Body):
    inputs: list[Any] = Field(
        description="a batch of inputs: each a list of numbers in the model's input shape, or flat",
        examples=[[[0.0, 0.0, 0.0, 0.0]]],
    )


class PredictResponse(BaseModel):
    labels: list[int] = Field(description="the predicted class of each input")
    probabilities: list[list[float]] = Field(description="each input's probability of every class")
    version: int = Field(description="the model version that answered")


class FeedbackRequest(_Body):
    inputs: list[Any] = Field(
        description="a batch of inputs: each a list of numbers in the model's input shape, or flat",
        examples=[[[0.0, 0.0, 0.0, 0.0]]],
    )
    labels: list[StrictInt] = Field(description="the true class of each input, in [0, n_classes)", examples=[[0]])
    task: TaskName | None = Field(
        default=None, description="the task the feedback belongs to; a new tag opens a new task; default: the current"
    )


class FeedbackResponse(BaseModel):
    accepted: int = Field(description="rows committed to the store")
    task: str = Field(description="the task they were filed under")
    ids: list[int] = Field(description="the first and last row id")


class TaskRequest(_Body):
    name: TaskName


def parse_inputs(inputs: list, input_shape: tuple[int, ...], max_batch: int) -> torch.Tensor:
    """``inputs`` as a float32 tensor of shape (N, *input_shape); raises Invalid with a one-line reason."""
    if not inputs:
        raise Invalid("inputs is empty: send at least one input")
    if len(inputs) > max_batch:
        raise Invalid(f"the batch has {len(inputs)} inputs; this server takes at most {max_batch}: split it")
    size = math.prod(input_shape)
    flat = len(input_shape) > 1
    rows = []
    for i, item in enumerate(inputs):
        where = f"inputs[{i}]"
        if flat and isinstance(item, list) and len(item) == size and not any(isinstance(v, list) for v in item):
            _check_numbers(item, where)  # given flat: reshaped below
            rows.append(torch.tensor(item, dtype=torch.float32).view(input_shape))
            continue
        _check(item, input_shape, where, input_shape, size)
        rows.append(item)
    if all(isinstance(r, list) for r in rows):
        return torch.tensor(rows, dtype=torch.float32).view(len(rows), *input_shape)
    return torch.stack([r if isinstance(r, torch.Tensor) else torch.tensor(r, dtype=torch.float32) for r in rows])


def parse_labels(labels: list[int], n_inputs: int, n_classes: int) -> torch.Tensor:
    if len(labels) != n_inputs:
        raise Invalid(f"{len(labels)} labels for {n_inputs} inputs: send exactly one label per input")
    for i, y in enumerate(labels):
        if not 0 <= y < n_classes:
            raise Invalid(f"labels[{i}] is {y}; this model's classes are 0 to {n_classes - 1}: send one of those")
    return torch.tensor(labels, dtype=torch.long)


def _check(value: Any, shape: tuple[int, ...], where: str, input_shape: tuple[int, ...], size: int) -> None:
    """``value`` is nested lists of exactly ``shape`` holding finite float32 numbers."""
    if not isinstance(value, list) or len(value) != shape[0]:
        got = _shape_of(value)
        raise Invalid(
            f"{where.split(']')[0]}] has shape {_fmt(got)}; this model takes {_fmt(input_shape)} "
            f"(or a flat list of {size} numbers): send each input in that shape"
        )
    if len(shape) == 1:
        _check_numbers(value, where)
        return
    for j, v in enumerate(value):
        _check(v, shape[1:], f"{where}[{j}]", input_shape, size)


def _check_numbers(values: list, where: str) -> None:
    for j, v in enumerate(values):
        # type() rather than isinstance: bool is an int subclass, and True is not a pixel value
        if type(v) is not float and type(v) is not int:
            shown = "null" if v is None else f"{type(v).__name__} {str(v)[:20]!r}"
            raise Invalid(f"{where}[{j}] is {shown}, not a number: send numbers only")
        if not (-FLOAT32_MAX <= v <= FLOAT32_MAX):  # False for NaN too
            shown = f"{v:.3g}" if isinstance(v, float) else f"a {len(str(v))}-digit number"
            raise Invalid(f"{where}[{j}] is {shown}: send finite numbers within the float32 range (no NaN, Infinity)")


def _shape_of(value: Any) -> tuple[int, ...] | None:
    """The nested-list shape along the first elements (for the message; None = not a list)."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return tuple(shape) if shape else None


def _fmt(shape: tuple[int, ...] | None) -> str:
    if shape is None:
        return "() (a single value, not a list)"
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"
