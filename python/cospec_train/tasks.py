"""The tasks an arbiter is trained on (they live in cospec_ext.task.tasks, shared with the demo)."""

from cospec_ext.task.tasks import (ASSETS, DEFAULT_ARBITER, DEFAULT_DRAFT, DEFAULT_TARGET, DEFAULT_TREE,  # noqa: F401
                                   ArithTask, Gsm8kTask, left_pad, make_task)
