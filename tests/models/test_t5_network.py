"""T5 network structure, configs, invariances, bf16, dropout and the HF name mapping (no torch)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spec_cascade_jax.models.t5 import (
    T5Config,
    T5Model,
    get_config,
    logical_axes,
    params_from_hf_state_dict,
    params_to_hf_state_dict,
    preset_names,
    shift_right,
    t5_1_1_small,
    tiny,
)
from spec_cascade_jax.models.t5.hf_convert import expected_shapes
from spec_cascade_jax.models.t5.layers import relative_position_bucket


@functools.partial(jax.jit, static_argnums=0)
def _forward(model, params, inputs, decoder_inputs):
    return model.forward(params, inputs, decoder_inputs)


@functools.partial(jax.jit, static_argnums=0)
def _forward_dropout(model, params, inputs, decoder_inputs, rng):
    return model.forward(params, inputs, decoder_inputs, dropout_rng=rng)


@functools.partial(jax.jit, static_argnums=0)
def _forward_and_extend(model, params, inputs, tokens):
    """Teacher-forced logits and the same logits from one K=L `extend` on an empty cache."""
    encoded = model.encode(params, inputs)
    cache = model.init_cache(tokens.shape[0], 8)
    positions = jnp.zeros((tokens.shape[0],), jnp.int32)
    cached, cache = model.extend(params, encoded, cache, tokens, positions)
    return model.forward(params, inputs, tokens), cached, cache


def _flat(tree):
    return {
        tuple(k.key for k in path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def _batch(vocab_size=64, seed=0):
    rng = np.random.default_rng(seed)
    inputs = rng.integers(3, vocab_size, size=(2, 8)).astype(np.int32)
    inputs[1, 5:] = 0
    decoder_inputs = rng.integers(3, vocab_size, size=(2, 6)).astype(np.int32)
    decoder_inputs[:, 0] = 0
    return jnp.asarray(inputs), jnp.asarray(decoder_inputs)


@pytest.fixture(scope="module")
def tiny_model_and_params():
    model = T5Model(tiny("1.1", real_vocab_size=50))
    return model, model.init_params(jax.random.PRNGKey(0))


@pytest.mark.parametrize("version", ["1.1", "1.0"])
def test_tiny_param_tree_follows_t5x_names(version):
    model = T5Model(tiny(version))
    params = _flat(model.init_params(jax.random.PRNGKey(0)))
    expected = expected_shapes(model.config)  # independent hand-written list (HF name map)
    assert {k: v.shape for k, v in params.items()} == expected
    assert all(v.dtype == jnp.float32 for v in params.values())
    gated = version == "1.1"
    assert (("encoder", "layers_1", "mlp", "wi_0", "kernel") in params) == gated
    assert (("encoder", "layers_1", "mlp", "wi", "kernel") in params) == (not gated)
    assert (("decoder", "logits_dense", "kernel") in params) == gated


def test_t5_1_1_small_shapes_and_size():
    model = T5Model(t5_1_1_small())
    shapes = {k: v.shape for k, v in _flat(model.param_shapes()).items()}
    assert shapes[("token_embedder", "embedding")] == (32128, 512)
    assert shapes[("encoder", "relpos_bias", "rel_embedding")] == (6, 32)
    assert shapes[("encoder", "layers_7", "attention", "query", "kernel")] == (512, 384)
    assert shapes[("decoder", "layers_7", "self_attention", "out", "kernel")] == (384, 512)
    assert shapes[("decoder", "layers_0", "encoder_decoder_attention", "key", "kernel")] == (
        512,
        384,
    )
    assert shapes[("decoder", "layers_3", "mlp", "wi_1", "kernel")] == (512, 1024)
    assert shapes[("decoder", "logits_dense", "kernel")] == (512, 32128)
    assert ("encoder", "layers_8", "attention", "query", "kernel") not in shapes
    # The public t5_1_1_small checkpoint has 76,961,152 parameters.
    assert sum(int(np.prod(s)) for s in shapes.values()) == 76_961_152


def test_init_params_distribution(tiny_model_and_params):
    model, params = tiny_model_and_params
    again = model.init_params(jax.random.PRNGKey(0))
    other = model.init_params(jax.random.PRNGKey(1))
    flat, flat_again, flat_other = _flat(params), _flat(again), _flat(other)
    for path, value in flat.items():
        np.testing.assert_array_equal(value, flat_again[path])
        if path[-1] == "scale":
            np.testing.assert_array_equal(value, 1.0)
        else:
            assert not np.array_equal(value, flat_other[path]), path
    # Traceable, with the same values as the eager path (one layer per stack: short compile).
    small = T5Model(tiny("1.1", num_encoder_layers=1, num_decoder_layers=1))
    eager, jitted = (
        small.init_params(jax.random.PRNGKey(2)),
        jax.jit(small.init_params)(jax.random.PRNGKey(2)),
    )
    for path, value in _flat(eager).items():
        np.testing.assert_array_equal(_flat(jitted)[path], value)
    abstract = _flat(jax.eval_shape(model.init_params, jax.random.PRNGKey(0)))
    assert {k: v.shape for k, v in abstract.items()} == {k: v.shape for k, v in flat.items()}
    # std of 2048 N(0, 1) draws is within 10% of 1 with overwhelming probability (~5 sigma).
    assert abs(np.std(flat[("token_embedder", "embedding")]) - 1.0) < 0.1
    query = flat[("encoder", "layers_0", "attention", "query", "kernel")]  # 512 draws
    assert abs(np.std(query) / (32 * 8) ** -0.5 - 1.0) < 0.2


def test_logical_axes(tiny_model_and_params):
    _, params = tiny_model_and_params
    axes = _flat(
        jax.tree_util.tree_map(
            lambda a: "|".join(a), logical_axes(params), is_leaf=lambda x: isinstance(x, tuple)
        )
    )
    assert axes[("token_embedder", "embedding")] == "vocab|embed"
    assert axes[("decoder", "relpos_bias", "rel_embedding")] == "heads|relpos_buckets"
    assert axes[("encoder", "layers_0", "attention", "value", "kernel")] == "embed|joined_kv"
    assert axes[("decoder", "layers_1", "encoder_decoder_attention", "out", "kernel")] == (
        "joined_kv|embed"
    )
    assert axes[("decoder", "layers_1", "mlp", "wi_0", "kernel")] == "embed|mlp"
    assert axes[("decoder", "layers_1", "mlp", "wo", "kernel")] == "mlp|embed"
    assert axes[("decoder", "logits_dense", "kernel")] == "embed|vocab"
    assert axes[("encoder", "encoder_norm", "scale")] == "embed"
    assert set(axes) == set(_flat(params))
    with pytest.raises(ValueError, match="mystery"):
        logical_axes({"encoder": {"mystery": {"kernel": np.zeros((2, 2))}}})


def test_get_config_and_validation():
    assert get_config("t5_1_1_large").d_ff == 2816
    assert get_config("t5_1_1_xl").num_heads == 32
    assert get_config("t5_1_1_base", dtype="bfloat16").compute_dtype == jnp.bfloat16
    assert get_config("tiny_v1_0").feed_forward == "relu"
    v10 = get_config("t5_v1_0_small")
    assert v10.tie_word_embeddings and v10.feed_forward == "relu"
    assert "t5_1_1_small" in preset_names()
    with pytest.raises(ValueError, match="t5_1_1_huge"):
        get_config("t5_1_1_huge")
    with pytest.raises(ValueError, match="swish"):
        tiny(feed_forward="swish")
    with pytest.raises(ValueError, match="float16"):
        tiny(dtype="float16")
    with pytest.raises(ValueError, match="real_vocab_size"):
        tiny(real_vocab_size=65)
    with pytest.raises(ValueError, match="num_heads"):
        tiny(num_heads=0)
    with pytest.raises(ValueError, match="2.0"):
        tiny(version="2.0")
    config = tiny()
    assert hash(config) == hash(tiny()) and config == tiny()
    assert isinstance(config.replace(d_ff=8), T5Config)
    assert T5Model(config) == T5Model(tiny()) and hash(T5Model(config)) == hash(T5Model(tiny()))


@pytest.mark.parametrize(
    ("relative", "bidirectional", "expected"),
    [
        # 32 buckets, max distance 128. Bidirectional: 16 per direction, exact below 8.
        ([0, -1, -7, -8, -15, -16, -127, -128, -1000], True, [0, 1, 7, 8, 9, 10, 15, 15, 15]),
        ([1, 7, 8, 16, 1000], True, [17, 23, 24, 26, 31]),
        # Unidirectional: 32 buckets for keys at or before the query, exact below 16; keys after
        # the query (masked anyway) share bucket 0.
        (
            [0, -1, -15, -16, -31, -32, -64, -127, -500, 5],
            False,
            [0, 1, 15, 16, 21, 21, 26, 31, 31, 0],
        ),
    ],
)
def test_relative_position_bucket_hand_values(relative, bidirectional, expected):
    # Large branch: 8 + floor(log(n/8) / log(16) * 8) (bidirectional) and
    # 16 + floor(log(n/16) / log(8) * 16) (unidirectional), capped at the last bucket.
    got = relative_position_bucket(
        jnp.asarray(relative), bidirectional=bidirectional, num_buckets=32, max_distance=128
    )
    np.testing.assert_array_equal(got, expected)


def test_forward_is_causal_and_ignores_extra_padding(tiny_model_and_params):
    model, params = tiny_model_and_params
    inputs, decoder_inputs = _batch()
    logits = np.asarray(_forward(model, params, inputs, decoder_inputs))
    assert logits.shape == (2, 6, 64) and logits.dtype == np.float32
    changed = decoder_inputs.at[:, 3].set((decoder_inputs[:, 3] + 5) % 64)
    logits_changed = np.asarray(_forward(model, params, inputs, changed))
    # float32, identical computation for positions < 3: equal up to reassociation (1e-6).
    np.testing.assert_allclose(logits_changed[:, :3], logits[:, :3], atol=1e-6, rtol=0)
    assert np.abs(logits_changed[:, 3:] - logits[:, 3:]).max(axis=-1).min() > 1e-3
    padded = jnp.pad(inputs, ((0, 0), (0, 4)))
    np.testing.assert_allclose(
        np.asarray(_forward(model, params, padded, decoder_inputs)), logits, atol=1e-5, rtol=0
    )


def test_bfloat16_compute_is_close_to_float32(tiny_model_and_params):
    model, params = tiny_model_and_params
    model_bf16 = T5Model(model.config.replace(dtype="bfloat16"))
    inputs, decoder_inputs = _batch()
    reference = np.asarray(_forward(model, params, inputs, decoder_inputs))
    forward_bf16, cached_bf16, cache = _forward_and_extend(
        model_bf16, params, inputs, decoder_inputs
    )
    forward_bf16 = np.asarray(forward_bf16)
    assert forward_bf16.dtype == np.float32
    assert cached_bf16.dtype == jnp.float32 and cache.keys[0].dtype == jnp.bfloat16
    # Inference stores weights in bf16 too (SPEC): cast at use becomes a no-op; norm scales and
    # relative biases are rounded once more.
    params_bf16 = jax.tree_util.tree_map(lambda x: x.astype(jnp.bfloat16), params)
    _, cached_bf16_weights, _ = _forward_and_extend(model_bf16, params_bf16, inputs, decoder_inputs)
    assert cached_bf16_weights.dtype == jnp.float32
    # bf16 keeps 8 mantissa bits (relative rounding 2**-9 ~ 0.002 per op). Through 2+2 layers on
    # logits of size <~4 the measured max error is ~0.05 (mean ~0.01); allow 3x that.
    for got in (forward_bf16, np.asarray(cached_bf16), np.asarray(cached_bf16_weights)):
        err = np.abs(got - reference)
        assert err.max() < 0.15 and err.mean() < 0.03, (err.max(), err.mean())
        assert err.max() > 0  # really computed in bf16


def test_dropout_only_with_rng():
    # One layer per stack: every dropout site adds a random-bits kernel to compile.
    config = tiny("1.1", num_encoder_layers=1, num_decoder_layers=1)
    model, model_dropout = T5Model(config), T5Model(config.replace(dropout_rate=0.1))
    params = model.init_params(jax.random.PRNGKey(0))
    inputs, decoder_inputs = _batch()
    plain = np.asarray(_forward(model, params, inputs, decoder_inputs))
    no_rng = np.asarray(_forward(model_dropout, params, inputs, decoder_inputs))
    np.testing.assert_array_equal(no_rng, plain)
    # RBG keys: dropout with the default (partitionable threefry) keys compiles ~4x slower on CPU.
    key, other = jax.random.key(5, impl="rbg"), jax.random.key(6, impl="rbg")
    a = np.asarray(_forward_dropout(model_dropout, params, inputs, decoder_inputs, key))
    b = np.asarray(_forward_dropout(model_dropout, params, inputs, decoder_inputs, key))
    c = np.asarray(_forward_dropout(model_dropout, params, inputs, decoder_inputs, other))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - plain).max() > 1e-2 and np.abs(a - c).max() > 1e-2


def test_score_masks_padded_vocab_and_padding(tiny_model_and_params):
    model, params = tiny_model_and_params
    inputs, _ = _batch()
    targets = jnp.asarray([[5, 9, 1, 0, 0], [7, 3, 4, 8, 1]], jnp.int32)
    scores = np.asarray(jax.jit(model.score)(params, inputs, targets))
    logits = np.asarray(_forward(model, params, inputs, shift_right(targets)))[..., :50]
    log_z = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    expected = np.take_along_axis(logits, np.asarray(targets)[..., None], -1)[..., 0] - log_z
    expected = np.where(np.asarray(targets) > 0, expected, 0.0)
    np.testing.assert_allclose(scores, expected, atol=1e-5, rtol=0)
    assert scores[0, 3] == 0.0 and scores[0, 4] == 0.0 and (scores[1] < 0).all()
    np.testing.assert_array_equal(shift_right(targets)[:, 0], 0)
    np.testing.assert_array_equal(shift_right(targets)[:, 1:], targets[:, :-1])


def test_bad_inputs_raise(tiny_model_and_params):
    model, params = tiny_model_and_params
    inputs, decoder_inputs = _batch()
    cache = model.init_cache(2, 8)
    with pytest.raises(ValueError, match="inputs must have 2 dims"):
        model.encode(params, inputs[0])
    with pytest.raises(ValueError, match="integer"):
        model.forward(params, inputs.astype(jnp.float32), decoder_inputs)
    with pytest.raises(ValueError, match="batch"):
        model.forward(params, inputs[:1], decoder_inputs)
    encoded = jax.eval_shape(model.encode, params, inputs)
    with pytest.raises(ValueError, match="cache batch size 2"):
        model.extend(params, encoded, cache, decoder_inputs[:1], jnp.zeros((1,), jnp.int32))
    with pytest.raises(ValueError, match="positions must have 1 dims"):
        model.extend(params, encoded, cache, decoder_inputs, jnp.zeros((2, 1), jnp.int32))
    with pytest.raises(ValueError, match="max_len 4"):
        model.extend(
            params, encoded, model.init_cache(2, 4), decoder_inputs, jnp.zeros((2,), jnp.int32)
        )
    with pytest.raises(ValueError, match="max_len"):
        model.init_cache(2, 0)


@pytest.mark.parametrize("version", ["1.1", "1.0"])
def test_hf_name_mapping_round_trip_and_errors(version):
    config = tiny(version)
    params = T5Model(config).init_params(jax.random.PRNGKey(0))
    state = params_to_hf_state_dict(config, params)
    q = state["encoder.block.1.layer.0.SelfAttention.q.weight"]
    np.testing.assert_array_equal(
        q, np.asarray(params["encoder"]["layers_1"]["attention"]["query"]["kernel"]).T
    )
    assert state["decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].shape == (
        8,
        2,
    )
    back = _flat(params_from_hf_state_dict(config, state))
    for path, value in _flat(params).items():
        np.testing.assert_array_equal(back[path], value)
    assert set(back) == set(_flat(params))

    missing = dict(state)
    del missing["decoder.block.1.layer.2.layer_norm.weight"]
    with pytest.raises(ValueError, match="layer_norm"):
        params_from_hf_state_dict(config, missing)
    with pytest.raises(ValueError, match="extra.weight"):
        params_from_hf_state_dict(config, {**state, "extra.weight": np.zeros(1)})
    bad = dict(state)
    bad["shared.weight"] = np.zeros((63, 32), np.float32)
    with pytest.raises(ValueError, match="shared.weight"):
        params_from_hf_state_dict(config, bad)
    if config.tie_word_embeddings:
        untied = {**state, "lm_head.weight": state["shared.weight"] + 1.0}
        with pytest.raises(ValueError, match="lm_head"):
            params_from_hf_state_dict(config, untied)
