"""Tests for spec_cascade_jax.data.tasks: TFDS tasks under tfds mock data, local files, errors.

A tiny SentencePiece model (128 pieces, extra_ids=0) stands in for T5's vocabulary; TFDS examples
come from `tfds.testing.mock_data(policy=USE_CODE)` (random short texts generated from the
dataset's feature spec), so nothing is downloaded.
"""

import importlib
import json

import numpy as np
import pytest
import seqio
import tensorflow_datasets as tfds

from spec_cascade_jax.data import tasks, testing_sp, vocab

NUM_MOCK = 4


@pytest.fixture(scope="module")
def sp_path(tmp_path_factory):
    return testing_sp.train_tiny_sentencepiece(tmp_path_factory.mktemp("sp"))


@pytest.fixture(scope="module")
def tiny_vocab(sp_path):
    return vocab.get_vocabulary(sp_path, extra_ids=0)


def mock_tfds():
    return tfds.testing.mock_data(num_examples=NUM_MOCK, policy=tfds.testing.MockPolicy.USE_CODE)


def squash(text):
    """SentencePiece normalisation collapses runs of whitespace."""
    return " ".join(text.split())


def check_tokens(ids, max_len):
    assert ids.dtype == np.int32 and ids.ndim == 1
    assert 1 <= len(ids) <= max_len
    assert ids[-1] == vocab.EOS_ID
    assert np.all(ids[:-1] != vocab.PAD_ID) and np.all(ids[:-1] != vocab.EOS_ID)


@pytest.mark.parametrize(
    "task_name, tfds_name, input_key, target_key, prefix, max_in, max_out, primary",
    [
        ("wmt14_ende_v003", "wmt14_translate/de-en:1.0.0", "en", "de",
         "translate English to German: ", 80, 80, "bleu"),
        ("cnn_dailymail_v002", "cnn_dailymail:3.4.0", "article", "highlights",
         "summarize: ", 2048, 128, "rouge2"),
        ("xsum_v110", "xsum:1.1.0", "document", "summary", "summarize: ", 1024, 64, "rouge2"),
    ],
)  # fmt: skip
def test_tfds_task_under_mock_data(
    sp_path, tiny_vocab, task_name, tfds_name, input_key, target_key, prefix, max_in, max_out,
    primary,
):  # fmt: skip
    spec = tasks.get_task_spec(task_name)
    assert (spec.tfds_name, spec.prefix, spec.max_input_len, spec.max_target_len) == (
        tfds_name, prefix, max_in, max_out
    )  # fmt: skip
    assert spec.primary_metric == primary
    with mock_tfds():
        raw = list(tfds.load(tfds_name, split="validation").as_numpy_iterator())
        examples = tasks.get_eval_dataset(task_name, "validation", sp_path, extra_ids=0)
    assert len(examples) == len(raw) == NUM_MOCK
    prefix_ids = tiny_vocab.encode(prefix)
    for i, (ex, raw_ex) in enumerate(zip(examples, raw, strict=True)):
        assert ex["index"] == i
        assert ex["inputs_pretokenized"] == prefix + raw_ex[input_key].decode()
        assert ex["targets_pretokenized"] == raw_ex[target_key].decode()
        check_tokens(ex["inputs"], max_in)
        check_tokens(ex["targets"], max_out)
        assert list(ex["inputs"][: len(prefix_ids)]) == prefix_ids
        assert list(ex["inputs"][:-1]) == tiny_vocab.encode(ex["inputs_pretokenized"])
        assert squash(tiny_vocab.decode(ex["targets"].tolist())) == squash(
            ex["targets_pretokenized"]
        )
    # The task's metric functions produce its primary metric.
    scores = {}
    for fn in spec.metric_fns:
        scores.update(fn(["a reference text here"], ["a reference text here"]))
    assert scores[primary] == pytest.approx(100.0)


