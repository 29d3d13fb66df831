"""``opskit completion SHELL``: print the shell completion script."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class


@click.command(
    "completion",
    epilog="""\b
Examples:
  eval "$(opskit completion bash)"          # in ~/.bashrc
  opskit completion zsh > ~/.zfunc/_opskit
  opskit completion fish > ~/.config/fish/completions/opskit.fish
""",
)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def command(ctx: click.Context, shell: str) -> int:
    """Print the completion script for SHELL (bash, zsh or fish)."""
    root = ctx.find_root().command
    cls = get_completion_class(shell)
    assert cls is not None  # the Choice above only admits shells Click supports
    click.echo(cls(root, {}, "opskit", "_OPSKIT_COMPLETE").source())
    return 0
