"""The Containerfile, checked statically (no container engine runs in CI): stages, user, health
check, command, volume, port, build context, and no secrets baked in."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import Path

import pytest

from imagedrop.cli import _parser

ROOT = Path(__file__).resolve().parents[2]
SECRETISH_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|CRN", re.I)
SECRETISH_VALUE = re.compile(
    r"whsec_[A-Za-z0-9+/=]{8}|sk-[A-Za-z0-9_-]{8}|-----BEGIN|AKIA[0-9A-Z]{12}")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += " " + stripped.removesuffix("\\").strip() if pending else (
            stripped.removesuffix("\\").strip())
        if not stripped.endswith("\\"):
            word, _, rest = pending.partition(" ")
            result.append((word.upper(), rest.strip()))
            pending = ""
    assert not pending, "the file ends inside a continued instruction"
    return result


def env_pairs(args: str) -> dict[str, str]:
    """ENV NAME=value NAME2=value2 (the key=value form only)."""
    return dict(part.split("=", 1) for part in shlex.split(args))


@pytest.fixture(name="parsed", scope="module")
def _parsed() -> list[tuple[str, str]]:
    return instructions((ROOT / "Containerfile").read_text())


def stages(parsed: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for instruction in parsed:
        if instruction[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(instruction)
    return out


def final(parsed: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return stages(parsed)[-1]


def one(stage: list[tuple[str, str]], name: str) -> str:
    found = [args for word, args in stage if word == name]
    assert len(found) == 1, f"expected one {name} in the final stage, found {found}"
    return found[0]


class TestStages:
    """A build stage installs; a slim runtime stage only copies the result."""

    def test_multi_stage_on_slim_python_311(self, parsed):
        args = {k: v.strip('"') for word, a in parsed if word == "ARG" and "=" in a
                for k, v in [a.split("=", 1)]}
        froms = [a for word, a in parsed if word == "FROM"]
        assert len(froms) >= 2
        for spec in froms:
            image = spec.split()[0]
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
            assert re.search(r"python:3\.1[1-9]-slim", image), image

    def test_runtime_copies_only_the_built_environment(self, parsed):
        build_name = [a.split()[-1] for word, a in parsed if word == "FROM" and " AS " in a.upper()]
        copies = [a for word, a in final(parsed) if word in ("COPY", "ADD")]
        assert copies and all(c.startswith(f"--from={build_name[0]} ") for c in copies)

    def test_build_copies_exist_and_are_not_ignored(self, parsed):
        ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                   if line.strip() and not line.startswith("#") and not line.startswith("!")]
        for word, args in stages(parsed)[0]:
            if word != "COPY":
                continue
            *sources, _dest = shlex.split(args)
            for source in sources:
                assert (ROOT / source).exists(), source
                assert not any(fnmatch.fnmatch(source, p) for p in ignored), source


class TestRuntime:
    """What the final image runs, as whom, and how it is checked."""

    def test_runs_as_a_non_root_user(self, parsed):
        stage = final(parsed)
        user = one(stage, "USER")
        assert user.split(":")[0] not in ("root", "0")
        words = [word for word, _ in stage]
        assert words.index("USER") < words.index("CMD")

    def test_default_command_is_serve_on_all_interfaces(self, parsed):
        cmd = json.loads(one(final(parsed), "CMD"))  # exec form: signals reach imagedrop
        assert cmd == ["imagedrop", "serve", "--host", "0.0.0.0"]
        args = _parser().parse_args(cmd[1:])
        assert (args.command, args.host) == ("serve", "0.0.0.0")

    def test_healthcheck_calls_health_and_is_valid_python(self, parsed):
        spec = one(final(parsed), "HEALTHCHECK")
        options, _, command = spec.partition("CMD ")
        assert "--interval" in options and "--timeout" in options
        argv = json.loads(command)
        assert argv[:2] == ["python", "-c"] and "/health" in argv[2]
        compile(argv[2], "<healthcheck>", "exec")

    def test_data_folder_is_a_volume_and_the_port_is_exposed(self, parsed):
        stage = final(parsed)
        env = {}
        for word, args in stage:
            if word == "ENV":
                env.update(env_pairs(args))
        assert json.loads(one(stage, "VOLUME")) == [env["IMAGEDROP_DATA_DIR"]]
        assert one(stage, "EXPOSE") == env["IMAGEDROP_PORT"] == "8080"


class TestNoSecrets:
    """Nothing secret in the image or its build context."""

    def test_no_secret_looking_env_or_arg(self, parsed):
        for word, args in parsed:
            if word == "ENV":
                pairs = env_pairs(args)
            elif word == "ARG":
                name, _, value = args.partition("=")
                pairs = {name: value}
            else:
                continue
            for name, value in pairs.items():
                assert not SECRETISH_NAME.search(name), name
                assert not SECRETISH_VALUE.search(value), name

    def test_no_secret_looking_value_anywhere(self):
        assert not SECRETISH_VALUE.search((ROOT / "Containerfile").read_text())

    def test_context_excludes_local_state_and_secrets(self):
        patterns = (ROOT / ".dockerignore").read_text().splitlines()
        for needed in (".env", ".git", ".venv", "imagedrop-data", "**/*.sqlite3"):
            assert needed in patterns, needed
