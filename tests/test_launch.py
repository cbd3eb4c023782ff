"""Tests for launch/local.sh and launch/tpu_vm.sh: dry runs print exactly what a real run executes.

Printed lines are shell-quoted; shlex.split turns them back into the exact argv.
"""

import json
import os
import pathlib
import shlex
import stat
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
LOCAL = REPO / "launch" / "local.sh"
TPU = REPO / "launch" / "tpu_vm.sh"
OVERRIDE = "--gin.OUTPUT_DIR='/tmp/out dir'"  # A space and quotes survive quoting.
BINDING = "--gin_bindings=ALPHA = 0.3"


def run(script, *args, env=None, check=True):
    result = subprocess.run(
        ["bash", str(script), *args],
        capture_output=True,
        text=True,
        env={**{k: v for k, v in os.environ.items() if k != "PYTHON"}, **(env or {})},
        timeout=60,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def printed_commands(script, *args):
    return [shlex.split(line) for line in run(script, *args).stdout.splitlines()]


def make_executable(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.mark.parametrize(
    "platform_args, platform_env",
    [
        ([], []),
        (["--platform=cpu"], ["JAX_PLATFORMS=cpu"]),
        (["--platform", "gpu"], ["JAX_PLATFORMS=gpu"]),
    ],
)
def test_local_dry_run(platform_args, platform_env):
    lines = printed_commands(
        LOCAL, "--dry_run", *platform_args, "models/tiny.gin", "tasks/mock.gin", "runs/smoke.gin",
        OVERRIDE, BINDING,
    )  # fmt: skip
    assert len(lines) == 1
    pythonpath = str(REPO) + (
        f":{os.environ['PYTHONPATH']}" if os.environ.get("PYTHONPATH") else ""
    )
    assert lines[0] == [
        "env",
        f"PYTHONPATH={pythonpath}",
        "PYTHONUNBUFFERED=1",
        f"TF_CPP_MIN_LOG_LEVEL={os.environ.get('TF_CPP_MIN_LOG_LEVEL', '2')}",
        "TF_FORCE_GPU_ALLOW_GROWTH=true",
        *platform_env,
        "python",
        "-m",
        "spec_cascade_jax.main",
        "--gin_file=models/tiny.gin",
        "--gin_file=tasks/mock.gin",
        "--gin_file=runs/smoke.gin",
        OVERRIDE,
        BINDING,
    ]


def test_local_real_run_executes_the_printed_command(tmp_path):
    fake_python = make_executable(
        tmp_path / "fake_python",
        "#!/usr/bin/env python3\n"
        "import json, os, sys\n"
        "print(json.dumps({'argv': sys.argv[1:], 'jax': os.environ.get('JAX_PLATFORMS'),"
        " 'tf': os.environ.get('TF_FORCE_GPU_ALLOW_GROWTH')}))\n",
    )
    args = ["--platform=cpu", "a.gin", "b.gin", OVERRIDE]
    env = {"PYTHON": str(fake_python)}
    printed = shlex.split(run(LOCAL, "--dry_run", *args, env=env).stdout)
    executed = json.loads(run(LOCAL, *args, env=env).stdout)
    assert executed == {
        "argv": printed[printed.index(str(fake_python)) + 1 :],
        "jax": "cpu",
        "tf": "true",
    }
    assert executed["argv"] == [
        "-m",
        "spec_cascade_jax.main",
        "--gin_file=a.gin",
        "--gin_file=b.gin",
        OVERRIDE,
    ]


def test_local_rejects_unknown_platform():
    result = run(LOCAL, "--dry_run", "--platform=quantum", check=False)
    assert result.returncode == 2 and "--platform=quantum" in result.stderr


def test_tpu_dry_run_prints_every_step():
    lines = printed_commands(
        TPU, "--dry_run", "--tpu_name=sc-eval", "--zone", "us-central2-b",
        "--accelerator_type=v4-32", "--version=tpu-vm-v4-base", "--project=my-proj",
        "models/pair.gin", "tasks/xsum.gin", OVERRIDE, BINDING, "--delete_after",
    )  # fmt: skip
    where = ["--zone=us-central2-b", "--project=my-proj"]
    tpu_vm = ["gcloud", "compute", "tpus", "tpu-vm"]
    assert [line[:5] for line in lines] == [
        [*tpu_vm, "create"],
        ["tar", "-czf", lines[1][2], "-C", str(REPO)],
        [*tpu_vm, "scp"],
        [*tpu_vm, "ssh"],
        [*tpu_vm, "ssh"],
        [*tpu_vm, "delete"],
    ]
    create, package, copy, install, job, delete = lines
    assert create == [
        *tpu_vm, "create", "sc-eval", *where, "--accelerator-type=v4-32", "--version=tpu-vm-v4-base"
    ]  # fmt: skip
    assert "--exclude=.git" in package and package[-1] == "."
    assert copy == [
        *tpu_vm,
        "scp",
        package[2],
        "sc-eval:spec_cascade_jax_src.tar.gz",
        *where,
        "--worker=all",
    ]
    assert install[:-1] == [*tpu_vm, "ssh", "sc-eval", *where, "--worker=all"]
    assert install[-1].startswith("--command=") and "pip install -e ." in install[-1]
    assert "jax[tpu]" in install[-1]
    assert job[:-1] == [*tpu_vm, "ssh", "sc-eval", *where, "--worker=all"]
    remote = shlex.split(job[-1].removeprefix("--command="))
    assert remote == [
        "cd", "spec_cascade_jax", "&&", "env", "PYTHON=python3", "bash", "launch/local.sh",
        "--platform=tpu", "--gin_file=models/pair.gin", "--gin_file=tasks/xsum.gin",
        OVERRIDE, BINDING,
    ]  # fmt: skip
    assert delete == [*tpu_vm, "delete", "sc-eval", *where, "--quiet"]


def test_tpu_skip_flags_and_defaults():
    lines = printed_commands(
        TPU, "--dry_run", "--tpu_name=t", "--zone=z", "--skip_install", "x.gin"
    )
    assert lines[0] == [
        "gcloud", "compute", "tpus", "tpu-vm", "create", "t", "--zone=z",
        "--accelerator-type=v4-8", "--version=tpu-ubuntu2204-base",
    ]  # fmt: skip
    assert len(lines) == 2 and lines[1][4] == "ssh" and "--worker=all" in lines[1]
    lines = printed_commands(
        TPU, "--dry_run", "--tpu_name=t", "--zone=z", "--skip_create", "--skip_install"
    )
    assert len(lines) == 1 and lines[0][4] == "ssh"


def test_tpu_real_run_executes_the_printed_commands(tmp_path):
    log = tmp_path / "gcloud.log"
    make_executable(
        tmp_path / "gcloud",
        "#!/usr/bin/env python3\nimport json, sys\n"
        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n",
    )
    args = ["--tpu_name=t", "--zone=z", "--skip_install", "a.gin", OVERRIDE, "--delete_after"]
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}"}
    printed = printed_commands(TPU, "--dry_run", *args)
    run(TPU, *args, env=env)
    executed = [json.loads(line) for line in log.read_text().splitlines()]
    assert executed == [line[1:] for line in printed]
    assert [cmd[3] for cmd in executed] == ["create", "ssh", "delete"]


def test_tpu_deletes_even_when_the_job_fails(tmp_path):
    log = tmp_path / "gcloud.log"
    make_executable(
        tmp_path / "gcloud",
        f'#!/usr/bin/env bash\necho "$4" >> {log}\n[[ $4 != ssh ]]\n',
    )
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}"}
    args = ["--tpu_name=t", "--zone=z", "--skip_install", "--delete_after", "a.gin"]
    result = run(TPU, *args, env=env, check=False)
    assert result.returncode == 1
    assert log.read_text().split() == ["create", "ssh", "delete"]


@pytest.mark.parametrize("missing", ["--tpu_name", "--zone"])
def test_tpu_requires_name_and_zone(missing):
    args = [a for a in ["--tpu_name=t", "--zone=z"] if not a.startswith(missing)]
    result = run(TPU, "--dry_run", *args, "a.gin", check=False)
    assert result.returncode == 2 and f"{missing} is required" in result.stderr
