"""Downstream tasks: readers for their public formats, the task table, heads, metrics, fine-tuning."""

from protlm.tasks.data import Example, TaskData
from protlm.tasks.table import TASKS, DataRequest, TaskSpec, get_task

__all__ = ["TASKS", "DataRequest", "Example", "TaskData", "TaskSpec", "get_task"]
