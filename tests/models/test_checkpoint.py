"""Checkpoint import (t5x msgpack+TensorStore, Orbax, HF) and save/restore of T5 parameters.

All tests use `tiny()` (vocab 64, d_model 32, 2+2 layers). Random parameters are drawn with numpy
from the config's expected shapes (no `init_params` compile), and one jitted `forward` is shared by
every logits comparison (same input shapes, so it compiles once).
"""

import os

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import orbax.checkpoint as ocp
import pytest

from spec_cascade_jax.models.t5 import (
    T5Model,
    checkpoint_t5x,
    checkpoint_utils,
    params_from_hf_state_dict,
    tiny,
)
from spec_cascade_jax.models.t5 import checkpoint as ckpt

CONFIG = tiny()


def _random_params(config=CONFIG, seed=0):
    rng = np.random.default_rng(seed)
    flat = {
        tuple(name.split("/")): (0.3 * rng.standard_normal(shape)).astype(np.float32)
        for name, shape in ckpt.expected_param_shapes(config).items()
    }
    return checkpoint_utils._unflatten(flat)


def _set(params, name, value):
    *parents, leaf = name.split("/")
    node = params
    for key in parents:
        node = node[key]
    node[leaf] = value


def _assert_trees_equal(actual, expected, dtype=np.float32):
    flat_a, flat_e = checkpoint_utils._flatten(actual), checkpoint_utils._flatten(expected)
    assert sorted(flat_a) == sorted(flat_e)
    for path, value in flat_e.items():
        assert flat_a[path].dtype == dtype, path
        np.testing.assert_array_equal(np.asarray(flat_a[path]), np.asarray(value), err_msg=path)


@pytest.fixture(scope="module")
def source():
    """(params, inputs, decoder inputs, logits of the source params, jitted forward)."""
    params = _random_params()
    rng = np.random.default_rng(1)
    inputs = jnp.asarray(rng.integers(3, CONFIG.vocab_size, (2, 7)), jnp.int32)
    inputs = inputs.at[1, 5:].set(0)  # padding in the second row
    decoder_inputs = jnp.asarray(rng.integers(3, CONFIG.vocab_size, (2, 5)), jnp.int32)
    decoder_inputs = decoder_inputs.at[:, 0].set(0)  # PAD = decoder start
    forward = jax.jit(T5Model(CONFIG).forward)
    logits = np.asarray(forward(params, inputs, decoder_inputs))
    return params, inputs, decoder_inputs, logits, forward


def _adafactor_state(params):
    """A t5x-like factored Adafactor state: v_row/v_col for matrices, v for vectors."""
    state = {}
    for path, value in checkpoint_utils._flatten(params).items():
        if value.ndim == 2:
            slot = {"v_row": np.ones(value.shape[0], np.float32), "v_col": np.ones(value.shape[1])}
            slot["v"] = np.zeros(1, np.float32)
        else:
            slot = {"v": np.full(value.shape, 0.5, np.float32), "v_row": np.zeros(1)}
        state[path] = {**slot, "m": np.zeros(1, np.float32)}
    return {"step": np.int32(1000), "param_states": checkpoint_utils._unflatten(state)}


# ----------------------------------------------------------------------------------------------
# t5x


