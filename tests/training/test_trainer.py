"""Tests of the trainer and its batch sources, on a 1+1-layer T5 with a 128-id vocabulary.

Every `train` call here (the gin end-to-end test included) uses the same model, optimiser settings
and batch shape, so the jitted train step is compiled once for the whole module (the step is
cached on its static arguments). The vocabulary matches the 128-piece test SentencePiece model.
"""

import json

import jax
import numpy as np
import pytest

from spec_cascade_jax.data import testing_sp
from spec_cascade_jax.models.t5 import T5Model, get_config, shift_right
from spec_cascade_jax.training import (
    ArrayBatches,
    array_batches,
    jsonl_batches,
    token_losses,
    train,
)

# The loss's mask of padded vocabulary ids is checked in test_token_losses_hand_values.
CONFIG = get_config(
    "tiny", vocab_size=128, real_vocab_size=128, num_encoder_layers=1, num_decoder_layers=1
)
TRAIN_KW = dict(learning_rate=1e-2, log_every=10, progress=False)


def _reversal_data(batch_size: int = 4, seed: int = 0) -> ArrayBatches:
    """8 random sequences (ids 3..29, length 3..6) whose target is the reversed input."""
    rng = np.random.default_rng(1234)
    sources = [list(rng.integers(3, 30, size=rng.integers(3, 7))) for _ in range(8)]
    return array_batches(
        sources,
        [s[::-1] for s in sources],
        batch_size=batch_size,
        input_length=8,
        target_length=8,
        seed=seed,
    )


def _max_abs_diff(a, b) -> float:
    diffs = jax.tree.map(lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)))), a, b)
    return max(jax.tree.leaves(diffs))


def test_loss_decreases_on_memorisable_data():
    result = train(CONFIG, _reversal_data(), num_steps=30, **TRAIN_KW)
    assert result.losses.shape == (30,)
    assert np.all(np.isfinite(result.losses))
    # At init the loss is about log(128) = 4.9; 30 Adafactor steps at lr 1e-2 on 8 examples bring
    # it well below a third of that (about 0.4 when this test was written).
    assert result.losses[-5:].mean() < 0.3 * result.losses[0], result.losses
    assert result.metrics["accuracy"][-5:].mean() > 0.7


def test_first_step_loss_is_teacher_forced_cross_entropy():
    """The logged loss of step 0 equals a hand computation from `forward` on shifted targets."""
    data = _reversal_data()
    init = train(CONFIG, data, num_steps=0, **TRAIN_KW)
    assert init.final_step == 0 and init.losses.shape == (0,)
    result = train(CONFIG, data, num_steps=1, **TRAIN_KW)

    batch = data.batch_at(0)
    targets = batch["targets"]
    np.testing.assert_array_equal(shift_right(targets)[:, 0], 0)
    np.testing.assert_array_equal(shift_right(targets)[:, 1:], targets[:, :-1])
    logits = np.asarray(
        T5Model(CONFIG).forward(init.params, batch["inputs"], shift_right(targets)), np.float64
    )
    log_z = np.log(np.exp(logits).sum(-1))
    nll = log_z - np.take_along_axis(logits, targets[..., None], -1)[..., 0]
    weights = targets != 0
    expected_ce = (nll * weights).sum() / weights.sum()
    expected_loss = ((nll + 1e-4 * log_z**2) * weights).sum() / weights.sum()
    # float32 forward and loss vs a float64 recomputation from the same float32 logits.
    np.testing.assert_allclose(result.metrics["cross_entropy"][0], expected_ce, rtol=1e-5)
    np.testing.assert_allclose(result.losses[0], expected_loss, rtol=1e-5)
    assert result.metrics["num_tokens"][0] == weights.sum()


