"""Multi-process settings and the single-process behaviour of the gather helpers.

The real two-process run is `test_parallel_multidevice.py::test_two_processes_decode_like_one`.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver

from spec_cascade_jax.parallel import distributed

FULL_ENV = {
    "JAX_COORDINATOR_ADDRESS": "10.0.0.2:8476",
    "JAX_NUM_PROCESSES": "4",
    "JAX_PROCESS_ID": "3",
}


def test_nothing_configured_means_single_process():
    settings = distributed.resolve_settings(env={})
    assert settings == {
        "coordinator_address": None,
        "num_processes": None,
        "process_id": None,
        "multihost": False,
    }
    assert distributed.maybe_initialize(env={}) is False
    assert not jax.distributed.is_initialized()


def _triple(s: dict) -> tuple:
    return s["coordinator_address"], s["num_processes"], s["process_id"]


def test_settings_from_env_and_arguments_override_env():
    assert _triple(distributed.resolve_settings(env=FULL_ENV)) == ("10.0.0.2:8476", 4, 3)
    s = distributed.resolve_settings("127.0.0.1:1234", 2, 0, env=FULL_ENV)
    assert _triple(s) == ("127.0.0.1:1234", 2, 0)
    s = distributed.resolve_settings(env={"SPEC_CASCADE_MULTIHOST": "1"})
    assert s["multihost"] and s["coordinator_address"] is None  # JAX detects the rest


def test_settings_from_parsed_flags():
    was_parsed = flags.FLAGS.is_parsed()
    if not was_parsed:
        flags.FLAGS(["prog"])
    try:
        with flagsaver.flagsaver(coordinator_address="h:1", num_processes=2, process_id=1):
            s = distributed.resolve_settings(env=FULL_ENV)
    finally:
        if not was_parsed:
            flags.FLAGS.unparse_flags()
    assert _triple(s) == ("h:1", 2, 1)


@pytest.mark.parametrize(
    "kwargs, env, match",
    [
        ({}, {"JAX_COORDINATOR_ADDRESS": "h:1"}, "missing num_processes, process_id"),
        ({"num_processes": 2}, {}, "missing coordinator_address, process_id"),
        ({"coordinator_address": "nohost", "num_processes": 2, "process_id": 0}, {}, "host:port"),
        ({"coordinator_address": "h:1", "num_processes": 2, "process_id": 2}, {}, r"\[0, 2\)"),
        ({"coordinator_address": "h:1", "num_processes": 0, "process_id": 0}, {}, ">= 1, got 0"),
        ({}, {**FULL_ENV, "JAX_PROCESS_ID": "x"}, "JAX_PROCESS_ID must be an integer"),
    ],
)
def test_bad_settings_are_named(kwargs, env, match):
    with pytest.raises(ValueError, match=match):
        distributed.resolve_settings(**kwargs, env=env)


def test_single_process_helpers():
    assert distributed.is_writer()
    np.testing.assert_array_equal(distributed.allgather_ints([3, 4]), [[3, 4]])
    tree = {"a": np.arange(6).reshape(3, 2), "b": [np.ones(3)]}
    out = distributed.gather_to_host0(tree)
    np.testing.assert_array_equal(out["a"], tree["a"])
    np.testing.assert_array_equal(out["b"][0], tree["b"][0])
    assert distributed.gather_objects_to_host0([{"x": 1}, "y"]) == [{"x": 1}, "y"]
    with pytest.raises(ValueError, match="one common leading dimension"):
        distributed.gather_to_host0({"a": np.zeros((3, 2)), "b": np.zeros((2,))})
    distributed.sync("noop")  # one process: returns at once


def test_shard_info_is_this_process():
    info = distributed.shard_info()
    assert (info.index, info.num_shards) == (0, 1)
