"""YAML input files: read one with errors that name the file, and name the field pydantic refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tokenomy.catalog.errors import CatalogError


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
