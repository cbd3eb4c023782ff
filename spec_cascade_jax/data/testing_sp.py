"""A tiny SentencePiece model for tests: trained in about a second, no download.

Tests and benchmarks share it; production code never imports this module.

    from spec_cascade_jax.data import testing_sp
    path = testing_sp.train_tiny_sentencepiece(tmp_path)   # -> ".../tiny_sp.model"
    vocab = vocabulary.get_vocabulary(path, extra_ids=0)

The model uses the project's special ids (PAD = 0, EOS = 1, UNK = 2, no BOS), so every id in
`[3, vocab_size)` is an ordinary piece. The corpus mixes English and German words with the task
prefixes ("translate English to German: ", "summarize: "), so that real-looking text tokenizes into
short sequences and unknown characters stay rare. Training is deterministic (one thread, no
sampling of the corpus), so the same arguments always give the same model file.
"""

from __future__ import annotations

import itertools
import os
import pathlib

import sentencepiece as spm
from absl import logging

from spec_cascade_jax.data.vocab import EOS_ID, PAD_ID, UNK_ID

DEFAULT_VOCAB_SIZE = 128
MODEL_FILENAME = "tiny_sp.model"

_SUBJECTS_EN = (
    "the cat",
    "a dog",
    "my friend",
    "the teacher",
    "our house",
    "the city",
    "this book",
)
_VERBS_EN = ("sees", "likes", "reads", "finds", "has", "wants", "makes")
_OBJECTS_EN = ("the garden", "a letter", "the river", "some water", "the old car", "a new song")
_SUBJECTS_DE = ("die Katze", "ein Hund", "mein Freund", "der Lehrer", "unser Haus", "die Stadt")
_VERBS_DE = ("sieht", "mag", "liest", "findet", "hat", "will", "macht")
_OBJECTS_DE = (
    "den Garten",
    "einen Brief",
    "den Fluss",
    "etwas Wasser",
    "das alte Auto",
    "ein Lied",
)
_EXTRA = (
    "Grüße aus Köln, Müller und Söhne: schön, heiß, süß, groß!",
    "News report: the government said on Monday that prices rose by 3.5 percent in 2024.",
    "Police say two men were arrested ; the court will hear the case next week ?",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz 0123456789 ( ) [ ] - ' \" / & %",
)


def tiny_corpus() -> list[str]:
    """The fixed training corpus: a few hundred short English/German sentences (deterministic)."""
    english = [
        f"{s} {v} {o}." for s, v, o in itertools.product(_SUBJECTS_EN, _VERBS_EN, _OBJECTS_EN)
    ]
    german = [
        f"{s} {v} {o}." for s, v, o in itertools.product(_SUBJECTS_DE, _VERBS_DE, _OBJECTS_DE)
    ]
    corpus = []
    for i, (en, de) in enumerate(zip(english, german, strict=False)):
        corpus.append(f"translate English to German: {en.capitalize()}")
        corpus.append(de.capitalize())
        if i % 3 == 0:
            corpus.append(f"summarize: {en} {english[-1 - i]} {de}")
    corpus.extend(_EXTRA * 3)
    return corpus


def train_tiny_sentencepiece(
    directory: str | os.PathLike[str],
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    model_type: str = "unigram",
) -> str:
    """Trains the tiny SentencePiece model into `directory` and returns the `.model` path.

    If the model file already exists there (same name), it is reused, not retrained.

    Args:
      directory: where `tiny_sp.model` and `tiny_sp.vocab` are written (created if missing).
      vocab_size: number of pieces including PAD, EOS and UNK; 64..250 works with this corpus.
      model_type: SentencePiece model type, "unigram" (T5's) or "bpe".
    """
    if not 16 <= vocab_size <= 250:
        raise ValueError(f"vocab_size must be in [16, 250] for the tiny corpus, got {vocab_size!r}")
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model_path = directory / MODEL_FILENAME
    if model_path.exists():
        return str(model_path)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(tiny_corpus()),
        model_prefix=str(directory / MODEL_FILENAME.removesuffix(".model")),
        model_type=model_type,
        vocab_size=vocab_size,
        pad_id=PAD_ID,
        eos_id=EOS_ID,
        unk_id=UNK_ID,
        bos_id=-1,
        character_coverage=1.0,
        num_threads=1,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    logging.info("Trained tiny SentencePiece model (vocab %d) at %s", vocab_size, model_path)
    return str(model_path)
