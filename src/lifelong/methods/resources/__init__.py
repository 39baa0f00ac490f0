"""Additional neural resources: each task gets its own part of the network (the lecture's third direction).

Progressive neural networks (a column per task), PackNet (pruned, per-task masks in a fixed network) and
CPG (compact, pick, grow). All need the task's identity at test time: task-IL only.
"""

# Why these methods refuse the other scenarios (shown in the error and by `lifelong list`).
TASK_IL_ONLY = (
    "each task is answered by its own part of the network, chosen by the task's identity, "
    "which only task-IL gives at test time"
)