@pytest.mark.parametrize(
    "data_kind, dropout_rate",
    [
        ("batch_source", 0.0),
        ("plain_iterator", 0.0),
        # Compiling the dropout step costs about 30 s of CPU on the 2-core machine.
        pytest.param("batch_source", 0.1, marks=pytest.mark.slow),
    ],
)
def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, data_kind, dropout_rate):
    data = _reversal_data()
    kw = dict(TRAIN_KW, dropout_rate=dropout_rate)

    def make_data():
        # A plain generator has no iterate_from: the trainer must skip the consumed batches.
        return data if data_kind == "batch_source" else (data.batch_at(t) for t in range(100))

    full = train(CONFIG, make_data(), num_steps=9, **kw)
    ckpt = tmp_path / "ckpt"
    first = train(CONFIG, make_data(), num_steps=5, checkpoint_dir=ckpt, checkpoint_every=2, **kw)
    assert first.final_step == 5
    resumed = train(CONFIG, make_data(), num_steps=9, checkpoint_dir=ckpt, checkpoint_every=2, **kw)
    assert (resumed.start_step, resumed.final_step) == (5, 9)
    # Same compiled step on the same inputs (and dropout keys, drawn from seed and step) from a
    # restored state: bitwise equal on CPU; 1e-6 leaves room only for a backend that reorders
    # float sums between processes.
    assert _max_abs_diff(resumed.params, full.params) <= 1e-6
    np.testing.assert_allclose(resumed.losses, full.losses[5:], rtol=0, atol=1e-6)
    np.testing.assert_allclose(first.losses, full.losses[:5], rtol=0, atol=1e-6)
    # Asking again for 9 steps finds the finished checkpoint and does nothing.
    again = train(CONFIG, make_data(), num_steps=9, checkpoint_dir=ckpt, **kw)
    assert (again.start_step, again.final_step, again.losses.shape) == (9, 9, (0,))
    assert _max_abs_diff(again.params, full.params) == 0.0
    if dropout_rate:
        # Same initial parameters and batch, so only dropout can change the first loss.
        no_dropout = train(CONFIG, make_data(), num_steps=1, **TRAIN_KW)
        assert abs(no_dropout.losses[0] - full.losses[0]) > 1e-3


def test_resume_with_another_optimizer_is_refused(tmp_path):
    train(CONFIG, _reversal_data(), num_steps=2, checkpoint_dir=tmp_path, **TRAIN_KW)
    with pytest.raises(ValueError, match="optimizer='adafactor'"):
        train(
            CONFIG,
            _reversal_data(),
            num_steps=4,
            checkpoint_dir=tmp_path,
            optimizer="adamw",
            **TRAIN_KW,
        )


def test_bad_optimizer_name_raises():
    with pytest.raises(ValueError, match="'sgd'"):
        train(CONFIG, _reversal_data(), num_steps=1, optimizer="sgd", **TRAIN_KW)


def test_token_ids_beyond_vocab_raise():
    batch = {"inputs": np.full((2, 4), 3, np.int32), "targets": np.full((2, 4), 128, np.int32)}
    with pytest.raises(ValueError, match=r"batch\['targets'\] at step 0 .* outside \[0, 128\)"):
        train(CONFIG, [batch], num_steps=1, **TRAIN_KW)


def test_init_params_with_wrong_shape_raise():
    shapes = T5Model(CONFIG).param_shapes()
    params = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), shapes)
    params["token_embedder"]["embedding"] = np.zeros((16, CONFIG.d_model), np.float32)
    # The shared check (`checkpoint.validate_params`) names the parameter, the source and both
    # shapes.
    expected = (
        r"parameter 'token_embedder/embedding' has shape \(16, 32\) in init_params, "
        r"but the config expects \(\d+, 32\)"
    )
    with pytest.raises(ValueError, match=expected):
        train(CONFIG, _reversal_data(), num_steps=1, init_params=params, **TRAIN_KW)


def test_token_losses_hand_values():
    # V = 4 with one padded id; the padded logit is huge and must not matter.
    logits = np.array([[[2.0, 0.5, -1.0, 50.0]]], np.float32)
    targets = np.array([[1]], np.int32)
    real = logits[..., :3].astype(np.float64)
    log_p = real - np.log(np.exp(real).sum(-1, keepdims=True))
    objective, ce = token_losses(logits, targets, real_vocab_size=3)
    np.testing.assert_allclose(ce, -log_p[..., 1], rtol=1e-6)
    np.testing.assert_allclose(objective, ce, rtol=1e-6)
    # z-loss adds z * logsumexp(real logits)^2.
    objective, _ = token_losses(logits, targets, real_vocab_size=3, z_loss=0.5)
    log_z = np.log(np.exp(real).sum(-1))
    np.testing.assert_allclose(objective, -log_p[..., 1] + 0.5 * log_z**2, rtol=1e-6)
    # Label smoothing 0.3 over 3 real ids: targets (0.15, 0.7, 0.15); the objective is the cross
    # entropy against them minus its minimum (their entropy), so it is 0 when the model predicts
    # exactly that distribution and equals the KL divergence otherwise.
    soft = np.array([0.15, 0.7, 0.15])
    objective, _ = token_losses(logits, targets, real_vocab_size=3, label_smoothing=0.3)
    kl = np.sum(soft * (np.log(soft) - log_p[0, 0]))
    np.testing.assert_allclose(objective[0, 0], kl, rtol=1e-5)
    matched = np.log(soft)[None, None].astype(np.float32)
    objective, _ = token_losses(matched, targets, label_smoothing=0.3)
    np.testing.assert_allclose(objective, 0.0, atol=1e-6)


