"""cospec_train: training for CoSpec, installed with cospec_ext (from python/).

rl           the arbiter's RL training (GRPO-style groups, PPO-clipped loss, DDP, checkpoints)
cli          `cospec train` (also `python -m cospec_train`, `torchrun ... -m cospec_train`)
tasks        the tasks an arbiter is trained on: the embedded arithmetic task, GSM8K JSONL
train_models `cospec task train-models`: the embedded task's target and draft models
"""
