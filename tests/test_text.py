"""Plain text from Markdown and HTML, and the excerpt rules: one test per rule, with the
inputs that pattern-stripping gets wrong."""

from __future__ import annotations

import pytest

from digest.content.text import (
    ExcerptCleaner,
    clean_text,
    decode_entities,
    excerpt_from_body,
    markdown_blocks,
    similarity,
    sketch,
    tidy_excerpt,
)

# --------------------------------------------------------------------------- parsing


def test_identifiers_with_underscores_survive() -> None:
    assert clean_text("Call my_var_name from __init__ and _private.") == (
        "Call my_var_name from __init__ and _private."
    )
    # Real emphasis is still just text.
    assert clean_text("This is *really* __important__ to _us_ all") == (
        "This is really __important__ to _us_ all"
    )
    assert clean_text("Say **very loudly** now") == "Say very loudly now"


def test_angle_brackets_in_prose_are_text() -> None:
    assert clean_text("if a < b and c > d then stop") == "if a < b and c > d then stop"
    assert clean_text("x <= y, and 3 > 2") == "x <= y, and 3 > 2"


def test_html_tags_go_and_their_text_stays() -> None:
    assert clean_text('A <b>bold</b> claim, <a href="https://x.example">a link</a>.') == (
        "A bold claim, a link."
    )
    assert clean_text("<p>One</p><figure><img src=x><figcaption>Credit</figcaption></figure>") == (
        "One"
    )
    assert clean_text("<script>alert(1)</script><p>Safe</p>") == "Safe"


def test_links_nested_or_not_keep_only_their_text() -> None:
    assert clean_text("See [the guide](https://x.example/g) now") == "See the guide now"
    assert clean_text("[outer [inner](https://a.example) text](https://b.example)") == (
        "outer inner text"
    )
    assert clean_text("![a cover](https://x.example/c.jpg) Caption-free") == "Caption-free"


def test_code_spans_are_kept_and_code_blocks_dropped() -> None:
    assert clean_text("Use `a_b < c` and `__init__` here") == "Use a_b < c and __init__ here"
    assert clean_text("Intro\n\n```python\nx = 1\n```\n\nAfter") == "Intro After"


def test_entities_are_decoded_once_even_when_escaped_twice() -> None:
    assert decode_entities("Anthropic&#8217;s Mythos") == "Anthropic\u2019s Mythos"
    assert decode_entities("Tom &amp;amp; Jerry &amp;#8217;") == "Tom & Jerry \u2019"
    assert decode_entities("AT&T and a & b") == "AT&T and a & b"
    assert clean_text("Anthropic&#8217;s &lt;b&gt; tag") == "Anthropic\u2019s <b> tag"


def test_html_blocks_inside_markdown_are_parsed() -> None:
    blocks = markdown_blocks(
        "<div><h2>Head</h2><p>First &amp; <em>second</em></p><nav>Home News</nav></div>\n\n"
        "A paragraph.",
    )
    assert [(b.kind, b.text) for b in blocks] == [
        ("h", "Head"),
        ("p", "First & second"),
        ("p", "A paragraph."),
    ]


def test_scraped_indentation_is_not_code() -> None:
    body = "        Indented prose that a scraper left here with enough words to count.\n"
    assert [b.kind for b in markdown_blocks(body, dedent=True)] == ["p"]
    assert [b.kind for b in markdown_blocks(body)] == ["code"]


# --------------------------------------------------------------------------- excerpt rules


def _clean(raw: str, title: str = "A Title That Is Long Enough") -> tuple[str, list[str]]:
    cleaned = ExcerptCleaner().tidy(raw, title)
    return cleaned.text, [r.rule for r in cleaned.removed]


def test_rule_crumbs_before_a_repeated_title() -> None:
    text, rules = _clean(
        "Tech Home Tech Services & Software Operating Systems Mobile OS Android Use Android "
        "Auto? How to limit what Gemini learns Google's assistant knows a lot about your car.",
        "Use Android Auto? How to limit what Gemini learns",
    )
    assert text == "Google's assistant knows a lot about your car."
    assert rules == ["crumbs"]


