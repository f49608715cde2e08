"""The template loader: a user's folder and the built-in one, every file read inside them.

jinja2's ``FileSystemLoader`` opens whatever a name resolves to, symbolic links included;
this one reads each template through :func:`digest.content.files.read_inside`, so a link
from the templates folder to ``/proc/self/environ`` (or a FIFO) is refused with its name,
never rendered into an email.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable

import jinja2
from jinja2.loaders import split_template_path

from digest.content.files import read_inside


class InsideLoader(jinja2.FileSystemLoader):
    """A ``FileSystemLoader`` that refuses any template outside its folder."""

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        pieces = split_template_path(template)  # refuses ".." as jinja2 does
        for folder in self.searchpath:
            filename = posixpath.join(folder, *pieces)
            if os.path.lexists(filename):
                break
        else:
            raise jinja2.TemplateNotFound(template)
        source = read_inside(folder, filename).decode(self.encoding)
        mtime = os.path.getmtime(filename)

        def uptodate() -> bool:
            try:
                return os.path.getmtime(filename) == mtime
            except OSError:
                return False

        return source, os.path.normpath(filename), uptodate
