"""Logical-axis sharding rules, sharded parameters, and `sharded_generate` over a device mesh.

Rules. As in t5x, every parameter and activation axis has a *logical* name (`models.t5.network.
logical_axes` names the parameters) and a small table maps logical names to mesh axes:

    batch -> data          vocab, mlp, heads, joined_kv -> model
    embed, kv, length, relpos_buckets -> replicated

A logical name maps to the first rule whose mesh axis is not already used by an earlier dimension
of the same array (t5x semantics); a dimension whose size the mesh axis does not divide is
replicated instead. `DEFAULT_RULES` is Megatron-style tensor parallelism for T5: the query/key/
value kernels `[E, H*D]` are split by output column (whole heads when `model` divides H), the
attention-out and MLP-out kernels by input row (one all-reduce per block), the vocabulary
projection by vocab id.

Decoding. `sharded_generate` runs the ordinary `decoding.generate` program under `jit` with
`NamedSharding`s (GSPMD): the batch is split over `data`, the verifier's (optionally also the
drafter's) parameters over `model`, and `ShardedDecodeModel` pins the encoder outputs,
cross-attention keys/values and self-attention caches to `(batch -> data, heads -> model)` inside
the loop. Logits are gathered over the vocabulary before the warps, so sampling sees full rows.
Every row draws from `fold_in(rng, example_id)`, so its tokens do not depend on the mesh or on the
other rows. The model-split matmuls sum partial products in another order than one device does,
so floating-point values (and the η statistic) may differ in the last bits; a token changes only
if a sample lands within that rounding distance of a decision boundary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from spec_cascade_jax.decoding import generate
from spec_cascade_jax.decoding import state as st
from spec_cascade_jax.models.t5.network import T5Cache, T5Encoded, T5Model, logical_axes
from spec_cascade_jax.parallel import distributed
from spec_cascade_jax.parallel.mesh import DATA_AXIS, MODEL_AXIS, process_data_indices

Params = Any
LogicalAxisRules = tuple[tuple[str, str | None], ...]

DEFAULT_RULES: LogicalAxisRules = (
    ("batch", DATA_AXIS),
    ("vocab", MODEL_AXIS),
    ("mlp", MODEL_AXIS),
    ("heads", MODEL_AXIS),
    ("joined_kv", MODEL_AXIS),
    ("embed", None),
    ("kv", None),
    ("length", None),
    ("relpos_buckets", None),
)

_LOGITS_AXES = ("batch", "length", None)  # vocabulary gathered: sampling reads whole rows


def data_parallel_rules(rules: LogicalAxisRules = DEFAULT_RULES) -> LogicalAxisRules:
    """`rules` with every axis but `batch` replicated (pure data parallelism)."""
    return tuple((name, axis if name == "batch" else None) for name, axis in rules)


def _check_rules(rules: LogicalAxisRules) -> None:
    for rule in rules:
        if not (
            isinstance(rule, tuple)
            and len(rule) == 2
            and isinstance(rule[0], str)
            and (rule[1] is None or isinstance(rule[1], str))
        ):
            raise ValueError(f"a logical axis rule must be (name, mesh axis or None), got {rule!r}")


def logical_to_mesh_axes(names: Sequence[str | None], rules: LogicalAxisRules) -> P:
    """The `PartitionSpec` of an array whose dimensions have logical `names`.

    `None` names stay replicated. A mesh axis is used at most once per array: a later dimension
    whose rules only name already-used axes is replicated.

    Raises:
      ValueError: a name has no rule (naming it and the known names).
    """
    _check_rules(rules)
    known = {name for name, _ in rules}
    used: set[str] = set()
    spec: list[str | None] = []
    for name in names:
        if name is None:
            spec.append(None)
            continue
        if name not in known:
            raise ValueError(
                f"logical axis {name!r} has no sharding rule; known: {', '.join(sorted(known))}"
            )
        axis = next((a for n, a in rules if n == name and a not in used), None)
        if axis is not None:
            used.add(axis)
        spec.append(axis)
    return P(*spec)


def _fit_spec(spec: P, shape: Sequence[int], mesh: Mesh) -> P:
    """`spec` with the axes that do not divide their dimension replaced by None."""
    fitted = []
    for size, axis in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec)), strict=True):
        if axis is not None and size % mesh.shape[axis]:
            axis = None
        fitted.append(axis)
    return P(*fitted)


def named_sharding(
    mesh: Mesh, shape: Sequence[int], names: Sequence[str | None], rules: LogicalAxisRules
) -> NamedSharding:
    """The `NamedSharding` of an array of `shape` with logical axis `names` under `rules`."""
    if len(names) != len(shape):
        raise ValueError(f"{len(names)} logical names {tuple(names)} for shape {tuple(shape)}")
    return NamedSharding(mesh, _fit_spec(logical_to_mesh_axes(names, rules), shape, mesh))


def param_shardings(params: Params, mesh: Mesh, rules: LogicalAxisRules = DEFAULT_RULES) -> Params:
    """`NamedSharding`s for a T5 parameter tree (arrays or `ShapeDtypeStruct`s), by logical axes.

    Dimensions the mesh axis does not divide are replicated (logged once per call).
    """
    axes = logical_axes(params)
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    flat_axes = treedef.flatten_up_to(axes)
    out, replicated = [], []
    for (path, leaf), names in zip(flat, flat_axes, strict=True):
        shape = tuple(np.shape(leaf))
        wanted = logical_to_mesh_axes(names, rules)
        sharding = named_sharding(mesh, shape, names, rules)
        if tuple(sharding.spec) != tuple(wanted) + (None,) * (len(shape) - len(wanted)):
            replicated.append(jax.tree_util.keystr(path))
        out.append(sharding)
    if replicated:
        logging.info(
            "param_shardings: %d parameters keep a dimension replicated because the mesh axis "
            "does not divide it, e.g. %s",
            len(replicated),
            replicated[0],
        )
    return jax.tree_util.tree_unflatten(treedef, out)


def _put(tree: Any, shardings: Any) -> Any:
    """`device_put` that, with several processes, goes through host memory for unsharded leaves."""

    def put(x, sharding):
        if isinstance(x, jax.Array) and x.sharding.is_equivalent_to(sharding, x.ndim):
            return x
        if jax.process_count() > 1 and isinstance(x, jax.Array):
            x = np.asarray(x)  # every process holds the same full value
        return jax.device_put(x, sharding)

    return jax.tree.map(put, tree, shardings)


def shard_params(params: Params, mesh: Mesh, rules: LogicalAxisRules = DEFAULT_RULES) -> Params:
    """Places a T5 parameter tree on `mesh` by `param_shardings` (no-op for leaves already there).

    With several processes every process must pass the same full values.
    """
    return _put(params, param_shardings(params, mesh, rules))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places every leaf of `tree` fully replicated on `mesh`."""
    return _put(tree, jax.tree.map(lambda _: NamedSharding(mesh, P()), tree))


