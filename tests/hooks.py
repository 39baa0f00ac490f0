"""Driving a method's hooks by hand, for tests that check one step against an independent computation."""


def at_task(method, model, stream, k: int):
    """Prepare ``method`` and take it to the start of task ``k``: each earlier task passes through
    before_task and after_task with no training step (so memories fill with its data), then task k's
    before_task. Returns task k."""
    method.prepare(model, stream)
    for task in stream.tasks[:k]:
        method.before_task(task, model)
        method.after_task(task, model)
    method.before_task(stream.tasks[k], model)
    return stream.tasks[k]
