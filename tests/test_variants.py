"""Preference variants assembled from parts equal the same variant composed from scratch."""

from __future__ import annotations

import shutil
from dataclasses import fields, replace
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.config import Config, load_config
from digest.content import pipeline
from digest.content.intro import Intro, load_intro
from digest.content.select import Section, Selection
from digest.email.compose import compose
from digest.email.message import ComposedEmail
from digest.email.variants import VariantAssembler

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
FIELDS = [f.name for f in fields(ComposedEmail)]


def _assert_same(assembled: ComposedEmail, whole: ComposedEmail) -> None:
    for name in FIELDS:  # field by field, so that a failure names the field
        assert getattr(assembled, name) == getattr(whole, name), name
    assert assembled == whole


def _site(tmp: Path, *, budget_kb: int = 100) -> tuple[Config, Selection, Intro | None]:
    """The sample site's 2026-W47, or with a small budget all its weeks in one issue."""
    site = tmp / "site"
    if not site.exists():
        shutil.copytree(ROOT / "content", site / "content")
        text = (ROOT / "config.yaml").read_text()
        if budget_kb != 100:
            text = text.replace("size_budget_kb: 100", f"size_budget_kb: {budget_kb}")
            text = text.replace("per_category: 3", "per_category: null")
            text = text.replace("total: 20", "total: 1000")
        (site / "config.yaml").write_text(text)
    config = load_config(site / "config.yaml")
    if budget_kb != 100:
        loaded = pipeline.load_and_select(
            config, NOW, since=date(2026, 9, 1), until=date(2026, 11, 22)
        )
    else:
        loaded = pipeline.load_and_select(config, NOW, week="2026-W47")
    selection = loaded.selection
    return config, selection, load_intro(config, selection.issue_id)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Selection, Intro | None]:
    return _site(tmp_path_factory.mktemp("variants"))


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Selection, Intro | None]:
    """A budget so small that most variants are trimmed (fewer posts, compact cards)."""
    return _site(tmp_path_factory.mktemp("tight"), budget_kb=20)


def _names(selection: Selection) -> list[str]:
    return [s.name for s in selection.sections]


SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.slow  # seconds of work even alone: outside the fast lane
@SETTINGS
@given(data=st.data())
def test_random_preference_sets_equal_composing_from_scratch(
    sample: tuple[Config, Selection, Intro | None], data: st.DataObject
) -> None:
    config, selection, intro = sample
    assert intro is not None  # the sample issue has an intro: it is part of the lead
    assembler = VariantAssembler(config, selection, now=NOW, intro=intro)
    for _ in range(3):
        chosen = data.draw(st.sets(st.sampled_from(_names(selection)), min_size=1))
        whole = compose(config, selection.only(chosen), now=NOW, intro=intro)
        _assert_same(assembler.variant(sorted(chosen)), whole)
    assert assembler.unsupported is None  # assembled from parts, not composed whole


@pytest.mark.slow  # seconds of work even alone: outside the fast lane
@SETTINGS
@given(data=st.data())
def test_trimmed_variants_are_trimmed_as_composing_them_alone_would(
    tight: tuple[Config, Selection, Intro | None], data: st.DataObject
) -> None:
    config, selection, _ = tight
    assembler = VariantAssembler(config, selection, now=NOW, intro=None)
    for _ in range(3):
        chosen = data.draw(st.sets(st.sampled_from(_names(selection)), min_size=1))
        whole = compose(config, selection.only(chosen), now=NOW)
        _assert_same(assembler.variant(sorted(chosen)), whole)
    assert assembler.unsupported is None


def test_the_tight_budget_does_trim(tight: tuple[Config, Selection, Intro | None]) -> None:
    """The test above can fail: variants there differ in how they are trimmed."""
    config, selection, _ = tight
    assembler = VariantAssembler(config, selection, now=NOW)
    trims = {assembler.variant(_names(selection)[:k]).trimmed for k in (1, 3, 6)}
    assert len(trims) == 3
    assert any("compact_cards" in line for trim in trims for line in trim)


AWKWARD = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\u2028\u2029"),
    min_size=1,
    max_size=40,
).filter(lambda t: t.strip())


@pytest.mark.slow  # seconds of work even alone: outside the fast lane
@SETTINGS
@given(titles=st.lists(AWKWARD, min_size=6, max_size=6), data=st.data())
def test_any_titles_in_subject_and_preheader_are_filled_as_composed(
    sample: tuple[Config, Selection, Intro | None], titles: list[str], data: st.DataObject
) -> None:
    """The subject (top title) and preheader (titles) vary per variant and are filled into
    the rendered parts: quotes, ampersands, angle brackets and any letters come out the
    same as composing the variant whole (in <title>, the preheader and MJML's aria-label)."""
    config, selection, _ = sample
    it = iter(titles)
    sections = tuple(
        replace(s, posts=tuple(replace(p, title=next(it)) for p in s.posts))
        for s in selection.sections
    )
    retitled = replace(selection, sections=sections)
    assembler = VariantAssembler(config, retitled, now=NOW)
    chosen = data.draw(st.sets(st.sampled_from(_names(retitled)), min_size=1))
    whole = compose(config, retitled.only(chosen), now=NOW)
    _assert_same(assembler.variant(sorted(chosen)), whole)
    assert assembler.unsupported is None