def test_t5x_checkpoint_reproduces_logits(source, tmp_path):
    params, inputs, decoder_inputs, logits, forward = source
    run_dir = tmp_path / "run"
    state = _adafactor_state(params)
    # Make the Adafactor state big enough that some of it also goes to TensorStore.
    state["param_states"]["token_embedder"]["embedding"]["v"] = np.ones((64, 32), np.float32)
    ckpt.write_t5x_checkpoint(run_dir / "checkpoint_5", _random_params(seed=9), step=5)
    ckpt.write_t5x_checkpoint(run_dir / "checkpoint_20", params, optimizer_state=state, step=20)

    # The writer stores small leaves (scales [32], relpos [2, 8]) inline and kernels in zarr.
    contents = checkpoint_t5x._read_msgpack(run_dir / "checkpoint_20" / "checkpoint")
    assert contents["version"] == 3
    target = contents["optimizer"]["target"]
    assert isinstance(target["encoder"]["encoder_norm"]["scale"], np.ndarray)
    query_spec = target["encoder"]["layers_0"]["attention"]["query"]["kernel"]
    assert query_spec["driver"] == "zarr"
    assert query_spec["kvstore"]["path"] == "target.encoder.layers_0.attention.query.kernel"
    assert (run_dir / "checkpoint_20" / "state.param_states.token_embedder.embedding.v").is_dir()

    # The run dir resolves to the latest step (20), not checkpoint_5.
    for path in (run_dir, run_dir / "checkpoint_20", run_dir / "checkpoint_20" / "checkpoint"):
        loaded = ckpt.load_t5x_checkpoint(path, CONFIG)
        _assert_trees_equal(loaded, params)
    # Bit-identical float32 parameters, so identical logits (tolerance 0).
    np.testing.assert_array_equal(np.asarray(forward(loaded, inputs, decoder_inputs)), logits)


def test_t5x_bfloat16_checkpoint_casts(source, tmp_path):
    params = source[0]
    ckpt.write_t5x_checkpoint(tmp_path / "c", params, dtype="bfloat16")
    rounded = jax.tree.map(lambda x: x.astype(ml_dtypes.bfloat16).astype(np.float32), params)
    # bf16 -> f32 is exact, so the loaded values are exactly the bf16-rounded source.
    _assert_trees_equal(ckpt.load_t5x_checkpoint(tmp_path / "c", CONFIG), rounded)
    as_bf16 = ckpt.load_t5x_checkpoint(tmp_path / "c", CONFIG, dtype=jnp.bfloat16)
    _assert_trees_equal(
        as_bf16, jax.tree.map(lambda x: x.astype(jnp.bfloat16), rounded), dtype=jnp.bfloat16
    )
    kept = ckpt.load_t5x_checkpoint(tmp_path / "c", CONFIG, dtype=None)
    assert {leaf.dtype for leaf in jax.tree.leaves(kept)} == {jnp.dtype(jnp.bfloat16)}


# ----------------------------------------------------------------------------------------------
# Orbax


@pytest.mark.parametrize("layout", ["optimizer/target", "params", "root"])
def test_orbax_checkpoint_reproduces_logits(source, tmp_path, layout):
    params, inputs, decoder_inputs, logits, forward = source
    if layout == "optimizer/target":
        tree = {"optimizer": {"target": params, "state": _adafactor_state(params)}, "step": 7}
    elif layout == "params":
        tree = {"params": params, "opt_state": {"mu": params}, "step": 7}
    else:
        tree = params
    ocp.PyTreeCheckpointer().save((tmp_path / "orbax").absolute(), tree)
    loaded = ckpt.load_orbax_checkpoint(tmp_path / "orbax", CONFIG)
    _assert_trees_equal(loaded, params)
    if layout == "root":
        np.testing.assert_array_equal(np.asarray(forward(loaded, inputs, decoder_inputs)), logits)


def test_save_restore_round_trip(source, tmp_path):
    params = source[0]
    path = ckpt.save_params(tmp_path / "saved", params)
    _assert_trees_equal(ckpt.restore_params(path, CONFIG), params)
    _assert_trees_equal(ckpt.restore_params(path), params)  # no config: no validation
    with pytest.raises(FileExistsError, match="saved"):
        ckpt.save_params(path, params)
    # Saved dtypes are kept by default; overwrite replaces the checkpoint.
    bf16 = jax.tree.map(lambda x: jnp.asarray(x, jnp.bfloat16), params)
    ckpt.save_params(path, bf16, overwrite=True)
    _assert_trees_equal(ckpt.restore_params(path), bf16, dtype=jnp.bfloat16)
    assert ckpt.detect_checkpoint_kind(path) == "orbax"
    _assert_trees_equal(
        ckpt.load_params("auto", path, CONFIG), jax.tree.map(lambda x: x.astype(np.float32), bf16)
    )


