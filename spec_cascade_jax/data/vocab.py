"""The shared T5 SentencePiece vocabulary and the special token ids.

The special ids are defined here once; decoding code imports them from this module:

    PAD_ID = 0   padding, and the decoder start token
    EOS_ID = 1   end of sequence
    UNK_ID = 2   unknown piece

Importing this module is cheap (no TensorFlow); `get_vocabulary` imports seqio when called.
The default vocabulary is T5's `cc_all.32000` SentencePiece model with 100 extra ids (32,100 real
ids; the models pad their logits to 32,128). Nothing downloads at run time: a `gs://` path is read
through TensorFlow's file system only when the vocabulary is first used, and tests pass a local
model (see `spec_cascade_jax.data.testing_sp`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from absl import logging

if TYPE_CHECKING:
    import seqio

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2

DEFAULT_VOCAB_PATH = "gs://t5-data/vocabs/cc_all.32000/sentencepiece.model"
DEFAULT_EXTRA_IDS = 100

HOW_TO_PROVIDE = (
    "Provide a local SentencePiece `.model` file, e.g. with the gin binding "
    "--gin_bindings=\"VOCAB_PATH='/path/to/sentencepiece.model'\" (or the vocab_path argument of "
    "spec_cascade_jax.data.tasks.get_eval_dataset / get_vocabulary). T5's vocabulary is "
    f"{DEFAULT_VOCAB_PATH} (copy it with `gsutil cp`)."
)


def is_remote_path(path: str) -> bool:
    """True for URLs such as `gs://...`, which are opened through tf.io.gfile, not checked here."""
    return "://" in path


def check_vocab_file(path: str | os.PathLike[str]) -> str:
    """Checks that a local SentencePiece model exists and uses PAD=0, EOS=1, UNK=2.

    Remote paths (`gs://...`) are returned unchecked: checking them would need the network.

    Returns:
      The path as a string.

    Raises:
      FileNotFoundError: the local file does not exist.
      ValueError: the file is not a SentencePiece model or its special ids differ.
    """
    if path is None or not os.fspath(path):
        raise ValueError(f"vocab path must be a non-empty string, got {path!r}. {HOW_TO_PROVIDE}")
    path = os.fspath(path)
    if is_remote_path(path):
        return path
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"SentencePiece vocabulary not found: tried {os.path.abspath(path)!r}. {HOW_TO_PROVIDE}"
        )
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor()
    try:
        processor.Load(path)
    except (OSError, RuntimeError) as e:
        raise ValueError(
            f"{path!r} is not a valid SentencePiece model ({e}). {HOW_TO_PROVIDE}"
        ) from e
    ids = {"pad": processor.pad_id(), "eos": processor.eos_id(), "unk": processor.unk_id()}
    expected = {"pad": PAD_ID, "eos": EOS_ID, "unk": UNK_ID}
    if ids != expected:
        raise ValueError(
            f"SentencePiece model {path!r} has special ids {ids}, expected {expected} "
            "(train it with pad_id=0, eos_id=1, unk_id=2, bos_id=-1)."
        )
    return path


def get_vocabulary(
    path: str | os.PathLike[str] = DEFAULT_VOCAB_PATH,
    extra_ids: int = DEFAULT_EXTRA_IDS,
) -> seqio.SentencePieceVocabulary:
    """Returns the seqio SentencePiece vocabulary at `path` with `extra_ids` sentinel ids.

    Args:
      path: a local `.model` file or a `gs://` URL (default: T5's `cc_all.32000`).
      extra_ids: number of extra sentinel ids appended after the model's pieces (T5: 100).

    Raises:
      FileNotFoundError / ValueError: see `check_vocab_file`; also for a negative `extra_ids`.
    """
    if not isinstance(extra_ids, int) or extra_ids < 0:
        raise ValueError(f"extra_ids must be a non-negative int, got {extra_ids!r}")
    path = check_vocab_file(path)
    import seqio

    logging.info("SentencePiece vocabulary %s with %d extra ids", path, extra_ids)
    return seqio.SentencePieceVocabulary(path, extra_ids=extra_ids)
