"""Parity with HF transformers' PyTorch T5 on the same random weights (tiny configs, float32)."""

import functools
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from spec_cascade_jax.models.t5 import (  # noqa: E402
    T5Model,
    params_from_hf_state_dict,
    params_to_hf_state_dict,
    tiny,
)

# float32 on both sides, different kernels and summation orders: observed differences are ~1e-6 on
# activations and logits of size ~1-10; 1e-4 leaves room without hiding a real bug (a wrong bucket,
# mask or scale moves values by >= 1e-2).
ATOL = 1e-4
NEW_TOKENS = 20
EOS = 1


def _hf_model(version: str, seed: int):
    """A random-init HF T5 matching `tiny(version)`, with non-trivial norms (and own lm_head)."""
    ours = tiny(version)
    hf_config = transformers.T5Config(
        vocab_size=ours.vocab_size,
        d_model=ours.d_model,
        d_kv=ours.d_kv,
        d_ff=ours.d_ff,
        num_layers=ours.num_encoder_layers,
        num_decoder_layers=ours.num_decoder_layers,
        num_heads=ours.num_heads,
        relative_attention_num_buckets=ours.relative_attention_num_buckets,
        relative_attention_max_distance=ours.relative_attention_max_distance,
        dropout_rate=0.0,
        layer_norm_epsilon=ours.layer_norm_epsilon,
        feed_forward_proj=ours.feed_forward,
        tie_word_embeddings=ours.tie_word_embeddings,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=EOS,
    )
    torch.manual_seed(seed)
    model = transformers.T5ForConditionalGeneration(hf_config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "layer_norm" in name:  # init is all ones; make the scales matter
                param.mul_(1.0 + 0.2 * torch.randn_like(param))
        if not ours.tie_word_embeddings:
            # transformers 5.x ties lm_head to `shared` whatever the config says; untie by hand.
            model.lm_head.weight = torch.nn.Parameter(
                torch.randn_like(model.shared.weight) * ours.d_model**-0.5
            )
    return ours, model


def _state_dict(model) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def _inputs(vocab_size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    inputs = rng.integers(3, vocab_size, size=(3, 11)).astype(np.int64)
    for row, length in enumerate((11, 6, 8)):  # right padding, three lengths
        inputs[row, length:] = 0
    return inputs


@functools.partial(jax.jit, static_argnums=(0, 4))
def _ours(model, params, inputs, decoder_inputs, steps):
    """Encoder outputs, teacher-forced logits, and greedy decoding with K=1 `extend` calls.

    One jitted function (one compilation). Greedy suppresses EOS, as HF's `min_new_tokens`
    does, and returns every step's raw logits.
    """
    batch = inputs.shape[0]
    encoded = model.encode(params, inputs)
    logits = model.forward(params, inputs, decoder_inputs)

    def body(i, carry):
        cache, token, out, all_logits = carry
        positions = jnp.full((batch,), i, jnp.int32)
        step_logits, cache = model.extend(params, encoded, cache, token[:, None], positions)
        all_logits = all_logits.at[:, i].set(step_logits[:, 0])
        masked = step_logits[:, 0].at[:, EOS].set(-jnp.inf)
        token = jnp.argmax(masked, axis=-1).astype(jnp.int32)
        return cache, token, out.at[:, i].set(token), all_logits

    carry = (
        model.init_cache(batch, steps),
        jnp.zeros((batch,), jnp.int32),
        jnp.zeros((batch, steps), jnp.int32),
        jnp.zeros((batch, steps, model.vocab_size), jnp.float32),
    )
    _, _, tokens, step_logits = jax.lax.fori_loop(0, steps, body, carry)
    return encoded.encoder_outputs, logits, tokens, step_logits


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """torch's spinning worker threads cost ~50x CPU time on tiny models on a shared 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_matches_hf_transformers(version):
    config, hf = _hf_model(version, seed=int(float(version) * 10))
    if not config.tie_word_embeddings:
        assert hf.lm_head.weight.data_ptr() != hf.shared.weight.data_ptr()
        assert not torch.equal(hf.lm_head.weight, hf.shared.weight)
    model = T5Model(config)
    params = params_from_hf_state_dict(config, _state_dict(hf))

    inputs = _inputs(config.vocab_size)
    rng = np.random.default_rng(1)
    decoder_inputs = rng.integers(2, config.vocab_size, size=(3, 9)).astype(np.int64)
    decoder_inputs[:, 0] = 0
    with torch.no_grad():
        t_inputs, t_mask = torch.from_numpy(inputs), torch.from_numpy(inputs > 0).long()
        hf_out = hf(
            input_ids=t_inputs,
            attention_mask=t_mask,
            decoder_input_ids=torch.from_numpy(decoder_inputs),
        )
        hf_logits = hf_out.logits.numpy()
        hf_encoded = hf_out.encoder_last_hidden_state.numpy()
        generated = hf.generate(
            input_ids=t_inputs,
            attention_mask=t_mask,
            do_sample=False,
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            output_logits=True,
            return_dict_in_generate=True,
        )
        hf_tokens = generated.sequences.numpy()
        hf_step_logits = torch.stack(generated.logits, dim=1).numpy()  # raw, [B, steps, V]

    encoded, logits, tokens, step_logits = _ours(
        model,
        params,
        jnp.asarray(inputs, jnp.int32),
        jnp.asarray(decoder_inputs, jnp.int32),
        NEW_TOKENS,
    )
    np.testing.assert_allclose(np.asarray(encoded), hf_encoded, atol=ATOL, rtol=0)
    np.testing.assert_allclose(np.asarray(logits), hf_logits, atol=ATOL, rtol=0)
    assert np.abs(hf_logits).max() > 1.0  # logits are not trivially small

    assert hf_tokens.shape == (3, NEW_TOKENS + 1) and (hf_tokens[:, 0] == 0).all()
    np.testing.assert_array_equal(np.asarray(tokens), hf_tokens[:, 1:])
    # Random tiny models often repeat a token, so also compare every cached step's logits.
    np.testing.assert_allclose(np.asarray(step_logits), hf_step_logits, atol=ATOL, rtol=0)

    if not config.tie_word_embeddings:  # generate did not re-tie the head behind our back
        assert not torch.equal(hf.lm_head.weight, hf.shared.weight)


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_params_to_hf_state_dict_loads_strictly(version):
    config, hf = _hf_model(version, seed=3)
    state = _state_dict(hf)
    ours = params_from_hf_state_dict(config, state)
    back = params_to_hf_state_dict(config, ours)
    assert set(back) == set(state)
    for key, value in state.items():
        np.testing.assert_array_equal(back[key], value, err_msg=key)
    _, fresh = _hf_model(version, seed=4)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)
    for key, value in _state_dict(fresh).items():
        np.testing.assert_array_equal(value, state[key], err_msg=key)
