"""YAML input files: read one with errors that name the file, and name the field pydantic refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tokenomy.catalog.errors import CatalogError

MAX_INPUT_CHARS = 60  # of a refused value quoted back in an error


def read_yaml(path: Path | str, error: type[CatalogError] = CatalogError) -> Any:
    """A YAML file's parsed contents; a file that cannot be read or is not YAML raises `error` naming the file."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from exc


def field_error(source: str, exc: ValidationError, error: type[CatalogError] = CatalogError) -> CatalogError:
    """`error` for pydantic's first complaint: "<source>: field 'a.b.0': <message>"."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "(top level)"
    return error(f"{source}: field '{field}': {err['msg']}")


def shown_value(value: Any) -> str:
    """A refused value as an error message quotes it: its repr, cut to MAX_INPUT_CHARS."""
    text = repr(value)
    return text if len(text) <= MAX_INPUT_CHARS else text[: MAX_INPUT_CHARS - 1] + "…"


def pydantic_reason(err: dict[str, Any]) -> str:
    """pydantic's message for one error, without its 'Value error, ' prefix."""
    msg = str(err.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg


def file_error(exc: ValidationError, source: str) -> CatalogError:
    """A CatalogError naming the file and the field each complaint came from ('fleet.yaml: field tiers.0.tp: …')."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if not str(p).endswith("File")) or "(top level)"
        got = f" (got {shown_value(err['input'])})" if "input" in err and not isinstance(err["input"], dict) else ""
        parts.append(f"field '{loc}': {pydantic_reason(err)}{got}")
    return CatalogError(f"{source}: " + "; ".join(parts))