def test_load_params_random_and_bad_kind():
    # One layer per stack keeps the init_params compile short; the dispatch is what is tested.
    config = tiny(num_encoder_layers=1, num_decoder_layers=1)
    params = ckpt.load_params("random", None, config, seed=3, dtype="bfloat16")
    ckpt.validate_params(config, params)
    leaves = jax.tree.leaves(params)
    assert {leaf.dtype for leaf in leaves} == {jnp.dtype(jnp.bfloat16)}
    assert all(float(jnp.abs(leaf.astype(jnp.float32)).max()) > 0 for leaf in leaves)
    with pytest.raises(ValueError, match="'tf1'"):
        ckpt.load_params("tf1", "/x", CONFIG)
    with pytest.raises(ValueError, match="needs a checkpoint path"):
        ckpt.load_params("t5x", None, CONFIG)


# ----------------------------------------------------------------------------------------------
# Hugging Face


@pytest.fixture(scope="module")
def hf_model():
    torch = pytest.importorskip("torch")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf_config = transformers.T5Config(
        vocab_size=CONFIG.vocab_size,
        d_model=CONFIG.d_model,
        d_kv=CONFIG.d_kv,
        d_ff=CONFIG.d_ff,
        num_layers=CONFIG.num_encoder_layers,
        num_decoder_layers=CONFIG.num_decoder_layers,
        num_heads=CONFIG.num_heads,
        relative_attention_num_buckets=CONFIG.relative_attention_num_buckets,
        relative_attention_max_distance=CONFIG.relative_attention_max_distance,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        dropout_rate=0.0,
        layer_norm_epsilon=CONFIG.layer_norm_epsilon,
    )
    model = transformers.T5ForConditionalGeneration(hf_config).eval()
    # transformers 5.x ties lm_head to the embedding even when untied is asked for: untie by hand.
    model.lm_head.weight = torch.nn.Parameter(torch.randn(CONFIG.vocab_size, CONFIG.d_model))
    assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()
    return torch, model


@pytest.mark.parametrize("file_format", ["safetensors", "bin", "sharded"])
def test_hf_checkpoint_matches_hf_logits(source, hf_model, tmp_path, file_format):
    torch, model = hf_model
    _, inputs, decoder_inputs, _, forward = source
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    if file_format == "safetensors":
        from safetensors.numpy import save_file

        save_file(state, str(tmp_path / "model.safetensors"))
        path = tmp_path  # a directory
    elif file_format == "bin":
        torch.save({k: torch.from_numpy(v) for k, v in state.items()}, tmp_path / "w.bin")
        path = tmp_path / "w.bin"  # a file
    else:
        from safetensors.numpy import save_file

        names = sorted(state)
        halves = {"a.safetensors": names[::2], "b.safetensors": names[1::2]}
        weight_map = {}
        for shard, keys in halves.items():
            save_file({k: state[k] for k in keys}, str(tmp_path / shard))
            weight_map.update({k: shard for k in keys})
        import json

        (tmp_path / "model.safetensors.index.json").write_text(
            json.dumps({"weight_map": weight_map})
        )
        path = tmp_path
    assert ckpt.detect_checkpoint_kind(path) == "hf"
    params = ckpt.load_params("auto", path, CONFIG)
    with torch.no_grad():
        expected = model(
            input_ids=torch.from_numpy(np.asarray(inputs, np.int64)),
            attention_mask=torch.from_numpy(np.asarray(inputs > 0, np.int64)),
            decoder_input_ids=torch.from_numpy(np.asarray(decoder_inputs, np.int64)),
        ).logits.numpy()
    # Independent float32 implementations: summation order differs, logits are O(1); 1e-4 abs.
    actual = np.asarray(forward(params, inputs, decoder_inputs))
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=0)
    assert np.abs(expected).max() > 1e-2  # not a vacuous comparison


