"""The command line (:mod:`lcgee.cli`): exit codes and messages for bad input, never a
traceback unless ``--debug``; secrets out of error messages; ``params fields`` lists the real
model. Params-file checks through the CLI: tests/unit/test_checks.py; ``lcgee evaluate``:
tests/unit/test_train_stage.py; ``lcgee doctor``: tests/loopback/test_doctor.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lcgee import cli
from lcgee.errors import DataError
from lcgee.params import Params
from lcgee.procs import Terminated


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_missing_params_file_is_exit_2_with_the_path_and_a_fix(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    for command in (["params", "check"], ["run"], ["doctor"]):
        code, _, err = _run(capsys, *command, str(missing))
        assert code == 2, command
        assert err.startswith("lcgee: error: ") and str(missing) in err
        assert "params/demo.yaml" in err  # the fix names a real example
        assert "Traceback" not in err


def test_bad_override_names_the_field(capsys):
    code, _, err = _run(capsys, "params", "check", "demo", "--set", "grid.resolution=fine")
    assert code == 2 and "grid.resolution" in err and "Traceback" not in err
    code, out, _ = _run(capsys, "params", "check", "demo", "--set", "grid.resolution=20")
    assert code == 0 and "valid" in out


@pytest.mark.parametrize("command", [["ee", "verify"], ["ee", "classify"], ["evaluate"]])
def test_a_directory_that_is_not_a_run_is_exit_2(tmp_path, capsys, command):
    code, _, err = _run(capsys, *command, str(tmp_path / "not-a-run"))
    assert code == 2, err
    assert err.startswith("lcgee: error: ") and "not-a-run" in err and "Traceback" not in err


def test_debug_adds_the_traceback(tmp_path, capsys):
    code, _, err = _run(capsys, "--debug", "params", "check", str(tmp_path / "nope.yaml"))
    assert code == 2 and "Traceback" in err and "lcgee: error: " in err


def test_unexpected_errors_are_exit_1_with_a_way_to_report(monkeypatch, capsys):
    def boom(args):
        raise ValueError("index 3 is out of bounds")

    monkeypatch.setattr(cli, "_cmd_params", boom)
    code, _, err = _run(capsys, "params", "fields")
    assert code == 1
    assert "unexpected error: ValueError: index 3 is out of bounds" in err
    assert "--debug" in err and "Traceback" not in err
    code, _, err = _run(capsys, "--debug", "params", "fields")
    assert code == 1 and "Traceback" in err


@pytest.mark.parametrize("exc, code, word", [(KeyboardInterrupt(), 130, "interrupted"),
                                             (Terminated(), 143, "terminated")])
def test_interruptions_keep_finished_stages(monkeypatch, capsys, exc, code, word):
    def stop(args):
        raise exc

    monkeypatch.setattr(cli, "_cmd_params", stop)
    got, _, err = _run(capsys, "params", "fields")
    assert got == code and word in err and "rerun to resume" in err


def test_secrets_never_reach_the_error_message(monkeypatch, capsys):
    secret = "pc-subscription-0123456789abcdef"
    monkeypatch.setenv("PC_SDK_SUBSCRIPTION_KEY", secret)

    def leak(args):
        raise DataError(f"request failed: https://example.invalid/?key={secret}", where="x")

    monkeypatch.setattr(cli, "_cmd_params", leak)
    code, _, err = _run(capsys, "params", "fields")
    assert code == 2 and secret not in err and "***redacted***" in err


def test_params_fields_lists_every_field_of_the_model(capsys):
    code, out, _ = _run(capsys, "params", "fields")
    assert code == 0
    sections = [name for name, f in Params.model_fields.items()
                if isinstance(f.annotation, type) and hasattr(f.annotation, "model_fields")]
    assert len(sections) >= 8
    for section in sections:
        for field in Params.model_fields[section].annotation.model_fields:
            assert f"{section}.{field}" in out, f"{section}.{field}"


def test_usage_errors_come_from_argparse_with_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["no-such-command"])
    assert info.value.code == 2
    assert "invalid choice: 'no-such-command'" in capsys.readouterr().err


def test_the_installed_command_prints_one_line_not_a_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lcgee.cli", "params", "check",
                           str(tmp_path / "nope.yaml")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("lcgee: error: ")
    assert "Traceback" not in proc.stderr
