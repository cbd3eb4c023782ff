"""Teacher-forced training of T5 drafters and verifiers, with exact resume from checkpoints."""

from spec_cascade_jax.training.batches import (
    ArrayBatches,
    Batch,
    BatchSource,
    SeqioBatches,
    array_batches,
    jsonl_batches,
    pack_sequence,
    read_jsonl,
    seqio_batches,
)
from spec_cascade_jax.training.trainer import (
    OPTIMIZERS,
    OptimizerConfig,
    TrainResult,
    make_optimizer,
    token_losses,
    train,
)

__all__ = [
    "OPTIMIZERS",
    "ArrayBatches",
    "Batch",
    "BatchSource",
    "OptimizerConfig",
    "SeqioBatches",
    "TrainResult",
    "array_batches",
    "jsonl_batches",
    "make_optimizer",
    "pack_sequence",
    "read_jsonl",
    "seqio_batches",
    "token_losses",
    "train",
]