# ----------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "loader",
    [
        ckpt.load_t5x_checkpoint,
        ckpt.load_orbax_checkpoint,
        ckpt.load_hf_checkpoint,
        lambda path, config: ckpt.load_params("auto", path, config),
        lambda path, config: ckpt.restore_params(path),
    ],
)
def test_missing_path_raises_file_not_found(tmp_path, loader):
    missing = tmp_path / "no_such_checkpoint"
    with pytest.raises(FileNotFoundError, match="no_such_checkpoint"):
        loader(missing, CONFIG)


def test_empty_directory_is_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no t5x checkpoint"):
        ckpt.load_t5x_checkpoint(tmp_path, CONFIG)
    with pytest.raises(FileNotFoundError, match="no HF weights"):
        ckpt.load_hf_checkpoint(tmp_path, CONFIG)
    with pytest.raises(ValueError, match="cannot tell the checkpoint format"):
        ckpt.load_params("auto", tmp_path, CONFIG)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "not_a_dict"])
def test_corrupted_t5x_msgpack(source, tmp_path, damage):
    ckpt.write_t5x_checkpoint(tmp_path, source[0])
    file = tmp_path / "checkpoint"
    raw = file.read_bytes()
    if damage == "truncate":
        file.write_bytes(raw[: len(raw) // 2])
        pattern = "cannot decode t5x checkpoint file"
    elif damage == "garbage":
        file.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
        pattern = "t5x checkpoint file"
    else:
        file.write_bytes(b"\x05")  # msgpack for the integer 5
        pattern = "decodes to int, not a dict"
    with pytest.raises(ValueError, match=pattern) as info:
        ckpt.load_t5x_checkpoint(tmp_path, CONFIG)
    assert str(file) in str(info.value)


def test_corrupted_or_missing_t5x_array(source, tmp_path):
    ckpt.write_t5x_checkpoint(tmp_path, source[0])
    array_dir = tmp_path / "target.decoder.layers_1.mlp.wo.kernel"
    chunk = next(p for p in array_dir.iterdir() if not p.name.startswith("."))
    chunk.write_bytes(b"not gzip data at all")
    with pytest.raises(ValueError, match="decoder/layers_1/mlp/wo/kernel"):
        ckpt.load_t5x_checkpoint(tmp_path, CONFIG)
    for p in array_dir.iterdir():
        p.unlink()
    array_dir.rmdir()
    with pytest.raises(FileNotFoundError, match="decoder/layers_1/mlp/wo/kernel"):
        ckpt.load_t5x_checkpoint(tmp_path, CONFIG)


def test_t5x_spec_cannot_escape_checkpoint_dir(source, tmp_path):
    import flax.serialization

    ckpt.write_t5x_checkpoint(tmp_path / "c", source[0])
    file = tmp_path / "c" / "checkpoint"
    contents = checkpoint_t5x._read_msgpack(file)
    spec = contents["optimizer"]["target"]["token_embedder"]["embedding"]
    spec["kvstore"]["path"] = "../elsewhere"
    (tmp_path / "elsewhere").mkdir()
    file.write_bytes(flax.serialization.msgpack_serialize(contents))
    with pytest.raises(ValueError, match="outside the checkpoint directory"):
        ckpt.load_t5x_checkpoint(tmp_path / "c", CONFIG)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupted_hf_files(source, tmp_path, damage):
    from safetensors.numpy import save_file

    file = tmp_path / "model.safetensors"
    save_file({"shared.weight": np.ones((64, 32), np.float32)}, str(file))
    raw = file.read_bytes()
    bad = raw[: len(raw) // 2] if damage == "truncate" else b"\x00\xff" * 999
    file.write_bytes(bad)
    with pytest.raises(ValueError, match="cannot read safetensors file") as info:
        ckpt.load_hf_checkpoint(tmp_path, CONFIG)
    assert str(file) in str(info.value)
    pytest.importorskip("torch")
    (tmp_path / "pytorch_model.bin").write_bytes(bad)
    with pytest.raises(ValueError, match="cannot read PyTorch weights file"):
        ckpt.load_hf_checkpoint(tmp_path / "pytorch_model.bin", CONFIG)


def test_torch_bin_with_arbitrary_objects_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save(
        {"shared.weight": torch.ones(2), "obj": np.random.default_rng(0)}, tmp_path / "x.bin"
    )
    with pytest.raises(ValueError, match="weights_only=True"):
        ckpt.load_hf_checkpoint(tmp_path / "x.bin", CONFIG)


def test_corrupted_orbax_checkpoint(source, tmp_path):
    path = ckpt.save_params(tmp_path / "saved", source[0])
    (path / "_METADATA").write_bytes(b"{ this is not json")
    with pytest.raises(ValueError, match="cannot read the Orbax metadata") as info:
        ckpt.restore_params(path, CONFIG)
    assert str(path) in str(info.value)


def test_shape_mismatch_names_parameter_and_both_shapes(source, tmp_path):
    params = jax.tree.map(np.copy, source[0])
    _set(params, "encoder/layers_1/attention/query/kernel", np.zeros((32, 18), np.float32))
    _set(params, "decoder/decoder_norm/scale", np.zeros((31,), np.float32))  # inline leaf
    ckpt.write_t5x_checkpoint(tmp_path / "t5x", params)
    ckpt.save_params(tmp_path / "orbax", params)
    loaders = [
        lambda: ckpt.validate_params(CONFIG, params),
        lambda: ckpt.load_t5x_checkpoint(tmp_path / "t5x", CONFIG),
        lambda: ckpt.restore_params(tmp_path / "orbax", CONFIG),
    ]
    for load in loaders:
        with pytest.raises(ValueError) as info:
            load()
        message = str(info.value)
        assert (
            "'encoder/layers_1/attention/query/kernel' has shape (32, 18)" in message
            and "expects (32, 16)" in message
        ), message
        assert (
            "'decoder/decoder_norm/scale' has shape (31,)" in message and "expects (32,)" in message
        )


def test_missing_and_unexpected_parameters(source, tmp_path):
    params = jax.tree.map(np.copy, source[0])
    del params["decoder"]["logits_dense"]  # a T5.1.1 (untied) model needs it
    params["encoder"]["layers_0"]["mlp"]["wi"] = {"kernel": np.zeros((32, 64), np.float32)}
    ckpt.write_t5x_checkpoint(tmp_path, params)
    for load in (
        lambda: ckpt.validate_params(CONFIG, params),
        lambda: ckpt.load_t5x_checkpoint(tmp_path, CONFIG),
    ):
        with pytest.raises(ValueError) as info:
            load()
        message = str(info.value)
        assert "missing parameter 'decoder/logits_dense/kernel'" in message
        assert "expects shape (32, 64)" in message
        assert "unexpected parameter 'encoder/layers_0/mlp/wi/kernel'" in message


def test_hf_state_dict_for_other_config_is_rejected(hf_model, tmp_path):
    _, model = hf_model
    from safetensors.numpy import save_file

    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    save_file(state, str(tmp_path / "model.safetensors"))
    other = tiny(num_decoder_layers=3)  # needs decoder.block.2.*
    with pytest.raises(ValueError, match="model.safetensors"):
        ckpt.load_hf_checkpoint(tmp_path, other)


def test_hf_bfloat16_torch_bin(hf_model, tmp_path):
    torch, model = hf_model
    state = {k: v.detach().to(torch.bfloat16).clone() for k, v in model.state_dict().items()}
    torch.save(state, tmp_path / "pytorch_model.bin")
    loaded = ckpt.load_hf_checkpoint(tmp_path, CONFIG)
    rounded = {k: v.float().numpy() for k, v in state.items()}  # bf16 -> f32 is exact
    _assert_trees_equal(loaded, params_from_hf_state_dict(CONFIG, rounded))
