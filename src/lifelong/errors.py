"""The one error type users see: a message that says what is wrong and how to fix it."""


class LifelongError(Exception):
    """A problem with the user's input or data. The CLI prints it as one line and exits non-zero."""


class DivergedError(LifelongError):
    """Training produced a non-finite loss; the run is recorded as failed."""

    def __init__(self, task: int, epoch: int, value: float):
        self.task, self.epoch, self.value = task, epoch, value
        super().__init__(
            f"training diverged: the loss became {value} in task {task + 1}, epoch {epoch + 1}; "
            "lower --lr or the method's regularisation strength and run again"
        )