def test_array_batches_are_a_function_of_seed_and_step():
    data = _reversal_data(batch_size=3, seed=7)
    # Epoch 0 is steps 0-2 (9 rows for 8 examples): its first 8 rows hold each example once.
    rows = np.concatenate([data.batch_at(t)["inputs"] for t in range(3)])
    assert len({tuple(r) for r in rows[:8]}) == 8
    again = _reversal_data(batch_size=3, seed=7)
    for step in (0, 5, 11):
        np.testing.assert_array_equal(data.batch_at(step)["inputs"], again.batch_at(step)["inputs"])
    it = data.iterate_from(4)
    for step in (4, 5, 6):
        np.testing.assert_array_equal(next(it)["targets"], data.batch_at(step)["targets"])
    other = _reversal_data(batch_size=3, seed=8)
    assert not np.array_equal(rows, np.concatenate([other.batch_at(t)["inputs"] for t in range(3)]))


def test_length_buckets_cut_padding_but_no_tokens():
    rng = np.random.default_rng(5)
    sources = [list(rng.integers(3, 30, size=rng.integers(1, 16))) for _ in range(41)]
    targets = [list(rng.integers(3, 30, size=rng.integers(1, 10))) for _ in range(41)]
    kw = dict(batch_size=4, input_length=16, target_length=10, seed=3, length_buckets=(4, 8))
    data, again = array_batches(sources, targets, **kw), array_batches(sources, targets, **kw)
    full = {tuple(x) for x in data.inputs.tolist()}
    per_epoch = 41 // 4  # 10 batches; one example sits out each epoch
    seen, widths = [], set()
    for step in range(2 * per_epoch):
        batch = data.batch_at(step)
        np.testing.assert_array_equal(batch["inputs"], again.batch_at(step)["inputs"])
        s_width, l_width = batch["inputs"].shape[1], batch["targets"].shape[1]
        widths.add((s_width, l_width))
        assert s_width in (4, 8, 16) and l_width in (4, 8, 10)
        # No real token is cut: every row ends in EOS then padding within the width.
        assert np.all((batch["inputs"] == 1).sum(1) == 1)
        assert np.all((batch["targets"] == 1).sum(1) == 1)
        if step < per_epoch:
            seen += [tuple(np.pad(r, (0, 16 - s_width)).tolist()) for r in batch["inputs"]]
    # The 41 random inputs are distinct; epoch 0 holds 40 of them, each once.
    assert len(full) == 41
    assert len(seen) == 40 and len(set(seen)) == 40 and set(seen) <= full
    assert len(widths) > 1 and min(widths) < (16, 10)
    np.testing.assert_array_equal(
        next(data.iterate_from(per_epoch + 3))["targets"], data.batch_at(per_epoch + 3)["targets"]
    )


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory):
    return testing_sp.train_tiny_sentencepiece(tmp_path_factory.mktemp("sp"))


def test_jsonl_batches_tokenize_truncate_and_pad(tmp_path, sp_model):
    path = tmp_path / "train.jsonl"
    records = [
        {"input": "the cat sees the garden", "target": "die Katze sieht den Garten"},
        {"input": "a dog", "target": "ein Hund " * 20},  # longer than target_length
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "\n", encoding="utf-8")
    data = jsonl_batches(
        path, sp_model, batch_size=2, input_length=16, target_length=12, shuffle=False
    )
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=sp_model)
    batch = data.batch_at(0)
    assert batch["inputs"].dtype == np.int32 and batch["inputs"].shape == (2, 16)
    assert batch["targets"].shape == (2, 12)
    for row, record in zip(batch["inputs"], records, strict=True):
        ids = sp.encode(record["input"])
        np.testing.assert_array_equal(row[: len(ids) + 1], ids + [1])  # EOS after the text
        assert not row[len(ids) + 1 :].any()  # then padding
    long_ids = sp.encode(records[1]["target"])
    np.testing.assert_array_equal(batch["targets"][1], long_ids[:11] + [1])  # cut, then EOS


