"""Front matter YAML, read with limits: no document can make digest allocate more than it is.

YAML aliases let a few lines describe an enormous structure (the "billion laughs": nine
levels of ``&a [*a, *a, …]`` expand to 9^9 strings). digest builds str, list and dict
straight from libyaml's *events*, one at a time, counting as it goes:

- ``nodes``: scalars, lists and mappings written in the text;
- ``aliases``: ``*name`` references;
- ``expanded``: the nodes the document would hold with every alias expanded (an alias of a
  list of 9 strings counts 10 each time it is used).

The first count to pass its limit stops the reading with :class:`FrontMatterTooLarge`,
before anything larger than the text itself is built; an alias is shared, never copied, so
memory stays proportional to the text whatever its alias structure. The limits are
``content.max_yaml_nodes``, ``content.max_yaml_aliases`` and ``content.max_yaml_expanded``.

Every scalar stays a string (as with PyYAML's BaseLoader): dates, booleans and numbers are
read by digest's own rules, not by YAML's implicit typing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from frontmatter.default_handlers import YAMLHandler

_BASE_LOADER: type[Any] = getattr(yaml, "CBaseLoader", yaml.BaseLoader)  # libyaml if there


@dataclass(frozen=True)
class YamlLimits:
    """How much one post's front matter may hold (see the module docstring)."""

    nodes: int = 10_000
    aliases: int = 100
    expanded: int = 100_000

    @classmethod
    def from_config(cls, content: Any) -> YamlLimits:
        return cls(
            nodes=content.max_yaml_nodes,
            aliases=content.max_yaml_aliases,
            expanded=content.max_yaml_expanded,
        )


class FrontMatterTooLarge(yaml.YAMLError):
    """The front matter passes one of the limits; ``reason`` says which, for the report."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_OPEN = object()  # an anchor whose node is still being read (an alias to it recurses)


class _Frame:
    __slots__ = ("anchor", "key", "start", "value")

    def __init__(self, value: list[Any] | dict[str, Any], anchor: str | None, start: int) -> None:
        self.value = value
        self.anchor = anchor
        self.start = start  # the expanded count before this node
        self.key: Any = _OPEN  # a mapping's key waiting for its value


def load_bounded(text: str, limits: YamlLimits) -> Any:
    """The single YAML document in ``text`` as str/list/dict (None when empty).

    Raises :class:`FrontMatterTooLarge` past a limit, and PyYAML's errors (with marks) for
    YAML that cannot be read: a recursive or undefined alias, a duplicate anchor, a key that
    is not a string, more than one document.
    """
    loader = _BASE_LOADER(text)
    try:
        return _build(loader, limits)
    finally:
        loader.dispose()


def _build(loader: Any, limits: YamlLimits) -> Any:
    return _Builder(limits).run(loader)


class _Builder:
    """The document built from the parser's events, each limit counted as it grows."""

    def __init__(self, limits: YamlLimits) -> None:
        self.limits = limits
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.stack: list[_Frame] = []
        self.nodes = self.aliases = self.expanded = 0
        self.result: Any = None
        self.documents = 0

    def run(self, loader: Any) -> Any:
        while True:
            event: Any = loader.get_event()
            if isinstance(event, yaml.ScalarEvent):
                self.count_node(event)
                if event.anchor is not None:
                    self.anchors[event.anchor] = (event.value, 1)
                self.place(event.value, 1, _mark(event))
            elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                self.count_node(event)
                container: list[Any] | dict[str, Any] = (
                    [] if isinstance(event, yaml.SequenceStartEvent) else {}
                )
                self.stack.append(_Frame(container, event.anchor, self.expanded))
                self.grow(1)  # the node itself; its contents are counted as they come
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                frame = self.stack.pop()
                size = self.expanded - frame.start
                self.expanded = frame.start  # place() adds the whole node back
                if frame.anchor is not None:
                    self.anchors[frame.anchor] = (frame.value, size)
                self.place(frame.value, size, _mark(event))
            elif isinstance(event, yaml.AliasEvent):
                self.alias(event)
            elif isinstance(event, yaml.DocumentStartEvent):
                self.documents += 1
                if self.documents > 1:
                    raise yaml.composer.ComposerError(
                        "expected a single document in the stream",
                        None,
                        "but found another document",
                        _mark(event),
                    )
            elif isinstance(event, yaml.StreamEndEvent):
                return self.result
            # StreamStart and DocumentEnd carry nothing

    def grow(self, size: int) -> None:
        self.expanded += size
        if self.expanded > self.limits.expanded:
            raise FrontMatterTooLarge(
                f"front matter expands to more than {self.limits.expanded:,} values "
                "(content.max_yaml_expanded): too many aliases of large values"
            )

    def place(self, value: Any, size: int, mark: Any) -> None:
        self.grow(size)
        if not self.stack:
            self.result = value
            return
        frame = self.stack[-1]
        if isinstance(frame.value, list):
            frame.value.append(value)
        elif frame.key is _OPEN:
            if not isinstance(value, str):
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", None, "found unhashable key", mark
                )
            frame.key = value
        else:
            frame.value[frame.key] = value
            frame.key = _OPEN

    def count_node(self, event: Any) -> None:
        self.nodes += 1
        if self.nodes > self.limits.nodes:
            raise FrontMatterTooLarge(
                f"front matter has more than {self.limits.nodes:,} values (content.max_yaml_nodes)"
            )
        anchor = event.anchor
        if anchor is not None:
            if anchor in self.anchors:
                raise yaml.composer.ComposerError(
                    f"found duplicate anchor {anchor!r}",
                    None,
                    "second occurrence",
                    _mark(event),
                )
            self.anchors[anchor] = (_OPEN, 0)

    def alias(self, event: Any) -> None:
        self.aliases += 1
        if self.aliases > self.limits.aliases:
            raise FrontMatterTooLarge(
                f"front matter has more than {self.limits.aliases:,} aliases "
                "(content.max_yaml_aliases)"
            )
        if event.anchor not in self.anchors:
            raise yaml.composer.ComposerError(
                None, None, f"found undefined alias {event.anchor!r}", _mark(event)
            )
        value, size = self.anchors[event.anchor]
        if value is _OPEN:
            raise yaml.constructor.ConstructorError(
                None, None, "found a recursive alias", _mark(event)
            )
        self.place(value, size, _mark(event))


class FrontMatterHandler(YAMLHandler):
    """python-frontmatter's YAML handler, loading the way digest reads front matter:
    every scalar a string, and within ``limits`` (:func:`load_bounded`)."""

    def __init__(self, limits: YamlLimits | None = None) -> None:
        super().__init__()
        self.limits = limits or YamlLimits()

    def load(self, fm: str, **kwargs: Any) -> Any:
        return load_bounded(fm, self.limits)


def _mark(event: Any) -> Any:
    """Where an event is in the text (libyaml's and PyYAML's marks are alike)."""
    return event.start_mark