def per_device_bytes(tree: Any) -> dict[int, int]:
    """Bytes of `tree` held by each addressable device, keyed by device id.

    Arrays count their `addressable_shards`; `ShapeDtypeStruct`s with a sharding count the shard
    shape their sharding gives each addressable device.
    """
    totals: dict[int, int] = {}
    for leaf in jax.tree.leaves(tree):
        if isinstance(leaf, jax.Array):
            for shard in leaf.addressable_shards:
                totals[shard.device.id] = totals.get(shard.device.id, 0) + shard.data.nbytes
        elif isinstance(leaf, jax.ShapeDtypeStruct) and leaf.sharding is not None:
            itemsize = np.dtype(leaf.dtype).itemsize
            nbytes = int(np.prod(leaf.sharding.shard_shape(leaf.shape))) * itemsize
            for device in leaf.sharding.addressable_devices:
                totals[device.id] = totals.get(device.id, 0) + nbytes
        else:
            raise TypeError(
                f"per_device_bytes needs jax.Arrays or sharded ShapeDtypeStructs, got {leaf!r}"
            )
    return totals


def abstract_sharded_params(
    model: T5Model, mesh: Mesh, rules: LogicalAxisRules = DEFAULT_RULES
) -> Params:
    """`model`'s parameters as `ShapeDtypeStruct`s carrying their shardings (nothing allocated)."""
    shapes = model.param_shapes()
    return jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
        shapes,
        param_shardings(shapes, mesh, rules),
    )