def test_missing_data_file_names_it(tmp_path, sp_model):
    missing = tmp_path / "no_such_train.jsonl"
    with pytest.raises(FileNotFoundError, match="no_such_train.jsonl"):
        jsonl_batches(missing, sp_model, batch_size=2, input_length=8, target_length=8)
    present = tmp_path / "train.jsonl"
    present.write_text('{"input": "a", "target": "b"}\n', encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="no_such.model"):
        jsonl_batches(
            present, tmp_path / "no_such.model", batch_size=2, input_length=8, target_length=8
        )
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "a", "target": "b"}\n{"input": "a"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: missing field 'target'"):
        jsonl_batches(bad, sp_model, batch_size=2, input_length=8, target_length=8)


def test_run_train_from_the_demo_gin_exports_a_loadable_model(tmp_path, sp_model):
    """The gin entry point with the demo drafter's run file, shrunk to 3 steps of CONFIG's model
    with TRAIN_KW's optimiser (so the compiled step is shared with the other tests)."""
    import gin

    from spec_cascade_jax import main as cli
    from spec_cascade_jax import train as train_lib
    from spec_cascade_jax.training import export

    data = tmp_path / "train.jsonl"
    data.write_text(
        '{"input": "the cat sees the garden", "target": "die Katze sieht den Garten"}\n'
        '{"input": "a dog has a letter", "target": "ein Hund hat einen Brief"}\n',
        encoding="utf-8",
    )
    tiny = (
        "{'d_model': 32, 'd_ff': 64, 'num_heads': 2, 'd_kv': 8, 'num_encoder_layers': 1, "
        "'num_decoder_layers': 1, 'relative_attention_num_buckets': 8}"
    )
    try:
        cli.configure(
            ["runs/train_demo_drafter.gin"],
            [
                f"MODEL_OVERRIDES = {tiny}",
                f"run_train.train_file = '{data}'",
                f"run_train.vocab_path = '{sp_model}'",
                "NUM_STEPS = 3",
                "BATCH_SIZE = 4",
                "run_train.input_length = 8",
                "run_train.target_length = 8",
                "run_train.drop_too_long = False",
                "run_train.length_buckets = []",
                "run_train.optimizer = 'adafactor'",
                "LEARNING_RATE = 1e-2",
                "run_train.warmup_steps = 0",
                "run_train.schedule = 'constant'",
                "run_train.weight_decay = 0.0",
                "run_train.max_grad_norm = None",
                "run_train.dropout_rate = 0.0",
                "run_train.progress = False",
                f"CHECKPOINT_DIR = '{tmp_path / 'ckpt'}'",
                f"EXPORT_DIR = '{tmp_path / 'export'}'",
            ],
        )
        result = train_lib.run_train()
    finally:
        gin.clear_config()
    assert result.final_step == 3 and np.all(np.isfinite(result.losses))
    config, params = export.load_model(tmp_path / "export")
    # The 128-piece test vocabulary is already a multiple of 128, so nothing is padded.
    assert config == CONFIG
    assert _max_abs_diff(params, result.params) == 0.0
    info = json.loads((tmp_path / "export" / "train_info.json").read_text(encoding="utf-8"))
    assert info["num_steps"] == 3 and info["data"]["input_length"] == 8


@pytest.mark.slow  # imports TensorFlow and builds a tf.data pipeline: about 20 s of CPU
def test_seqio_batches_resume_where_they_left_off(tmp_path, sp_model):
    from spec_cascade_jax.data import tasks
    from spec_cascade_jax.training import seqio_batches

    path = tmp_path / "train.jsonl"
    lines = [
        {"input": f"the cat sees {n} letters", "target": f"die Katze sieht {n} Briefe"}
        for n in range(12)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    name = tasks.register_local_task(
        "trainer_test_local", "wmt14_ende_v003", {"train": str(path)}, sp_model, extra_ids=0
    )
    data = seqio_batches(name, batch_size=5, input_length=16, target_length=12, seed=3)
    stream = data.iterate_from(0)
    first = [next(stream) for _ in range(6)]  # crosses the 12-example epoch boundary
    resumed = data.iterate_from(4)
    for step in (4, 5):
        batch = next(resumed)
        np.testing.assert_array_equal(batch["inputs"], first[step]["inputs"])
        np.testing.assert_array_equal(batch["targets"], first[step]["targets"])
    assert first[0]["inputs"].shape == (5, 16) and first[0]["targets"].shape == (5, 12)
    assert np.all((first[0]["targets"] == 1).sum(1) == 1)  # one EOS per row
    with pytest.raises(ValueError, match="no_such_task"):
        seqio_batches("no_such_task", batch_size=2, input_length=8, target_length=8)
