"""T5 (v1.0 and T5.1.1) encoder-decoder in Flax with t5x parameter names and a KV-cached decoder."""

from spec_cascade_jax.models.t5.config import (
    T5Config,
    get_config,
    preset_names,
    t5_1_1_base,
    t5_1_1_large,
    t5_1_1_small,
    t5_1_1_xl,
    t5_v1_0_small,
    tiny,
)
from spec_cascade_jax.models.t5.hf_convert import params_from_hf_state_dict, params_to_hf_state_dict
from spec_cascade_jax.models.t5.network import (
    T5Cache,
    T5Encoded,
    T5Model,
    T5Network,
    logical_axes,
    shift_right,
)

__all__ = [
    "T5Cache",
    "T5Config",
    "T5Encoded",
    "T5Model",
    "T5Network",
    "get_config",
    "logical_axes",
    "params_from_hf_state_dict",
    "params_to_hf_state_dict",
    "preset_names",
    "shift_right",
    "t5_1_1_base",
    "t5_1_1_large",
    "t5_1_1_small",
    "t5_1_1_xl",
    "t5_v1_0_small",
    "tiny",
]