def test_the_subject_is_escaped_in_text_and_in_attributes(
    sample: tuple[Config, Selection, Intro | None],
) -> None:
    config, selection, _ = sample
    first = selection.sections[0]
    post = replace(first.posts[0], title='Fish & "chips" <now>')
    retitled = replace(selection, sections=(replace(first, posts=(post,)), *selection.sections[1:]))
    html = compose(config, retitled, now=NOW).html
    assert '<title>Field Notes Weekly: Fish &amp; "chips" &lt;now&gt; and 5 more</title>' in html
    assert 'aria-label="Field Notes Weekly: Fish &amp; &quot;chips&quot; &lt;now&gt; and 5' in html
    assert "[[digest-issue:" not in html


def test_a_template_that_cannot_be_cut_is_composed_whole(tmp_path: Path) -> None:
    """A template that puts the sections in their own wrapper after the footer: the parts
    do not line up, so each variant is composed whole (and still equal)."""
    config, selection, _ = _site(tmp_path)
    templates = tmp_path / "site" / "templates"
    templates.mkdir()
    builtin = (ROOT / "templates" / "email.mjml.j2").read_text()
    moved = builtin.replace(
        '{%- for section in sections %}\n{% include "partials/section.mjml.j2" %}\n{%- endfor %}\n',
        "",
    ).replace(
        '{% include "partials/footer.mjml.j2" %}\n',
        '{% include "partials/footer.mjml.j2" %}\n    <mj-wrapper>\n'
        '{%- for section in sections %}\n{% include "partials/section.mjml.j2" %}\n'
        "{%- endfor %}\n    </mj-wrapper>\n",
    )
    assert moved != builtin
    (templates / "email.mjml.j2").write_text(moved)
    config = config.model_copy(
        update={"email": config.email.model_copy(update={"templates_dir": templates})}
    )
    assembler = VariantAssembler(config, selection, now=NOW)
    chosen = _names(selection)[1:3]
    _assert_same(assembler.variant(chosen), compose(config, selection.only(chosen), now=NOW))
    assert assembler.unsupported is not None


@pytest.mark.corpus
@pytest.mark.slow
def test_busiest_corpus_week_variants(corpus_dir: Path, tmp_path: Path) -> None:
    """The real busiest week (198 posts, trimmed to the 100 KB budget); sections whose
    posts are all machine-made near-duplicates of posts elsewhere come out empty."""
    import random

    (tmp_path / "posts").symlink_to(corpus_dir)
    shutil.copy(ROOT / "tests" / "data" / "corpus-config.yaml", tmp_path / "config.yaml")
    config = load_config(tmp_path / "config.yaml")
    selection = pipeline.load_and_select(config, NOW, week="2026-W02").selection
    assert len(selection.sections) >= 5
    assembler = VariantAssembler(config, selection, now=NOW)
    rng = random.Random(14)
    names = _names(selection)
    for _ in range(6):
        chosen = rng.sample(names, rng.randint(1, 5))
        _assert_same(assembler.variant(chosen), compose(config, selection.only(chosen), now=NOW))
    assert assembler.unsupported is None


@pytest.mark.slow  # seconds of work even alone: outside the fast lane
def test_sections_are_rendered_once_per_plan(
    sample: tuple[Config, Selection, Intro | None],
) -> None:
    """Parts are reused: twenty variants need no more renders than the first few."""
    config, selection, intro = sample
    assembler = VariantAssembler(config, selection, now=NOW, intro=intro)
    names = _names(selection)
    for k in range(1, len(names) + 1):
        assembler.variant(names[:k])
    renders = (len(assembler._sections), len(assembler._frames))
    for k in range(1, len(names) + 1):
        assembler.variant(names[-k:])
        assembler.variant(names[k - 1 : k])
    assert (len(assembler._sections), len(assembler._frames)) == renders
    assert isinstance(selection.sections[0], Section)


def test_a_picture_shown_in_an_earlier_section_is_dropped_as_composing_alone_would(
    sample: tuple[Config, Selection, Intro | None],
) -> None:
    """Covers are shown once per email: whether a section's card keeps its picture depends
    on the sections before it in that variant."""
    config, selection, _ = sample
    cover = "https://images.example.com/shared-cover.jpg?w=1200&h=600"
    sections = tuple(
        replace(s, posts=tuple(replace(p, cover_image=cover) for p in s.posts))
        if i in (0, 2)
        else s
        for i, s in enumerate(selection.sections)
    )
    shared = replace(selection, sections=sections)
    assembler = VariantAssembler(config, shared, now=NOW)
    names = _names(shared)
    for chosen in ([names[0], names[2]], [names[2]], [names[1], names[2]], names):
        whole = compose(config, shared.only(chosen), now=NOW)
        _assert_same(assembler.variant(chosen), whole)
    assert assembler.unsupported is None
    alone, after = assembler.variant([names[2]]), assembler.variant([names[0], names[2]])
    # Both show the picture once, though the second has two sections with it.
    assert alone.html.count("shared-cover") == after.html.count("shared-cover") > 0
