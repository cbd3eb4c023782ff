"""Data: the T5 vocabulary, special token ids and the seqio evaluation tasks.

Importing this package is cheap: it re-exports only the vocabulary module, which loads seqio (and
with it TensorFlow, several seconds) only when a vocabulary is built. Import the tasks explicitly,
which registers them with seqio:

    from spec_cascade_jax.data import tasks
    examples = tasks.get_eval_dataset("xsum_v110", "validation", vocab_path=...)

`testing_sp` trains a tiny SentencePiece model for tests.
"""

from spec_cascade_jax.data.vocab import (
    DEFAULT_EXTRA_IDS,
    DEFAULT_VOCAB_PATH,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    get_vocabulary,
)

__all__ = [
    "DEFAULT_EXTRA_IDS",
    "DEFAULT_VOCAB_PATH",
    "EOS_ID",
    "PAD_ID",
    "UNK_ID",
    "get_vocabulary",
]
