"""Reading an export file: CSV (any of four delimiters, UTF-8, UTF-16 or Windows-1252)
or JSON, into rows keyed by folded header."""

from __future__ import annotations

import csv
import functools
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digest.audience.exports import unspreadsheet_cell
from digest.audience.imports.jsonrows import JsonShapeError, json_rows
from digest.errors import StoreError, UsageError


def _csv_rows(
    reader: Any, rejected: list[tuple[int, Mapping[str, Any] | None, str | None]]
) -> Iterator[list[str]]:
    """The reader's rows; a row the csv module cannot read (a field longer than its limit,
    a broken quote) is noted in ``rejected`` with its line and skipped."""
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            reason = str(exc)
            if "field larger than field limit" in reason:
                reason = f"a field is longer than {csv.field_size_limit()} characters"
            rejected.append((reader.line_num, None, reason))
            continue
        yield fields


@functools.lru_cache(maxsize=4096)
def fold(header: str) -> str:
    """``"Email Address"``, ``email_address`` and ``EMAIL-ADDRESS`` all become
    ``email address``."""
    text = header.replace("\ufeff", "").strip().strip('"').strip("'")
    return " ".join(re.split(r"[\s_\-]+", text.casefold())).strip()


def _decode(path: Path) -> tuple[str, str]:
    """The file's text and its encoding: UTF-8 (with or without a BOM), UTF-16 with a BOM,
    or, when the bytes are not UTF-8, Windows-1252 (what a spreadsheet on Windows saves)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:  # a wrong name on the command line: exit 2, not a store error
        raise UsageError(f"{path}: no such file") from None
    except OSError as exc:
        raise StoreError(f"{path}: cannot read it: {exc}") from None
    encoding = "utf-16" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
    try:
        return data.decode(encoding), encoding.removesuffix("-sig")
    except UnicodeDecodeError as exc:
        if encoding == "utf-16":
            raise StoreError(f"{path}: not UTF-16 text ({exc.reason})") from None
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError as exc:
        raise StoreError(
            f"{path}: neither UTF-8 nor Windows-1252 text ({exc.reason} at byte {exc.start}); "
            "save it as UTF-8"
        ) from None


def _delimiter(first_line: str) -> str:
    best, most = ",", 0
    for candidate in (",", ";", "\t", "|"):
        fields = next(csv.reader([first_line], delimiter=candidate), [])
        if len(fields) > most:
            best, most = candidate, len(fields)
    return best


@dataclass
class Table:
    """The rows of one file: headers as written, and records keyed by folded header."""

    kind: str  # csv or json
    headers: list[str]
    rows: list[tuple[int, Mapping[str, Any] | None, str | None]]
    encoding: str = "utf-8"


def _json_table(path: Path, text: str, encoding: str) -> Table:
    try:
        found = list(json_rows(text))
    except JsonShapeError as exc:
        try:  # the parser's own message names the line
            json.loads(text)
        except json.JSONDecodeError as bad:
            raise StoreError(f"{path}:{bad.lineno}: not valid JSON: {bad.msg}") from None
        except (RecursionError, ValueError):
            pass
        raise StoreError(f"{path}: {exc}") from None
    rows: list[tuple[int, Mapping[str, Any] | None, str | None]] = []
    headers: dict[str, None] = {}
    for number, item, problem in found:
        if isinstance(item, dict):
            record = {fold(str(k)): v for k, v in item.items()}
            headers.update(dict.fromkeys(str(k) for k in item))
            rows.append((number, record, None))
        else:
            rows.append((number, None, problem or f"expected an object, got {type(item).__name__}"))
    return Table("json", list(headers), rows, encoding)


def read_table(path: Path) -> Table:
    """Read a CSV or JSON file; rows are (number as a person counts them, record, problem)."""
    text, encoding = _decode(path)
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" or stripped.startswith(("[", "{")):
        return _json_table(path, text, encoding)
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    if not first:
        raise StoreError(f"{path}: the file is empty")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(first))
    header: list[str] | None = None
    keys: list[str] = []
    rows: list[tuple[int, Mapping[str, Any] | None, str | None]] = []
    for fields in _csv_rows(reader, rows):
        if header is None:
            if not any(f.strip() for f in fields):
                continue
            header = fields
            keys = [fold(h) for h in header]
            continue
        number = reader.line_num
        if not any(f.strip() for f in fields):
            continue
        if len(fields) > len(header):
            if any(f.strip() for f in fields[len(header) :]):
                rows.append((number, None, "more fields than the header has"))
                continue
            fields = fields[: len(header)]
        fields = fields + [""] * (len(header) - len(fields))
        # only a cell that starts with a quote can be one digest's export made safe
        fields = [unspreadsheet_cell(f) if f[:1] == "'" else f for f in fields]
        record = {k: v for k, v in zip(keys, fields, strict=True) if k}
        rows.append((number, record, None))
    return Table("csv", header or [], rows, encoding)
