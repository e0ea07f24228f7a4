"""How the command line reports bad input: one plain line naming the option or field, never a traceback.

- `option_error(exc)` (and `tokenomy.yamlfile.file_error(exc, source)` for files) turn a pydantic ValidationError
  into that line (the option `--num-requests` or the file's field `tiers.0.replicas`, what is wrong, what was
  given), without pydantic's banner or its errors.pydantic.dev links.
- `GuardedGroup` is the click group of the `tokenomy` app: any exception a command lets escape becomes
  "error: …" on stderr and exit 1 (2 for bad input), or the traceback when TOKENOMY_DEBUG=1.
"""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import typer
import typer._click as click  # typer vendors click: its exceptions, not the click package's
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from tokenomy.catalog.errors import CatalogError
from tokenomy.yamlfile import pydantic_reason, shown_value

EXIT_BAD_INPUT = 2
EXIT_UNEXPECTED = 1
EXIT_CANNOT_LISTEN = 3  # as uvicorn (and so the gateway) exits when it cannot bind its port

# emoji=False: ':A:' or ':100:' in a user's string must print as typed, not as an emoji.
err_console = Console(stderr=True, soft_wrap=True, emoji=False, highlight=False)


def one_line(message: str) -> str:
    """The message on one line (newlines and runs of spaces folded)."""
    return " ".join(str(message).split())


def option_error(exc: ValidationError, names: dict[str, str] | None = None) -> CatalogError:
    """A CatalogError naming the command-line option each complaint came from ('--isl: …; --rate: …')."""
    names = names or {}
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if not isinstance(p, int)]
        field = loc[0] if loc else ""
        option = names.get(field, "--" + field.replace("_", "-")) if field else "options"
        got = f" (got {shown_value(err['input'])})" if loc and "input" in err else ""
        parts.append(f"{option}: {pydantic_reason(err)}{got}")
    return CatalogError("; ".join(parts))


def report(message: str) -> None:
    """Print "error: <message>" on stderr, the message escaped so that nothing in it renders as markup."""
    err_console.print(f"[bold red]error:[/] {escape(one_line(message))}")


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Report a bad input and exit with `code` (2: bad input)."""
    report(message)
    raise typer.Exit(code)


def message_of(exc: BaseException) -> str:
    """What went wrong, in words: mapped for pydantic, the exception's own text otherwise."""
    if isinstance(exc, ValidationError):
        return str(option_error(exc))
    text = one_line(str(exc))
    if isinstance(exc, CatalogError | ValueError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _finite_options(command: click.Command, callback: Callable[..., Any]) -> Callable[..., Any]:
    """The command's callback, refusing NaN or infinite numbers in any option (click's ranges let NaN through)."""
    flags = {p.name: (p.opts[0] if getattr(p, "opts", None) else p.name) for p in command.params}

    @functools.wraps(callback)
    def checked(*args: Any, **kwargs: Any) -> Any:
        for name, value in kwargs.items():
            values = value if isinstance(value, list | tuple) else [value]
            for v in values:
                if isinstance(v, float) and not math.isfinite(v):
                    fail(f"{flags.get(name, name)}: expected a finite number, got {v}")
        return callback(*args, **kwargs)

    return checked


class GuardedGroup(TyperGroup):
    """The app's click group: no exception escapes a command as a traceback (TOKENOMY_DEBUG=1 shows it)."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None and command.callback is not None and not getattr(command, "_finite_checked", False):
            command.callback = _finite_options(command, command.callback)
            command._finite_checked = True  # type: ignore[attr-defined]
        return name, command, rest

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, typer.Exit, typer.Abort):
            raise
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            if os.environ.get("TOKENOMY_DEBUG", "") not in ("", "0"):
                raise
            bad_input = isinstance(exc, CatalogError | ValidationError)
            report(message_of(exc) + ("" if bad_input else " (TOKENOMY_DEBUG=1 shows the traceback)"))
            sys.stderr.flush()
            raise typer.Exit(EXIT_BAD_INPUT if bad_input else EXIT_UNEXPECTED) from None