def test_truncation_keeps_the_head_and_appends_eos(sp_path, tiny_vocab):
    with mock_tfds():
        full = tasks.get_eval_dataset("xsum_v110", "validation", sp_path, extra_ids=0)
        short = tasks.get_eval_dataset(
            "xsum_v110", "validation", sp_path, extra_ids=0, max_input_len=5, max_target_len=3
        )
    for f, s in zip(full, short, strict=True):
        assert len(f["inputs"]) > 5 and len(f["targets"]) > 3  # Truncation really happens.
        np.testing.assert_array_equal(s["inputs"], [*f["inputs"][:4], vocab.EOS_ID])
        np.testing.assert_array_equal(s["targets"], [*f["targets"][:2], vocab.EOS_ID])
        assert s["targets_pretokenized"] == f["targets_pretokenized"]  # Reference untruncated.


def test_num_examples_and_shards_partition_the_split(sp_path):
    with mock_tfds():
        full = tasks.get_eval_dataset("wmt14_ende_v003", "validation", sp_path, extra_ids=0)
        shards = [
            tasks.get_eval_dataset(
                "wmt14_ende_v003", "validation", sp_path, extra_ids=0, num_examples=3,
                shard_info=seqio.ShardInfo(index=k, num_shards=2),
            )
            for k in range(2)
        ]  # fmt: skip
    assert [ex["index"] for ex in shards[0]] == [0, 2]
    assert [ex["index"] for ex in shards[1]] == [1]
    for shard in shards:
        for ex in shard:
            np.testing.assert_array_equal(ex["inputs"], full[ex["index"]]["inputs"])


LOCAL_ROWS = [
    ("The cat sees a dog.", "Die Katze sieht einen Hund."),
    ("My friend reads a letter.", "Mein Freund liest einen Brief.\nZweite Zeile."),
    ("Our house has a garden.", "Unser Haus hat einen Garten."),
]


def write_local(tmp_path, fmt, input_field="input", target_field="target"):
    if fmt == "jsonl":
        path = tmp_path / "data.jsonl"
        lines = [json.dumps({input_field: i, target_field: t, "id": n})
                 for n, (i, t) in enumerate(LOCAL_ROWS)]  # fmt: skip
        path.write_text("\n".join(lines) + "\n\n")
    else:
        path = tmp_path / "data.tsv"
        lines = [f"{input_field}\t{target_field}"]
        lines += [f"{i}\t{t.replace(chr(10), chr(92) + 'n')}" for i, t in LOCAL_ROWS]
        path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize("fmt", ["jsonl", "tsv"])
def test_local_file_task(tmp_path, sp_path, tiny_vocab, fmt):
    path = write_local(tmp_path, fmt, input_field="src", target_field="ref")
    examples = tasks.get_eval_dataset(
        "wmt14_ende_v003", "validation", sp_path, extra_ids=0, data_file=path,
        input_field="src", target_field="ref",
    )  # fmt: skip
    assert len(examples) == len(LOCAL_ROWS)
    for i, (ex, (source, target)) in enumerate(zip(examples, LOCAL_ROWS, strict=True)):
        assert ex["index"] == i
        assert ex["inputs_pretokenized"] == "translate English to German: " + source
        assert ex["targets_pretokenized"] == target  # TSV "\n" escape restored.
        assert ex["inputs"].tolist() == [*tiny_vocab.encode(ex["inputs_pretokenized"]), 1]
        assert ex["targets"].tolist() == [*tiny_vocab.encode(target), 1]


def test_registered_tasks_and_idempotent_registration(tmp_path, sp_path):
    for name in tasks.TASK_NAMES:
        assert seqio.get_mixture_or_task(name).name == name
    importlib.reload(tasks)  # Re-registration on import must not raise.
    names = tasks.register_tasks(vocab_path=sp_path, extra_ids=0, suffix="_tiny")
    assert names == [name + "_tiny" for name in tasks.TASK_NAMES]
    assert tasks.register_tasks(vocab_path=sp_path, extra_ids=0, suffix="_tiny") == names
    local = tasks.register_local_task(
        "wmt14_local_tiny", "wmt14_ende_v003", {"validation": write_local(tmp_path, "jsonl")},
        vocab_path=sp_path, extra_ids=0,
    )  # fmt: skip
    task = seqio.get_mixture_or_task(local)
    ds = task.get_dataset(
        {"inputs": 80, "targets": 80}, split="validation", shuffle=False, try_in_mem_cache=False
    )
    first = next(ds.as_numpy_iterator())
    assert first["targets"][-1] == vocab.EOS_ID
    assert task.postprocess_fn("pred", example=first, is_target=True) == LOCAL_ROWS[0][1]
    assert task.postprocess_fn("pred", example=first, is_target=False) == "pred"


