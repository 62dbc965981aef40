"""Training engines for the VLA stack: mixture-aware data over token shards and the torch engine
with exact resume (the megatron engine is reserved)."""

__version__ = "0.1.0"

from vla_train.config import TrainConfig, TrainConfigError  # noqa: E402
from vla_train.engine import Trainer, TrainResult, train  # noqa: E402
from vla_train.quick import tiny_config, train_tiny  # noqa: E402

__all__ = [
    "TrainConfig",
    "TrainConfigError",
    "TrainResult",
    "Trainer",
    "tiny_config",
    "train",
    "train_tiny",
]
