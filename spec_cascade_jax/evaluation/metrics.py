"""Corpus BLEU and ROUGE for the evaluation tasks, deterministic (no bootstrap, no randomness).

Both functions use seqio's metric-function signature `fn(targets, predictions) -> dict[str, float]`
(references first), so they can be attached to seqio tasks as `metric_fns`. Scores are on a 0..100
scale. Pass the *untruncated* reference texts (`targets_pretokenized`), not decoded target ids.

- `bleu`: sacrebleu corpus BLEU with the settings of t5's `metrics.bleu` (SPEC §7): cased,
  `intl` tokenisation, exponential smoothing, no effective order.
- `rouge`: rouge-score ROUGE-1, ROUGE-2 and ROUGE-Lsum F-measures with Porter stemming, averaged
  over examples and multiplied by 100 (SPEC §7: the mean, not a bootstrap estimate). ROUGE-Lsum
  scores the summary-level LCS over sentences, which rouge-score reads as newline-separated lines,
  and T5's vocabulary maps newlines to spaces. So a text without newlines is first split into
  sentences after `.`, `!` or `?` followed by whitespace **[choice]**; this covers t5's rule (a
  newline after " . ") and ordinary detokenized text. ROUGE-1/2 ignore the split (their tokenizer
  drops punctuation).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU

ROUGE_TYPES = ("rouge1", "rouge2", "rougeLsum")

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _check_pairs(targets: Sequence[str], predictions: Sequence[str]) -> None:
    if isinstance(targets, str) or isinstance(predictions, str):
        raise TypeError("targets and predictions must be sequences of strings, not one string")
    if len(targets) != len(predictions):
        raise ValueError(
            f"got {len(targets)} targets but {len(predictions)} predictions; they must pair up"
        )
    if not targets:
        raise ValueError("cannot score an empty list of targets/predictions")
    for name, texts in (("targets", targets), ("predictions", predictions)):
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"{name}[{i}] must be a str, got {type(text).__name__}: {text!r}")


def bleu(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU (one reference per example) with t5's sacrebleu settings.

    Returns:
      {"bleu": score in [0, 100]}.
    """
    _check_pairs(targets, predictions)
    scorer = BLEU(
        lowercase=False,
        force=False,
        tokenize="intl",
        smooth_method="exp",
        effective_order=False,
    )
    score = scorer.corpus_score(list(predictions), [list(targets)])
    return {"bleu": float(score.score)}


def split_sentences(text: str) -> str:
    """Puts one sentence per line for ROUGE-Lsum; text that already has newlines is kept as is."""
    text = text.strip()
    if "\n" in text:
        return text
    return "\n".join(_SENTENCE_END.split(text))


def rouge(
    targets: Sequence[str],
    predictions: Sequence[str],
    rouge_types: Sequence[str] = ROUGE_TYPES,
) -> dict[str, float]:
    """Mean per-example ROUGE F-measures × 100, with stemming.

    Args:
      targets: one reference text per example.
      predictions: one model output per example.
      rouge_types: any of rouge-score's types ("rouge1", "rouge2", "rougeL", "rougeLsum", ...).

    Returns:
      {rouge_type: mean F1 × 100} for each requested type.
    """
    _check_pairs(targets, predictions)
    if isinstance(rouge_types, str) or not rouge_types:
        raise ValueError(f"rouge_types must be a non-empty sequence of names, got {rouge_types!r}")
    scorer = rouge_scorer.RougeScorer(list(rouge_types), use_stemmer=True)
    totals = {name: [] for name in rouge_types}
    for target, prediction in zip(targets, predictions, strict=True):
        scores = scorer.score(split_sentences(target), split_sentences(prediction))
        for name in rouge_types:
            totals[name].append(scores[name].fmeasure)
    return {name: float(100.0 * np.mean(values)) for name, values in totals.items()}