def test_prepared_tfds_data_dir_is_read(tmp_path, sp_path):
    # A real (tiny) prepared TFDS dataset named xsum:1.1.0, read through tfds_data_dir, no mock.
    import tensorflow as tf

    documents, summaries = ["The cat sees a dog.", "A dog reads a letter."], ["Cat.", "Dog."]
    tfds.dataset_builders.TfDataBuilder(
        name="xsum",
        version="1.1.0",
        split_datasets={
            "validation": tf.data.Dataset.from_tensor_slices(
                {"document": documents, "summary": summaries, "id": ["a", "b"]}
            )
        },
        features=tfds.features.FeaturesDict(
            {name: tfds.features.Text() for name in ("document", "summary", "id")}
        ),
        data_dir=str(tmp_path),
    ).download_and_prepare()
    examples = tasks.get_eval_dataset(
        "xsum_v110", "validation", sp_path, extra_ids=0, tfds_data_dir=str(tmp_path)
    )
    # TFDS stores examples in a hash-shuffled (but fixed) order: compare the pairs as a set.
    pairs = {(ex["inputs_pretokenized"], ex["targets_pretokenized"]) for ex in examples}
    assert pairs == {("summarize: " + d, t) for d, t in zip(documents, summaries, strict=True)}
    assert sorted(ex["index"] for ex in examples) == [0, 1]


def test_missing_vocab_file(tmp_path):
    missing = tmp_path / "missing.model"
    with pytest.raises(FileNotFoundError, match="missing.model.*gin"):
        tasks.get_eval_dataset("xsum_v110", "validation", str(missing))


def test_missing_tfds_data_dir(tmp_path, sp_path):
    missing = tmp_path / "no_such_dir"
    with pytest.raises(FileNotFoundError) as info:
        tasks.get_eval_dataset("xsum_v110", "validation", sp_path, tfds_data_dir=str(missing))
    assert str(missing) in str(info.value) and "tfds build xsum" in str(info.value)


def test_unprepared_tfds_data_dir(tmp_path, sp_path):
    with pytest.raises(FileNotFoundError) as info:
        tasks.get_eval_dataset(
            "wmt14_ende_v003", "validation", sp_path, tfds_data_dir=str(tmp_path)
        )
    message = str(info.value)
    assert "no prepared TFDS data" in message and str(tmp_path) in message
    assert "TFDS_DATA_DIR" in message and "data_file" in message


def test_missing_local_file(tmp_path, sp_path):
    missing = tmp_path / "eval.jsonl"
    with pytest.raises(FileNotFoundError, match="eval.jsonl"):
        tasks.get_eval_dataset("xsum_v110", "validation", sp_path, data_file=str(missing))


def test_bad_local_files(tmp_path):
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"input": "a", "target": "b"}\n{"input": "a"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: field 'target' missing"):
        tasks.read_local_examples(str(bad_json))
    bad_tsv = tmp_path / "bad.tsv"
    bad_tsv.write_text("a\tb\nonly one field\n")
    with pytest.raises(ValueError, match=r"bad.tsv:2: expected 2 tab-separated fields"):
        tasks.read_local_examples(str(bad_tsv))
    with pytest.raises(ValueError, match="cannot tell the format"):
        tasks.read_local_examples(str(tmp_path / "data.csv"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"task_name": "wmt15_ende"}, "unknown task 'wmt15_ende'"),
        ({"split": "dev"}, "no split 'dev'"),
        ({"num_examples": 0}, "num_examples must be a positive int"),
        ({"shard_info": seqio.ShardInfo(index=2, num_shards=2)}, "0 <= index < num_shards"),
        ({"max_input_len": 1}, "maximum inputs length"),
    ],
)
def test_bad_arguments(sp_path, kwargs, match):
    args = {"task_name": "xsum_v110", "split": "validation", "vocab_path": sp_path, "extra_ids": 0}
    with pytest.raises(ValueError, match=match):
        tasks.get_eval_dataset(**{**args, **kwargs})
