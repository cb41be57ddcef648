"""rrm-serve: Reward Reasoning Models as a scalable judging service for RLHF."""

__version__ = "0.1.0"
