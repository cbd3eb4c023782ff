"""Tests for spec_cascade_jax.data.vocab and the tiny SentencePiece helper."""

import os
import pathlib
import subprocess
import sys

import pytest
import sentencepiece as spm

from spec_cascade_jax.data import testing_sp, vocab


@pytest.fixture(scope="module")
def sp_path(tmp_path_factory):
    return testing_sp.train_tiny_sentencepiece(tmp_path_factory.mktemp("sp"))


def test_special_ids_are_the_project_conventions():
    assert (vocab.PAD_ID, vocab.EOS_ID, vocab.UNK_ID) == (0, 1, 2)
    assert vocab.DEFAULT_VOCAB_PATH == "gs://t5-data/vocabs/cc_all.32000/sentencepiece.model"
    assert vocab.DEFAULT_EXTRA_IDS == 100


@pytest.mark.parametrize("extra_ids", [0, 5])
def test_tiny_vocabulary_ids_and_round_trip(sp_path, extra_ids):
    v = vocab.get_vocabulary(sp_path, extra_ids=extra_ids)
    assert (v.pad_id, v.eos_id, v.unk_id) == (vocab.PAD_ID, vocab.EOS_ID, vocab.UNK_ID)
    assert v.vocab_size == testing_sp.DEFAULT_VOCAB_SIZE + extra_ids
    text = "translate English to German: The cat sees a dog."
    ids = v.encode(text)
    assert ids and all(3 <= i < testing_sp.DEFAULT_VOCAB_SIZE for i in ids)
    assert v.decode(ids) == text


def test_tiny_model_is_deterministic_and_reused(tmp_path, sp_path):
    again = testing_sp.train_tiny_sentencepiece(tmp_path / "again")
    # The files differ in the stored model_prefix only; pieces and scores must match exactly.
    first, second = (spm.SentencePieceProcessor(model_file=path) for path in (sp_path, again))
    assert first.get_piece_size() == second.get_piece_size() == testing_sp.DEFAULT_VOCAB_SIZE
    for i in range(first.get_piece_size()):
        assert (first.id_to_piece(i), first.get_score(i)) == (
            second.id_to_piece(i),
            second.get_score(i),
        )
    mtime = os.path.getmtime(again)
    assert testing_sp.train_tiny_sentencepiece(tmp_path / "again") == again
    assert os.path.getmtime(again) == mtime


def test_missing_local_vocab_names_the_path_and_the_fix(tmp_path):
    missing = tmp_path / "nope" / "spm.model"
    with pytest.raises(FileNotFoundError) as info:
        vocab.get_vocabulary(str(missing))
    message = str(info.value)
    assert str(missing) in message
    assert "gin" in message and "VOCAB_PATH" in message


def test_not_a_sentencepiece_model(tmp_path):
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a valid SentencePiece model"):
        vocab.get_vocabulary(str(bad))


def test_wrong_special_ids_are_rejected(tmp_path):
    prefix = tmp_path / "bos_model"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(testing_sp.tiny_corpus()),
        model_prefix=str(prefix),
        vocab_size=100,
        minloglevel=2,
        num_threads=1,
    )  # SentencePiece defaults: unk=0, bos=1, eos=2.
    with pytest.raises(ValueError, match="special ids"):
        vocab.get_vocabulary(f"{prefix}.model")


@pytest.mark.parametrize("extra_ids", [-1, 1.5])
def test_bad_extra_ids(sp_path, extra_ids):
    with pytest.raises(ValueError, match="extra_ids"):
        vocab.get_vocabulary(sp_path, extra_ids=extra_ids)


def test_remote_default_path_is_not_opened():
    # Building the default vocabulary must not touch the network: seqio loads it lazily.
    v = vocab.get_vocabulary()
    assert v.extra_ids == 100


def test_importing_the_ids_does_not_load_tensorflow():
    # Decoding code imports PAD_ID/EOS_ID from here; that must not pull in TensorFlow (seconds).
    code = (
        "import sys; from spec_cascade_jax.data import EOS_ID, PAD_ID; "
        "print('tensorflow' in sys.modules, 'seqio' in sys.modules, PAD_ID, EOS_ID)"
    )
    repo = pathlib.Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=repo, check=True
    ).stdout.split()
    assert out == ["False", "False", "0", "1"]
