"""The README's container instructions are the commands the container stack test runs."""

from __future__ import annotations

import re

from tests.container.test_compose_stack import ADD_VIEWER, BUILD, COMPOSE_FILES, DOWN, README, UP


def _readme_commands() -> list[str]:
    text = README.read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command.startswith("docker compose"):
                lines.append(" ".join(command.split()))
    return lines


def test_the_readme_runs_the_stack_as_the_test_does() -> None:
    commands = _readme_commands()
    for arguments in [BUILD, UP, DOWN]:
        assert "docker compose " + " ".join(arguments) in commands, arguments
    # The viewer is added as the README adds people (-T only because the test has no terminal).
    viewer = [arguments for arguments in ADD_VIEWER if arguments != "-T"]
    assert any(command.startswith("docker compose " + " ".join(viewer)) for command in commands), viewer
    assert f"COMPOSE_FILE={COMPOSE_FILES}" in README.read_text()
