"""The docs cannot drift from the code: the README's configuration table is the one clap prints,
and every command the README's quick start and the runbook's post-deploy proof name exists (the
repo's scripts and files, the binaries' subcommands and flags)."""

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from harness.procs import require_tool

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RUNBOOK = ROOT / "docs" / "runbook.md"
BINARIES = {name: ROOT / "target" / "release" / name for name in ("detector-api", "detectorctl")}
# Top-level folders of the repo: a token starting with one of these is a path that must exist.
# Files the operator creates from a committed example; they are never in the repo.
OPERATOR_FILES = {"compose/.env"}
REPO_DIRS = ("scripts/", "certbot/", "host/", "compose/", "nginx/", "systemd/", "docs/", "monitoring/")
# Host programs the proof calls; each must be a real program on a VM set up by the README.
HOST_TOOLS = {
    "cd", "set", ".", "curl", "docker", "jq", "tail", "git", "fail2ban-client", "openssl", "systemctl",
    "journalctl", "install", "head", "grep", "detector-stack-compose", "nft", "ss", "gunzip", "zcat",
}


def section(path: Path, heading: str) -> str:
    """The text under a `## heading` up to the next heading of the same level."""
    text = path.read_text()
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"{path.name} has no '## {heading}' section"
    return match.group(1)


def shell_commands(markdown: str):
    """Each command of the sh code blocks, with continuations joined and comments dropped."""
    for block in re.findall(r"```sh\n(.*?)```", markdown, re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            if not line or line.startswith("#"):
                continue
            for part in re.split(r"\s*(?:&&|\|\||;|\|)\s*", line):
                if part:
                    yield part


def words(command: str):
    try:
        return shlex.split(command)
    except ValueError:
        return command.split()


def help_text(binary: str, *subcommand: str) -> str:
    path = BINARIES[binary]
    assert path.exists(), f"{path} is missing: run `cargo build --release --workspace`"
    run = subprocess.run([str(path), *subcommand, "--help"], capture_output=True, text=True)
    assert run.returncode == 0, f"`{binary} {' '.join(subcommand)}` does not exist: {run.stderr}"
    return run.stdout


def check_command(command: str):
    argv = words(command)
    program = argv[0]
    if "=" in program and not program.startswith(("/", ".")):
        return  # an assignment such as VAR=value
    if program.startswith(REPO_DIRS):
        path = ROOT / program
        assert path.is_file(), f"`{command}` names {program}, which is not in the repo"
        assert path.stat().st_mode & 0o111, f"{program} is not executable"
    elif program in BINARIES:
        subcommands = [w for w in argv[1:3] if not w.startswith("-") and re.fullmatch(r"[a-z-]+", w)]
        # Descend as far as the binary knows the words as subcommands.
        known = []
        for word in subcommands:
            run = subprocess.run([str(BINARIES[program]), *known, word, "--help"], capture_output=True)
            if run.returncode != 0:
                break
            known.append(word)
        text = help_text(program, *known)
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", command):
            assert flag in text, f"`{command}`: {program} {' '.join(known)} has no flag {flag}"
    else:
        assert program in HOST_TOOLS, f"`{command}` calls {program}, which the docs never install"
    for token in argv[1:]:
        if token.startswith(REPO_DIRS) and token not in OPERATOR_FILES and not any(c in token for c in "*$<"):
            assert (ROOT / token).exists(), f"`{command}` points to {token}, which is not in the repo"


def test_readme_configuration_table_is_the_one_clap_prints():
    generated = subprocess.run(
        [str(ROOT / "scripts" / "config-table"), str(BINARIES["detector-api"])],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    match = re.search(r"<!-- config-table:start -->\n(.*?)\n<!-- config-table:end -->", README.read_text(), re.S)
    assert match, "README.md lost its config-table markers"
    assert match.group(1).strip() == generated, "README's table differs from scripts/config-table: regenerate it"


def test_every_flag_of_the_service_is_in_the_readme_table():
    flags = set(re.findall(r"\[env: (DETECTOR_[A-Z_]+)", help_text("detector-api")))
    assert flags, "detector-api --help shows no environment variables"
    table = README.read_text()
    missing = sorted(f for f in flags if f"`{f}`" not in table)
    assert not missing, f"README misses {missing}"


@pytest.mark.parametrize(
    "doc,heading",
    [(README, "Set-up on a fresh machine"), (README, "Operator commands (`detectorctl`)"),
     (RUNBOOK, "Post-deploy proof"), (RUNBOOK, "Deploy")],
)
def test_documented_commands_exist(doc, heading):
    require_tool("jq")
    commands = list(shell_commands(section(doc, heading)))
    if doc == README and heading.startswith("Operator"):
        # The operator table lists commands in backticks, not a code block.
        commands = [c.replace("\\|", "|") for c in re.findall(r"^\| `([^`]+)`", section(doc, heading), re.M)]
        commands = [c.split("[")[0].split("(")[0].strip() for c in commands]
    assert commands, f"no commands found under {heading}"
    for command in commands:
        check_command(command)


def test_the_checker_catches_a_missing_subcommand_and_file():
    with pytest.raises(AssertionError):
        check_command("detectorctl frobnicate --url x")
    with pytest.raises(AssertionError):
        check_command("scripts/does-not-exist")
    with pytest.raises(AssertionError):
        check_command("detectorctl verify --no-such-flag")