def test_rule_crumbs_without_a_title_leave_no_excerpt() -> None:
    assert _clean("Innovation Home Innovation Artificial Intelligence Some words here") == (
        "",
        ["crumbs"],
    )


def test_rule_repeated_title_even_when_cut_mid_word() -> None:
    text, rules = _clean(
        "In Brief Posted: 12:05 PM PDT · June 28, 2026 Image Credits:Bloomberg / Getty Images "
        "Anthony Ha Ford rehires gray beard engineers after AI falls sho...",
        "Ford rehires ‘gray beard’ engineers after AI falls short",
    )
    assert (text, rules) == ("", ["repeated-title", "too-short"])


def test_rule_title_at_the_start_of_a_sentence_is_kept() -> None:
    text, rules = _clean(
        "Notion Mail is shutting down next month, the company said on Tuesday.",
        "Notion Mail is shutting down",
    )
    assert text == "Notion Mail is shutting down next month, the company said on Tuesday."
    assert rules == []


def test_rule_posted_stamp() -> None:
    text, rules = _clean("Posted: 4:41 PM PDT · March 30, 2026 Most workers would try it.")
    assert (text, rules) == ("Most workers would try it.", ["posted-stamp"])


def test_rule_byline_with_date_ends_the_dek() -> None:
    text, rules = _clean(
        "It suspended all access after an order. By Mariella Moon June 26, 2026 9:54 pm EST "
        "Michael M. Santiago/Getty Images The US government has given…"
    )
    assert text == "It suspended all access after an order."
    assert rules == ["byline"]


def test_rule_byline_with_role_and_time() -> None:
    text, rules = _clean(
        "The price increases result from memory chip costs. Lance Whitney, "
        "ContributorContributor June 25, 2026 at 1:31 p.m. PT Kerry Wan/ZDNETFollow ZD"
    )
    assert text == "The price increases result from memory chip costs."
    assert rules == ["byline"]


def test_rule_byline_cut_off_at_the_end() -> None:
    assert _clean("It's a spicy start for the company's move into chips. By Anna Washenko...") == (
        "It's a spicy start for the company's move into chips.",
        ["byline"],
    )


def test_rule_image_credit() -> None:
    text, rules = _clean(
        "Image Credits: Pavlo Gonchar/SOPA Images / Getty Images Shares dropped almost 20% on "
        "Wednesday after the earnings call."
    )
    assert text == "Shares dropped almost 20% on Wednesday after the earnings call."
    assert rules == ["image-credit"]


def test_rule_caption_and_credit() -> None:
    text, rules = _clean(
        "OpenAI CEO Sam Altman. | Bloomberg via Getty Images OpenAI says its models breached "
        "a platform during tests."
    )
    assert text == "OpenAI says its models breached a platform during tests."
    assert rules == ["image-credit"]


def test_rule_dateline() -> None:
    text, rules = _clean(
        "New partnership brings detection to calls. SAN FRANCISCO, June 29, 2026 — Scam.ai "
        "today announced a partnership."
    )
    assert (
        text == "New partnership brings detection to calls. Scam.ai today announced a partnership."
    )
    assert rules == ["dateline"]


def test_rule_boilerplate_sentences() -> None:
    text, rules = _clean(
        "This story originally appeared in The Algorithm, our newsletter. To get stories like "
        "this in your inbox first, sign up here. Imagine a colleague that never sleeps."
    )
    assert text == "Imagine a colleague that never sleeps."
    assert rules == ["boilerplate", "boilerplate"]


def test_rule_dangling_author_name() -> None:
    text, rules = _clean(
        "Here's how the new speaker fared against the others so far. Maria Diaz,",
    )
    assert (text, rules) == (
        "Here's how the new speaker fared against the others so far.",
        ["trailing-name"],
    )


def test_rule_site_patterns_from_config() -> None:
    cleaner = ExcerptCleaner([r"\bSponsored by \w+\.?"])
    cleaned = cleaner.tidy("Sponsored by Acme. The real summary of the story is here.", "T")
    assert cleaned.text == "The real summary of the story is here."
    assert [(r.rule, r.text) for r in cleaned.removed] == [("pattern", "Sponsored by Acme.")]
    assert cleaner.fingerprint != ExcerptCleaner().fingerprint  # cached excerpts are redone


