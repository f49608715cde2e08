"""The pre-send report of `digest check --email`: what a mailbox provider's filter sees.

Each item is a :class:`~digest.email.checks.CheckResult` at warning level (shown, never
failing the run on its own): the size as sent, the largest images by bytes (when the link
check fetched them), the text-to-image ratio, the link count, spam-trigger phrases in the
subject and the postal address in the footer. The List-Unsubscribe and List-Unsubscribe-Post
headers are the ``list-headers`` check's (digest/email/checks.py).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from lxml import html as lxml_html  # type: ignore[import-untyped]

from digest.email.checks import CheckResult

if TYPE_CHECKING:
    from digest.email.message import ComposedEmail

# Phrases filters and readers associate with spam, matched as words in the subject.
SPAM_PHRASES = (
    "free",
    "act now",
    "limited time",
    "urgent",
    "winner",
    "you have been selected",
    "click here",
    "risk-free",
    "risk free",
    "guarantee",
    "100%",
    "cash",
    "earn money",
    "no cost",
    "order now",
    "buy now",
    "special promotion",
    "congratulations",
)
# Below this many characters of text per image, an email reads as an image ad.
TEXT_PER_IMAGE = 400


def _text_and_counts(html: str) -> tuple[str, int, int]:
    tree = lxml_html.document_fromstring(html.encode("utf-8"))
    for junk in tree.xpath("//style|//script|//head"):
        junk.drop_tree()
    text = " ".join(tree.text_content().split())
    links = {a.get("href") for a in tree.xpath("//a[@href]")}
    return text, len(tree.xpath("//img")), len(links)


def spam_phrases(subject: str) -> list[str]:
    """The trigger phrases in ``subject``, plus shouting: "!!" and words in capitals."""
    lowered = subject.lower()
    found = [p for p in SPAM_PHRASES if re.search(rf"(?<!\w){re.escape(p)}(?!\w)", lowered)]
    if "!!" in subject:
        found.append("!!")
    found += [w for w in re.findall(r"\b[A-Z]{4,}\b", subject)]
    return found


def presend_checks(
    composed: ComposedEmail, postal_address: str, image_bytes: dict[str, int] | None
) -> list[CheckResult]:
    """The report's items; ``image_bytes`` is None when images were not fetched."""
    text, images, links = _text_and_counts(composed.html)
    size = composed.sent_size or composed.html_size
    items = [CheckResult("sent-size", True, f"{size / 1024:.1f} KB HTML part as sent")]
    if image_bytes is None:
        unknown = "images not fetched (the link check did not run)"
        items.append(CheckResult("image-bytes", True, unknown))
    elif image_bytes:
        largest = sorted(image_bytes.items(), key=lambda kv: -kv[1])[:3]
        listed = ", ".join(f"{url} {n / 1024:.0f} KB" for url, n in largest)
        items.append(CheckResult("image-bytes", True, f"largest images: {listed}"))
    else:
        items.append(CheckResult("image-bytes", True, "no image sizes known"))
    per_image = len(text) // images if images else None
    ratio = f"{len(text)} characters of text, {images} images"
    if per_image is not None and per_image < TEXT_PER_IMAGE:
        items.append(
            CheckResult(
                "text-ratio",
                False,
                ratio,
                (f"{per_image} characters per image",),
                f"keep at least {TEXT_PER_IMAGE} characters of text per image",
                "warning",
            )
        )
    else:
        items.append(CheckResult("text-ratio", True, ratio))
    items.append(CheckResult("link-count", True, f"{links} distinct links"))
    found = spam_phrases(composed.subject)
    items.append(
        CheckResult(
            "subject-words",
            not found,
            "subject has no spam-trigger phrases" if not found else "subject: spam triggers",
            tuple(f"'{p}'" for p in found),
            "reword the subject" if found else "",
            "warning",
        )
    )
    present = bool(postal_address) and " ".join(postal_address.split()) in " ".join(
        composed.text.split()
    )
    items.append(
        CheckResult(
            "postal-address",
            present,
            "the postal address is in the footer" if present else "no postal address",
            () if present else ("anti-spam laws (CAN-SPAM) require a physical address",),
            "" if present else "set sender.postal_address in config.yaml",
            "warning",
        )
    )
    return items
