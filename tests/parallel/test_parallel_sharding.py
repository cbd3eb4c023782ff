"""Logical-axis rules, meshes and `sharded_generate` in-process (one CPU device, abstract meshes).

The 8-device and two-process checks are in `test_parallel_multidevice.py`.
"""

from __future__ import annotations

import gin
import jax
import numpy as np
import pytest
from jax.sharding import AbstractMesh, AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from spec_cascade_jax import parallel, testing
from spec_cascade_jax.decoding import generate
from spec_cascade_jax.models.t5 import config as t5_config
from spec_cascade_jax.models.t5.network import T5Model
from spec_cascade_jax.parallel import sharding

RULES = parallel.DEFAULT_RULES


def abstract_mesh(data: int, model: int) -> AbstractMesh:
    return AbstractMesh((data, model), parallel.MESH_AXES, axis_types=(AxisType.Auto,) * 2)


@pytest.mark.parametrize(
    "names, expected",
    [
        (("batch", "length", "heads", "kv"), P("data", None, "model", None)),
        (("batch", "heads", "length", "kv"), P("data", "model", None, None)),
        (("embed", "mlp"), P(None, "model")),
        (("joined_kv", "embed"), P("model", None)),
        (("vocab", "embed"), P("model", None)),
        (("heads", "joined_kv"), P("model", None)),  # a mesh axis is used once per array
        (("batch", None), P("data", None)),
    ],
)
def test_logical_to_mesh_axes(names, expected):
    assert sharding.logical_to_mesh_axes(names, RULES) == expected


def test_data_parallel_rules_keep_only_batch():
    rules = parallel.data_parallel_rules()
    assert sharding.logical_to_mesh_axes(("batch", "heads", "mlp", "vocab"), rules) == P(
        "data", None, None, None
    )


def test_unknown_logical_axis_and_bad_rule_are_named():
    with pytest.raises(ValueError, match="'hedas' has no sharding rule"):
        sharding.logical_to_mesh_axes(("batch", "hedas"), RULES)
    with pytest.raises(ValueError, match="logical axis rule"):
        sharding.logical_to_mesh_axes(("batch",), (("batch", "data", "x"),))


def test_named_sharding_replicates_dims_the_axis_does_not_divide():
    mesh = abstract_mesh(2, 4)
    s = parallel.named_sharding(mesh, (6, 6, 8), ("batch", "heads", "kv"), RULES)
    assert s.spec == P("data", None, None)  # 6 heads do not split 4 ways
    s = parallel.named_sharding(mesh, (6, 8, 8), ("batch", "heads", "kv"), RULES)
    assert s.spec == P("data", "model", None)
    with pytest.raises(ValueError, match="2 logical names"):
        parallel.named_sharding(mesh, (6, 8, 8), ("batch", "heads"), RULES)


