"""Training settings for runs of a few steps on the tiny fake datasets (conftest.py)."""

from __future__ import annotations


def tiny_settings(**overrides):
    """TrainSettings for a two-step float32 run, with any field overridden."""
    from devolearn_web.training.train import TrainSettings

    values = dict(
        minutes=5.0,
        max_steps=2,
        batch_size=2,
        learning_rate=1e-3,
        # bfloat16 kernels take seconds to warm up for each new shape: float32 keeps tests fast.
        bf16=False,
        threads=2,
        validation_limit=4,
        checkpoint_minutes=60.0,
    )
    values.update(overrides)
    return TrainSettings(**values)
