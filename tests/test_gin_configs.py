"""Every gin file in the repository parses, and every model × task × run stack resolves."""

import glob
import os

import gin
import pytest

from spec_cascade_jax import (
    main,
    train,  # noqa: F401  (registers run_train for runs/train_*.gin)
)
from spec_cascade_jax.evaluation import runner, sweeps

GIN_DIR = main.GIN_CONFIGS_DIR
ALL_FILES = sorted(
    os.path.relpath(p, GIN_DIR)
    for p in glob.glob(os.path.join(GIN_DIR, "**", "*.gin"), recursive=True)
)
# Macros that some stacks leave %gin.REQUIRED; supplied here as a user would on the command line.
REQUIRED = [
    "VOCAB_PATH = '/tmp/vocab.model'",
    "OUTPUT_DIR = '/tmp/out'",
]
MODEL_STACKS = {
    "pair": ["models/pair_t5_1_1_small_large.gin"],
    "tiny": ["models/tiny.gin"],
    "demo": ["models/demo_drafter.gin", "models/demo_verifier.gin"],
}
TASK_FILES = sorted(f for f in ALL_FILES if f.startswith("tasks/"))
TASK_NAMES = {
    "tasks/wmt14_ende.gin": "wmt14_ende_v003",
    "tasks/wmt19_ende.gin": "wmt19_ende_v003",
    "tasks/cnn_dailymail.gin": "cnn_dailymail_v002",
    "tasks/xsum.gin": "xsum_v110",
    "tasks/demo_ende.gin": "wmt14_ende_v003",
    "tasks/local_jsonl.gin": "xsum_v110",  # Supplied below.
}
LOCAL_JSONL = ["TASK = 'xsum_v110'", "DATA_FILE = '/tmp/data.jsonl'"]


@pytest.fixture(autouse=True)
def _clear_gin():
    yield
    gin.clear_config()


def test_gin_dir_holds_the_four_layers():
    assert {f.split("/")[0] for f in ALL_FILES} == {"models", "tasks", "methods", "runs"}
    assert len(ALL_FILES) >= 30
    assert set(TASK_FILES) == set(TASK_NAMES)


@pytest.mark.parametrize("path", ALL_FILES)
def test_every_file_parses_and_opens_with_a_comment(path):
    with open(os.path.join(GIN_DIR, path), encoding="utf-8") as f:
        first = f.readline()
    assert first.startswith("# ") and len(first) > 20, f"{path} must open with a comment"
    extra = ["include 'tasks/wmt14_ende.gin'"] if path == "runs/smoke.gin" else []
    main.configure([path], REQUIRED + extra)


@pytest.mark.parametrize("models", sorted(MODEL_STACKS))
@pytest.mark.parametrize("task_file", TASK_FILES)
@pytest.mark.parametrize("run", ["runs/eval_sweep.gin", "runs/decode.gin"])
def test_model_task_run_stacks_resolve(models, task_file, run):
    extra = LOCAL_JSONL if task_file == "tasks/local_jsonl.gin" else []
    main.configure(MODEL_STACKS[models] + [task_file, run], REQUIRED + extra)
    job = "run_eval" if run == "runs/eval_sweep.gin" else "run_decode"
    # get_bindings evaluates every macro and @configurable() reference: none may be undefined.
    bindings = gin.get_bindings(job)
    assert bindings["task"] == TASK_NAMES[task_file]
    assert isinstance(bindings["drafter"], runner.ModelSpec)
    assert isinstance(bindings["verifier"], runner.ModelSpec)
    assert bindings["drafter"] != bindings["verifier"]
    assert isinstance(bindings["sampling"], sweeps.SamplingConfig)
    assert bindings["sampling"].gamma == 5 and bindings["sampling"].temperature == 1.0
    assert bindings["output_dir"] == "/tmp/out"
    if job == "run_eval":
        assert [m.method for m in bindings["methods"]] == [
            "seq_cascade",
            "token_cascade",
            "lossy",
            "bild_star",
            "spec_chow",
            "spec_diff",
            "spec_opt",
            "spec_token_v3",
        ]
        assert bindings["latency_examples"] == 500 and bindings["verifier_seeds"] == 3
    if models == "pair":
        assert bindings["drafter"].preset == "t5_1_1_small"
        assert bindings["verifier"].preset == "t5_1_1_large"
        assert bindings["extra_ids"] == 100


@pytest.mark.parametrize(
    "method", [m for m in sweeps.DEFAULT_ALPHA_GRIDS if m not in ("drafter", "verifier")]
)
def test_method_files_carry_the_spec_grids(method):
    main.configure([f"methods/{method}.gin"])
    with gin.config_scope(method):
        sweep = sweeps.method_sweep()
    assert sweep.method == method
    assert sweep.alphas == sweeps.DEFAULT_ALPHA_GRIDS[method]


def test_required_macro_left_unset_is_reported():
    main.configure(["models/tiny.gin", "tasks/wmt14_ende.gin", "runs/eval_sweep.gin"])
    with pytest.raises(ValueError, match=r"run_eval.output_dir \(macro OUTPUT_DIR\)"):
        main.execute()


def test_demo_is_the_default_and_resolves_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main.DEFAULT_GIN_FILE == "runs/demo.gin"
    main.configure([main.DEFAULT_GIN_FILE])
    bindings = gin.get_bindings("run_eval")
    assert bindings["vocab_path"] == "pkg://demo_data/ende/spm.model"
    assert runner.resolve_path(bindings["vocab_path"]) == os.path.join(
        runner.PACKAGE_DIR, "demo_data", "ende", "spm.model"
    )
    assert bindings["data_file"] == "pkg://demo_data/ende/validation.jsonl"
    # The trained pair is bundled: a missing export must fail, not fall back to random weights.
    assert not bindings["drafter"].missing_ok and not bindings["verifier"].missing_ok
    for role in ("drafter", "verifier"):
        path = runner.resolve_path(bindings[role].checkpoint_path)
        assert os.path.exists(os.path.join(path, "config.json")), path
    assert bindings["output_dir"] == "outputs/demo"


def test_gin_flag_rewrite():
    argv = ["prog", "--gin.TASK='xsum_v110'", "--gin_file=x.gin", "--gin.a/b.c=[1, 2]"]
    assert main.rewrite_gin_args(argv) == [
        "prog",
        "--gin_bindings=TASK = 'xsum_v110'",
        "--gin_file=x.gin",
        "--gin_bindings=a/b.c = [1, 2]",
    ]
    with pytest.raises(main.GinConfigError, match="--gin.TASK"):
        main.rewrite_gin_args(["prog", "--gin.TASK"])