@dataclasses.dataclass(frozen=True)
class ShardedDecodeModel:
    """A `DecodeModel` that pins its encoder outputs, caches and logits to `mesh` by `rules`.

    Hashable (a static `jit` argument like the model it wraps). T5 activations get their logical
    axes (`heads -> model` splits the caches); any other model's arrays are split on their leading
    (batch) axis only.
    """

    model: Any
    mesh: Mesh
    rules: LogicalAxisRules = DEFAULT_RULES

    @property
    def vocab_size(self) -> int:
        return self.model.vocab_size

    @property
    def real_vocab_size(self) -> int:
        return self.model.real_vocab_size

    def _pin(self, x: jax.Array, names: Sequence[str | None]) -> jax.Array:
        sharding = named_sharding(self.mesh, x.shape, names, self.rules)
        return jax.lax.with_sharding_constraint(x, sharding)

    def _pin_batch(self, tree: Any) -> Any:
        return jax.tree.map(lambda x: self._pin(x, ("batch",) + (None,) * (x.ndim - 1)), tree)

    def _probe_length(self) -> int:
        """A length no other dimension of the T5 activations has (see `_activation_axes`)."""
        cfg = self.model.config
        return max(cfg.num_heads, cfg.d_kv, cfg.d_model) + 1

    def _pin_tree(self, tree: Any, axes: Any) -> Any:
        return jax.tree.map(self._pin, tree, axes)  # `axes` leaves are name tuples

    def _pin_encoded(self, params: Params, encoded: Any) -> Any:
        if not isinstance(encoded, T5Encoded):
            return self._pin_batch(encoded)
        probe = self._probe_length()
        abstract_params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
        shapes = jax.eval_shape(
            self.model.encode, abstract_params, jax.ShapeDtypeStruct((1, probe), jnp.int32)
        )
        return self._pin_tree(encoded, _activation_axes(shapes, probe))

    def _pin_cache(self, cache: Any) -> Any:
        if not isinstance(cache, T5Cache):
            return self._pin_batch(cache)
        probe = self._probe_length()
        shapes = jax.eval_shape(lambda: self.model.init_cache(1, probe))
        return self._pin_tree(cache, _activation_axes(shapes, probe))

    def encode(self, params: Params, inputs: jax.Array) -> Any:
        encoded = self.model.encode(params, self._pin(inputs, ("batch", None)))
        return self._pin_encoded(params, encoded)

    def init_cache(self, batch_size: int, max_len: int) -> Any:
        return self._pin_cache(self.model.init_cache(batch_size, max_len))

    def extend(self, params, encoded, cache, tokens, positions):
        logits, cache = self.model.extend(params, encoded, cache, tokens, positions)
        return self._pin(logits, _LOGITS_AXES), self._pin_cache(cache)


def _activation_axes(shapes: Any, probe: int) -> Any:
    """Logical axis names of T5 activations, from their shapes at batch 1 and length `probe`.

    Dimension 0 is `batch`, a dimension of size `probe` is `length`; of the others, a single one
    is `embed` (`[B, S, E]`) and a pair is `(heads, kv)` (`[B, H, S, D]` or `[B, S, H, D]`,
    whichever layout the model uses).
    """

    def names(leaf: jax.ShapeDtypeStruct) -> tuple[str, ...]:
        rest = [i for i in range(1, len(leaf.shape)) if leaf.shape[i] != probe]
        other = {0: (), 1: ("embed",), 2: ("heads", "kv")}.get(len(rest))
        if other is None:
            raise ValueError(f"cannot name the axes of a T5 activation of shape {leaf.shape}")
        out = ["batch"] + ["length"] * (len(leaf.shape) - 1)
        for i, name in zip(rest, other, strict=True):
            out[i] = name
        return tuple(out)

    return jax.tree.map(names, shapes)


def _shard_model_params(model, params, mesh: Mesh, rules: LogicalAxisRules) -> Params:
    if model is None or params is None:
        return params
    if isinstance(model, T5Model):
        return shard_params(params, mesh, rules)
    return replicate(params, mesh)


