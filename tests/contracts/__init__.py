"""Provider API descriptions, kept as data, and a checker for captured requests.

Each ``*.json`` file here holds the parts of one provider's *published* API description that
digest's requests touch (its ``_source`` names the document, repository, path and commit),
copied as data and never edited to fit the code; where the document is known to be wrong or
silent, the file says so under ``errata`` or ``beyond_the_document`` with the evidence.

:func:`problems` checks one captured :class:`httpx.Request` against such a file: the method
and path are an operation the document describes, the required headers are there, every
query parameter is one the operation declares (with its type and limits), and the body
validates against the operation's schema (JSON Schema, by ``jsonschema``), strictly: an
object member the document does not describe is reported, not ignored.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from jsonschema import Draft202012Validator

HERE = Path(__file__).parent


@cache
def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((HERE / f"{name}.json").read_text(encoding="utf-8"))
    return data


def strict(schema: Any) -> Any:
    """The schema with ``additionalProperties: false`` wherever it lists ``properties`` and
    says nothing of others: a member the document does not describe is an error."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def _template_match(template: str, path: str) -> bool:
    pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
    return re.match(pattern, path) is not None


def operation(contract: dict[str, Any], method: str, path: str) -> dict[str, Any] | None:
    for template, ops in contract["paths"].items():
        if _template_match(template, path) and method.lower() in ops:
            op: dict[str, Any] = ops[method.lower()]
            return op
    return None


def _check_value(name: str, raw: str, spec: dict[str, Any]) -> list[str]:
    kind = spec.get("type", "string")
    value: Any = raw
    if kind == "integer":
        if not re.fullmatch(r"-?\d+", raw):
            return [f"query {name}={raw!r} is not an integer"]
        value = int(raw)
    elif kind == "boolean" and raw not in ("true", "false"):
        return [f"query {name}={raw!r} is not a boolean"]
    found = []
    if "enum" in spec and raw not in spec["enum"]:
        found.append(f"query {name}={raw!r} is not one of {spec['enum']}")
    if "maximum" in spec and isinstance(value, int) and value > spec["maximum"]:
        found.append(f"query {name}={value} is above the maximum {spec['maximum']}")
    if "minimum" in spec and isinstance(value, int) and value < spec["minimum"]:
        found.append(f"query {name}={value} is below the minimum {spec['minimum']}")
    return found


def _query_spec(contract: dict[str, Any], op: dict[str, Any], path: str) -> dict[str, Any]:
    spec = dict(op.get("query") or {})
    extra = contract["_source"].get("beyond_the_document", {}).get("query", {})
    for template, params in extra.items():
        if _template_match(template, path):
            spec.update(params)
    return spec


def _query_problems(
    contract: dict[str, Any], op: dict[str, Any], request: httpx.Request
) -> list[str]:
    if "query" not in op:
        return []  # the file keeps this operation by path only
    path = request.url.path
    spec = _query_spec(contract, op, path)
    pairs = parse_qsl(urlsplit(str(request.url)).query, keep_blank_values=True)
    found: list[str] = []
    for name, value in pairs:
        wild = [k for k in spec if k.endswith("*") and name.startswith(k[:-1])]
        param = spec.get(name) or (spec[wild[0]] if wild else None)
        if param is None:
            found.append(f"query parameter {name!r} is not declared for {path}")
            continue
        found += _check_value(name, value, param)
    names = {n for n, _ in pairs}
    found += [
        f"required query parameter {n!r} is missing"
        for n, p in spec.items()
        if p.get("required") and n not in names
    ]
    return found


def _header_problems(op: dict[str, Any], request: httpx.Request) -> list[str]:
    found = []
    for name, rule in (op.get("headers") or {}).items():
        value = request.headers.get(name)
        if value is None:
            found.append(f"header {name} is missing")
            continue
        if "pattern" in rule and not re.match(rule["pattern"], value):
            found.append(f"header {name} does not match {rule['pattern']}")
        if "maxLength" in rule and len(value) > rule["maxLength"]:
            found.append(f"header {name} is longer than {rule['maxLength']}")
    return found


def body_problems(contract: dict[str, Any], schema: Any, body: Any) -> list[str]:
    root = {"definitions": contract.get("definitions", {}), **strict(schema)}
    validator = Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return [
        f"body{''.join(f'[{p!r}]' for p in error.absolute_path)}: {error.message}"
        for error in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    ]


def problems(contract: dict[str, Any], request: httpx.Request, *, prefix: str = "") -> list[str]:
    """What is wrong with one request by the contract's description ([] when nothing)."""
    path = request.url.path[len(prefix) :] if prefix else request.url.path
    op = operation(contract, request.method, path)
    extra_paths = contract["_source"].get("beyond_the_document", {}).get("paths", [])
    if op is None:
        if any(_template_match(t, path) for t in extra_paths):
            return []
        return [f"{request.method} {path} is not an operation of {contract['_source']['document']}"]
    found = _header_problems(op, request) + _query_problems(contract, op, request)
    if "requestBody" in op:
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith(op["content_type"]):
            found.append(f"content-type {content_type!r}, not {op['content_type']}")
        extra = contract["_source"].get("beyond_the_document", {}).get("body")
        if extra:  # members from the provider's prose reference (named in the file)
            contract = copy.deepcopy(contract)
            contract["definitions"]["SendEmailRequest"]["properties"].update(extra)
        found += body_problems(contract, op["requestBody"], json.loads(request.content))
    return found