@pytest.mark.parametrize("model, relpos", [(2, P("model", None)), (4, P(None, None))])
def test_t5_1_1_small_param_shardings(model, relpos):
    shapes = T5Model(t5_config.t5_1_1_small()).param_shapes()
    shardings = parallel.param_shardings(shapes, abstract_mesh(8 // model, model))
    layer = shardings["encoder"]["layers_0"]
    assert layer["attention"]["query"]["kernel"].spec == P(None, "model")
    assert layer["attention"]["out"]["kernel"].spec == P("model", None)
    assert layer["mlp"]["wi_1"]["kernel"].spec == P(None, "model")
    assert layer["mlp"]["wo"]["kernel"].spec == P("model", None)
    assert layer["pre_mlp_layer_norm"]["scale"].spec == P(None)
    assert shardings["token_embedder"]["embedding"].spec == P("model", None)
    assert shardings["decoder"]["logits_dense"]["kernel"].spec == P(None, "model")
    assert shardings["decoder"]["relpos_bias"]["rel_embedding"].spec == relpos  # 6 heads
    # Shard shapes: every split dimension is divided by the model size.
    q = layer["attention"]["query"]["kernel"]
    assert q.shard_shape((512, 384)) == (512, 384 // model)


@pytest.mark.parametrize(
    "shape, expected",
    [
        ((1, 4, 33, 8), ("batch", "heads", "length", "kv")),  # heads-major cache [B, H, M, D]
        ((1, 33, 4, 8), ("batch", "length", "heads", "kv")),  # [B, M, H, D]
        ((1, 33, 32), ("batch", "length", "embed")),
        ((1, 33), ("batch", "length")),
    ],
)
def test_activation_axes_follow_the_model_layout(shape, expected):
    leaf = jax.ShapeDtypeStruct(shape, np.float32)
    assert sharding._activation_axes({"x": leaf}, probe=33) == {"x": expected}


def test_make_mesh_on_one_device_and_errors():
    mesh = parallel.make_mesh()
    assert dict(mesh.shape) == {"data": 1, "model": 1}
    assert tuple(mesh.axis_types) == (AxisType.Auto, AxisType.Auto)
    assert parallel.process_data_indices(mesh) == [0]
    n = jax.device_count()
    with pytest.raises(ValueError, match=f"needs {2 * n} devices, got {n}"):
        parallel.make_mesh(2 * n, 1)
    with pytest.raises(ValueError, match="model must be >= 1, got 0"):
        parallel.make_mesh(model=0)
    with pytest.raises(ValueError, match="data must be >= 1 or -1"):
        parallel.make_mesh(data=-2)
    with pytest.raises(ValueError, match=f"model={n + 1} does not divide"):
        parallel.make_mesh(model=n + 1)


def test_build_mesh_reads_gin():
    gin.clear_config()
    try:
        gin.parse_config(["build_mesh.data_parallelism = 1", "build_mesh.model_parallelism = 1"])
        mesh = parallel.build_mesh()
    finally:
        gin.clear_config()
    assert tuple(mesh.axis_names) == ("data", "model") and mesh.devices.size == 1


TOY = testing.TableLM(vocab_size=6, real_vocab_size=6)
TOY_DRAFTER = testing.TableLM(vocab_size=6, real_vocab_size=6, num_positions=3)
INPUTS = np.array([[1, 0], [2, 1], [3, 1], [0, 1], [2, 1]], np.int32)


def _toy_params():
    return (
        TOY_DRAFTER.init_params(jax.random.PRNGKey(1), scale=1.0),
        TOY.init_params(jax.random.PRNGKey(2)),
    )


def test_sharded_generate_on_one_device_equals_generate():
    d_params, v_params = _toy_params()
    # The drafter-only loop compiles fastest; the speculative methods run on 8 devices in
    # test_parallel_multidevice.py.
    kw = dict(method="drafter", max_decode_len=6, temperature=1.0)
    kw["rng"] = jax.random.PRNGKey(0)
    ids = np.array([7, 3, 9, 11, 5])
    mesh = parallel.make_mesh(1, 1)
    ref = generate(TOY_DRAFTER, d_params, TOY, v_params, INPUTS, example_ids=ids, **kw)
    out = parallel.sharded_generate(
        mesh, TOY_DRAFTER, d_params, TOY, v_params, INPUTS, example_ids=ids, **kw
    )
    for got, want in zip(jax.tree.leaves(out), jax.tree.leaves(ref), strict=True):
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, np.asarray(want))
    # Default ids are the row numbers, as in generate.
    ref = generate(TOY_DRAFTER, d_params, TOY, v_params, INPUTS, **kw)
    out = parallel.sharded_generate(mesh, TOY_DRAFTER, d_params, TOY, v_params, INPUTS, **kw)
    np.testing.assert_array_equal(out.tokens, ref.tokens)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(method="nope"), "unknown method 'nope'"),  # generate's own validation
        (dict(gamma=0), "gamma must be an integer >= 1"),
        (dict(temperature=-1.0), "temperature must be >= 0"),
        (dict(inputs=np.array([1, 2, 1])), r"inputs must be \[batch, length\]"),
        (dict(inputs=np.ones((2, 3), np.float32)), "inputs must be an integer array"),
        (dict(example_ids=[1, 2]), r"example_ids must have shape \(5,\)"),
        (dict(rng=None), "needs rng"),
    ],
)
def test_sharded_generate_validates_like_generate(change, match):
    d_params, v_params = _toy_params()
    kw = dict(method="spec_decode", gamma=2, max_decode_len=4, rng=jax.random.PRNGKey(0))
    kw["inputs"] = INPUTS
    kw.update(change)
    if kw["rng"] is None:
        del kw["rng"]
    inputs = kw.pop("inputs")
    with pytest.raises(ValueError, match=match):
        parallel.sharded_generate(
            parallel.make_mesh(), TOY_DRAFTER, d_params, TOY, v_params, inputs, **kw
        )


def test_sharded_model_is_a_stable_static_argument():
    mesh = parallel.make_mesh()
    a = parallel.ShardedDecodeModel(TOY, mesh)
    b = parallel.ShardedDecodeModel(TOY, mesh)
    assert a == b and hash(a) == hash(b)
    assert a.vocab_size == 6 and a.real_vocab_size == 6
    replicated = parallel.replicate({"w": np.ones((2, 3), np.float32)}, mesh)
    assert replicated["w"].sharding.is_equivalent_to(NamedSharding(mesh, P()), 2)
