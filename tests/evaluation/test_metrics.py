"""Tests for spec_cascade_jax.evaluation.metrics on hand-computed cases.

BLEU cases: n-gram precisions p1..p4 counted by hand, BLEU = BP * (p1 p2 p3 p4)^(1/4) * 100.
Tolerance 1e-9 relative: sacrebleu works in float64 and these are exact rational expressions.
"""

import math

import pytest

from spec_cascade_jax.evaluation import metrics

REL = 1e-9


@pytest.mark.parametrize(
    "reference, prediction, expected",
    [
        # Identical (>= 4 tokens so every n-gram order has counts).
        ("Der Hund sieht die Katze.", "Der Hund sieht die Katze.", 100.0),
        # Disjoint.
        ("the cat sat on the mat", "ein völlig anderer deutscher Satz hier", 0.0),
        # p = 5/6, 3/5, 2/4, 1/3 (the 2nd "the" is clipped).
        ("the cat sat on a mat", "the cat sat on the mat", 100 * (1 / 12) ** 0.25),
        # Cased: "The" != "the". p = 5/6, 4/5, 3/4, 2/3.
        ("the cat sat on the mat", "The cat sat on the mat", 100 * (1 / 3) ** 0.25),
        # Brevity penalty: all precisions 1, BP = exp(1 - 6/4).
        ("the cat sat on a mat", "the cat sat on", 100 * math.exp(-0.5)),
        # Exp smoothing: p = 4/5, 2/4, 1/3 and no 4-gram match -> p4 = 1 / (2 * 2).
        ("a b c y d", "a b c x d", 100 * (4 / 5 * 2 / 4 * 1 / 3 * 1 / 4) ** 0.25),
        # intl tokenisation splits Unicode punctuation: „ and “ are tokens, so this matches fully.
        ("„ Hallo “ sagt er", "„Hallo“ sagt er", 100.0),
    ],
)
def test_bleu_hand_cases(reference, prediction, expected):
    assert metrics.bleu([reference], [prediction]) == {"bleu": pytest.approx(expected, rel=REL)}


def test_bleu_is_corpus_level():
    # Pooled counts: 1-grams 4/8, 2-grams 3/6, 3-grams 2/4, 4-grams 1/2 -> 50, although the
    # sentence scores are 100 and 0.
    score = metrics.bleu(["a b c d", "e f g h"], ["a b c d", "w x y z"])
    assert score["bleu"] == pytest.approx(50.0, rel=REL)


@pytest.mark.parametrize(
    "reference, prediction, expected",
    [
        ("The cat sat on the mat.", "The cat sat on the mat.", (100.0, 100.0, 100.0)),
        ("the cat sat on the mat", "dogs bark loudly", (0.0, 0.0, 0.0)),
        # 1-grams: 5 of 6 match both ways; 2-grams 3 of 5; LCS 5 of 6.
        ("the cat was on the mat", "the cat sat on the mat", (500 / 6, 60.0, 500 / 6)),
        # Stemming: cats -> cat, running/runs -> run.
        ("cat runs", "cats running", (100.0, 100.0, 100.0)),
    ],
)
def test_rouge_hand_cases(reference, prediction, expected):
    score = metrics.rouge([reference], [prediction])
    assert set(score) == {"rouge1", "rouge2", "rougeLsum"}
    for name, value in zip(("rouge1", "rouge2", "rougeLsum"), expected, strict=True):
        assert score[name] == pytest.approx(value, rel=REL), name


def test_rouge_lsum_splits_sentences():
    # One line each, LCS("a b c d e f", "d e f a b c") = 3 of 6 -> rougeL 50. Split after ".",
    # each reference sentence is matched in full by some predicted sentence -> rougeLsum 100.
    score = metrics.rouge(["a b c. d e f."], ["d e f. a b c."], rouge_types=("rougeL", "rougeLsum"))
    assert score == {"rougeL": pytest.approx(50.0, rel=REL), "rougeLsum": pytest.approx(100.0)}


def test_split_sentences():
    assert metrics.split_sentences("One. Two! Three? Four") == "One.\nTwo!\nThree?\nFour"
    assert metrics.split_sentences("t5 style . next") == "t5 style .\nnext"
    assert metrics.split_sentences("kept\nas is. here") == "kept\nas is. here"


def test_rouge_is_a_mean_over_examples_and_deterministic():
    targets = ["the cat sat", "a dog barked"]
    predictions = ["the cat sat", "birds sing"]
    first = metrics.rouge(targets, predictions)
    assert first == {"rouge1": 50.0, "rouge2": 50.0, "rougeLsum": 50.0}
    assert metrics.rouge(targets, predictions) == first


@pytest.mark.parametrize("fn", [metrics.bleu, metrics.rouge])
def test_bad_inputs(fn):
    with pytest.raises(ValueError, match="1 targets but 2 predictions"):
        fn(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        fn([], [])
    with pytest.raises(TypeError, match="predictions\\[0\\]"):
        fn(["a"], [b"a"])
    with pytest.raises(TypeError, match="not one string"):
        fn("abc", "abc")
