r"""Command-line entry point: parse gin, then run the configured job.

    python -m spec_cascade_jax.main \
      --gin_file=models/pair_t5_1_1_small_large.gin \
      --gin_file=tasks/wmt14_ende.gin \
      --gin_file=runs/eval_sweep.gin \
      --gin.OUTPUT_DIR="'/tmp/wmt'" --gin.VOCAB_PATH="'/data/t5/sentencepiece.model'"

`--gin.NAME=VALUE` is shorthand for `--gin_bindings='NAME = VALUE'` (values are gin literals, so
strings need inner quotes). Gin files are looked up as given, then under `--gin_search_paths`
(default: the current directory and the repository's `gin_configs/`), which is also where their
`include` lines are resolved. With no `--gin_file` the bundled demo (`runs/demo.gin`) runs.

The job is whatever `execute.job` names in the run file: `@run_eval` (the evaluation sweep,
`evaluation/runner.py`) or `@run_decode` (`decode_job.py`). This file is deliberately thin:
everything worth testing is importable without going through argv.

Multi-process runs: `--coordinator_address=host:port --num_processes=N --process_id=I` (or
`--multihost` on a Cloud TPU slice) start `jax.distributed` before anything else; add
`--gin.run_eval.mesh=@build_mesh()` (or `run_decode.mesh`) to decode over the global device mesh.
Without these flags the run is a plain single process.
"""

from __future__ import annotations

import logging as std_logging
import os
import sys
from collections.abc import Sequence

import gin
from absl import app, flags, logging

# Imported for their gin configurables, so every binding resolves.
from spec_cascade_jax import decode_job, parallel  # noqa: F401
from spec_cascade_jax.evaluation import runner, sweeps  # noqa: F401

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN_CONFIGS_DIR = os.environ.get("SPEC_CASCADE_GIN_DIR", os.path.join(REPO_DIR, "gin_configs"))
DEFAULT_GIN_FILE = "runs/demo.gin"

_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "Gin files to parse, in order.")
_GIN_BINDINGS = flags.DEFINE_multi_string(
    "gin_bindings", [], "Gin bindings applied after the files, e.g. \"TASK = 'xsum_v110'\"."
)
_GIN_SEARCH_PATHS = flags.DEFINE_list(
    "gin_search_paths",
    [".", GIN_CONFIGS_DIR],
    "Directories searched for --gin_file and for gin `include` lines.",
)


class GinConfigError(ValueError):
    """A gin file or binding could not be found or parsed; the message names it."""


@gin.configurable
def execute(job=gin.REQUIRED):
    """Runs the job a run file names (`execute.job = @run_eval`); returns its result."""
    if job is gin.REQUIRED or job is None:
        raise GinConfigError("no job configured: a run file must set `execute.job`")
    return job()


def rewrite_gin_args(argv: Sequence[str]) -> list[str]:
    """Turns `--gin.NAME=VALUE` into `--gin_bindings=NAME = VALUE`; other args pass through."""
    out = []
    for arg in argv:
        if arg.startswith("--gin."):
            name, sep, value = arg[len("--gin.") :].partition("=")
            if not sep or not name:
                raise GinConfigError(f"malformed gin flag {arg!r}: use --gin.NAME=VALUE")
            out.append(f"--gin_bindings={name} = {value}")
        else:
            out.append(arg)
    return out


def find_gin_file(path: str, search_paths: Sequence[str]) -> str:
    """`path` itself if it exists, else the first `search_path/path` that does."""
    if os.path.isfile(path):
        return path
    tried = [os.path.abspath(path)]
    for directory in search_paths:
        candidate = os.path.join(directory, path)
        if os.path.isfile(candidate):
            return candidate
        tried.append(os.path.abspath(candidate))
    raise GinConfigError(f"gin file {path!r} not found; tried: {', '.join(tried)}")


def configure(
    gin_files: Sequence[str],
    gin_bindings: Sequence[str] = (),
    search_paths: Sequence[str] = (".", GIN_CONFIGS_DIR),
) -> list[str]:
    """Parses gin files then bindings (clearing earlier config); returns the resolved files.

    Raises:
      GinConfigError: a file is missing or malformed, or a binding names an unknown configurable
        or parameter; the message names the file or binding.
    """
    gin.clear_config()
    logging_filter = _QuietGinSearch()
    std_logging.getLogger().addFilter(logging_filter)
    try:
        return _configure(gin_files, gin_bindings, search_paths)
    finally:
        std_logging.getLogger().removeFilter(logging_filter)


class _QuietGinSearch(std_logging.Filter):
    """Drops gin's "Path not found" errors, logged for every search path an include misses."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Path not found")


def _search_first(search_paths: Sequence[str]) -> None:
    """Puts the (absolute) search paths before gin's default '' prefix, in the given order.

    gin tries each prefix in turn, and for the bare '' prefix it also asks its package-resource
    reader, which crashes (TypeError) when the include's first directory, e.g. `models/`, happens
    to be an importable namespace package (as `tests/models` is under pytest). Absolute prefixes
    tried first find our includes before that reader is ever consulted. gin has no public call to
    prepend a search path, hence the private list.
    """
    prefixes = gin.config._LOCATION_PREFIXES
    for directory in reversed([os.path.abspath(p) for p in search_paths if os.path.isdir(p)]):
        if directory in prefixes:
            prefixes.remove(directory)
        prefixes.insert(0, directory)


def _configure(
    gin_files: Sequence[str], gin_bindings: Sequence[str], search_paths: Sequence[str]
) -> list[str]:
    _search_first(search_paths)
    files = [find_gin_file(f, search_paths) for f in gin_files]
    for path in files:
        try:
            gin.parse_config_file(path)
        except Exception as e:  # gin raises ValueError, SyntaxError, TokenError, IOError, ...
            raise GinConfigError(f"bad gin file {path}: {type(e).__name__}: {e}") from e
    for binding in gin_bindings:
        try:
            gin.parse_config(binding)
        except Exception as e:
            raise GinConfigError(f"bad gin binding {binding!r}: {type(e).__name__}: {e}") from e
    logging.info("gin files: %s; bindings: %s", files, list(gin_bindings))
    return files


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    # Before gin or anything else touches a JAX device; a no-op without the multi-process flags.
    try:
        parallel.distributed.maybe_initialize()
    except ValueError as e:
        sys.exit(f"error: {e}")
    gin_files = _GIN_FILE.value or [DEFAULT_GIN_FILE]
    try:
        configure(gin_files, _GIN_BINDINGS.value, _GIN_SEARCH_PATHS.value)
    except GinConfigError as e:
        logging.error("%s", e)
        sys.exit(f"error: {e}")
    result = execute()
    if isinstance(result, dict) and result.get("summary_text"):
        print(result["summary_text"], flush=True)  # The job's answer, on stdout.


def run_main() -> None:
    """Console-script entry point (`spec-cascade`)."""
    try:
        argv = rewrite_gin_args(sys.argv)
    except GinConfigError as e:
        sys.exit(f"error: {e}")
    app.run(main, argv=argv)


if __name__ == "__main__":
    run_main()
