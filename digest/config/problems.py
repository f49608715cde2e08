"""Validation errors as one line per problem, each naming its key path."""

from __future__ import annotations

import difflib
import re
from typing import Any

from pydantic import BaseModel, ValidationError


def _model_at(loc: tuple[int | str, ...], root: type[BaseModel]) -> type[BaseModel] | None:
    """The pydantic model that holds the key at ``loc`` (for near-miss suggestions)."""
    model: Any = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return None
        annotation = field.annotation
        # Unwrap list[X] / X | None down to a model class.
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        model = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if model is None:
            for c in getattr(annotation, "__args__", ()):
                for inner in getattr(c, "__args__", ()):
                    if isinstance(inner, type) and issubclass(inner, BaseModel):
                        model = inner
            if model is None:
                return None
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def describe_errors(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """One line per problem, each starting with the dotted key path below ``root``."""
    problems: list[str] = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        path = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc).replace(".[", "[")
        kind = error["type"]
        if kind == "extra_forbidden":
            model = _model_at(loc, root)
            known = list(model.model_fields) if model else []
            known = [k for k in known if k != "source"]
            close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            if not close and known:
                hint = f"; known keys here: {', '.join(known)}"
            problems.append(f"{path}: unknown key{hint}")
        elif kind == "missing":
            problems.append(f"{path}: required, but missing")
        else:
            message = error["msg"]
            message = re.sub(r"^(Value error|Assertion failed), ", "", message)
            got = f" (got {_describe(error.get('input'))})" if "input" in error else ""
            if kind.startswith("value_error"):
                got = ""
            problems.append(f"{path}: {message}{got}" if path else f"{message}{got}")
    return problems