def test_cut_excerpts_end_on_a_whole_word() -> None:
    assert tidy_excerpt("One two three four five six sev...", "T") == "One two three four five six…"


def test_body_excerpt_skips_bylines_dates_and_credits_between_blocks() -> None:
    body = (
        "News\n\nCalifornia launches a tracker\n\nIt will be updated monthly.\n\n"
        "By Mariella Moon\n\nJune 26, 2026 5:56 am EST\n\nBlackjack3d/Getty Images\n\n"
        "California has launched a new portal, which tracks job losses in the state.\n"
    )
    assert excerpt_from_body(body, "California launches a tracker") == (
        "It will be updated monthly. California has launched a new portal, which tracks job "
        "losses in the state."
    )


def test_body_disclosure_paragraph_is_dropped_whole() -> None:
    body = (
        "Why you can trust us: we test things independently. If you buy through our links, we "
        "may earn a commission. We gather data from the best sources.\n\n"
        "The tablet is down 39% in a deal that has dropped its price to the lowest yet.\n"
    )
    assert excerpt_from_body(body, "T") == (
        "The tablet is down 39% in a deal that has dropped its price to the lowest yet."
    )


# --------------------------------------------------------------------------- sketches


def _words(text: str) -> list[str]:
    return text.casefold().split()


TEMPLATE = (
    "The field of {topic} continues to evolve at an unprecedented pace. Recent developments "
    "have shown remarkable progress in both theoretical understanding and practical "
    "applications. Researchers and practitioners are finding new ways to leverage these "
    "technologies for real world solutions across many industries and sectors today, and "
    "companies are implementing them to streamline operations and improve decisions."
)


def test_sketches_find_a_template_with_the_topic_swapped() -> None:
    one = sketch(_words(TEMPLATE.format(topic="computer vision")))
    two = sketch(_words(TEMPLATE.format(topic="robotics")))
    assert similarity(one, two) >= 0.8
    other = sketch(
        _words(
            "Ford executives said they have hired 350 veteran engineers, some of them former "
            "employees, after artificial intelligence and automated systems failed to deliver "
            "the desired quality level on the production line this spring, a report says, "
            "and the company expects more hiring next year."
        )
    )
    assert similarity(one, other) < 0.1
    assert similarity(one, one) == 1.0


def test_short_bodies_have_no_sketch() -> None:
    assert sketch(_words("too short to judge")) == ()
    assert similarity((), (1, 2, 3)) == 0.0


@pytest.mark.parametrize("size", [1, 8, 32])
def test_sketch_size_bounds_the_sketch(size: int) -> None:
    assert len(sketch(_words(TEMPLATE.format(topic="x")), size)) == size


def test_rule_agency_credit_in_parentheses_or_bare() -> None:
    text, rules = _clean(
        "The game is this Sunday. (Li Jing/Xinhua via Getty Images) Here is how to watch it."
    )
    assert (text, rules) == ("The game is this Sunday. Here is how to watch it.", ["image-credit"])
    text, rules = _clean(
        "Experts say to put guardrails in place first. Jane Doe JuSun/Getty ImagesThe march "
        "of AI continues"
    )
    assert (text, rules) == ("Experts say to put guardrails in place first.", ["image-credit"])
    # A news agency in prose is not a credit.
    assert _clean("Shares fell 5%, according to Reuters, after the report on Monday.") == (
        "Shares fell 5%, according to Reuters, after the report on Monday.",
        [],
    )


def test_body_series_label_and_title_paragraph_are_skipped() -> None:
    body = (
        "Tech Part of a Special Feature: Security in the New AI Era\n\n"
        "Home\n\nAI threats will get worse\n\n"
        "Don't wait until deepfakes and malware overwhelm your organization. Act now.\n"
    )
    assert excerpt_from_body(body, "AI threats will get worse") == (
        "Don't wait until deepfakes and malware overwhelm your organization. Act now."
    )
