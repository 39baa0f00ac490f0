"""Data: tasks and streams (task.py), builders (builders.py) and datasets (datasets/)."""

from lifelong.data.task import SCENARIOS, RawTask, Stream, Task, make_stream

__all__ = ["SCENARIOS", "RawTask", "Stream", "Task", "make_stream"]