def sharded_generate(
    mesh: Mesh,
    drafter,
    drafter_params,
    verifier,
    verifier_params,
    inputs,
    *,
    example_ids=None,
    rules: LogicalAxisRules = DEFAULT_RULES,
    shard_drafter: bool = False,
    **generate_kwargs: Any,
) -> st.DecodeOutput:
    """`decoding.generate` with the batch split over `data` and the verifier split over `model`.

    Validation is `generate`'s own (it is called with the sharded arrays). With one process this
    returns what `generate` returns for the same `rng`/`example_ids`, as host numpy arrays.

    Several processes (after `distributed.maybe_initialize`): every process calls this with the
    same arguments except `inputs` and `example_ids`, which are *its own* rows (e.g. its
    `distributed.shard_info()` shard of the data); it gets its own rows back. Pass `example_ids`
    (e.g. the data layer's `index`): the default numbers rows process by process (process 0's
    rows first), which differs from an unsharded run's numbering when the data was split
    round-robin. `max_input_len` truncation needs host-addressable inputs: with several
    processes, truncate on the host first (the data layer already does).

    Args:
      mesh: a `("data", "model")` mesh (`make_mesh` / `build_mesh`).
      drafter, drafter_params, verifier, verifier_params: as for `generate`; parameters may be
        host or device arrays, or already sharded (`shard_params`), which skips the copy.
      inputs: int [B, S] this process's rows, 0-padded. Rows are padded to a multiple of this
        process's data-axis size (with empty inputs) and the padding is stripped again.
      example_ids: int [B] per-row seed ids (default: global row numbers).
      rules: logical axis rules for the verifier (and the drafter if `shard_drafter`).
      shard_drafter: split the drafter over `model` too (default: replicate it; a small drafter
        gains little and would add collectives to every draft step).
      **generate_kwargs: everything else `generate` takes (`method`, `rng`, `alpha`, ...).

    Returns:
      A `DecodeOutput` of numpy arrays holding this process's B rows.
    """
    if "rng" not in generate_kwargs:
        raise ValueError("sharded_generate needs rng=... (as generate does)")
    local = np.asarray(inputs)
    if local.ndim != 2:
        raise ValueError(f"inputs must be [batch, length], got shape {local.shape}")
    if not np.issubdtype(local.dtype, np.integer):
        raise ValueError(f"inputs must be an integer array, got dtype {local.dtype}")
    local = local.astype(np.int32)
    batch = local.shape[0]
    if example_ids is not None:
        example_ids = np.asarray(example_ids)
        if example_ids.shape != (batch,):
            raise ValueError(f"example_ids must have shape ({batch},), got {example_ids.shape}")

    data_slots = len(process_data_indices(mesh))
    if data_slots == 0:
        raise ValueError(f"this process ({jax.process_index()}) owns no device of the mesh")
    sizes = distributed.allgather_ints([batch, local.shape[1]])  # [processes, 2]
    rows_per_process = max(1, -(-int(sizes[:, 0].max()) // data_slots)) * data_slots
    width = int(sizes[:, 1].max())
    if example_ids is None:
        offset = int(sizes[: jax.process_index(), 0].sum())
        example_ids = np.arange(offset, offset + batch)
    padded = np.zeros((rows_per_process, width), np.int32)
    padded[:batch, : local.shape[1]] = local
    padded[batch:, 0] = st.EOS_ID  # padding rows: an empty input (just EOS)
    ids = np.zeros((rows_per_process,), np.int32)
    ids[:batch] = example_ids

    rows = P(DATA_AXIS)
    global_inputs = multihost_utils.host_local_array_to_global_array(padded, mesh, rows)
    global_ids = multihost_utils.host_local_array_to_global_array(ids, mesh, rows)
    drafter_rules = rules if shard_drafter else data_parallel_rules(rules)
    wrapped_drafter = None if drafter is None else ShardedDecodeModel(drafter, mesh, drafter_rules)
    wrapped_verifier = None if verifier is None else ShardedDecodeModel(verifier, mesh, rules)
    out = generate(
        wrapped_drafter,
        _shard_model_params(drafter, drafter_params, mesh, drafter_rules),
        wrapped_verifier,
        _shard_model_params(verifier, verifier_params, mesh, rules),
        global_inputs,
        example_ids=global_ids,
        **generate_kwargs,
    )
    out = jax.device_put(out, jax.tree.map(lambda _: NamedSharding(mesh, rows), out))
    host = multihost_utils.global_array_to_host_local_array(out, mesh, rows)
    return jax.tree.map(lambda x: np.asarray(x)[:batch], host)
