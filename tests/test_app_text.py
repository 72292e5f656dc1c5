"""``inspector_ui.text.md``: typed text (file, model and operator names, comments, notes,
values from a link) put into the app's Markdown is shown literally.

Why: History rendered an operator's upload ``[Session expired](https://evil.example/login).png``
as a working link and ``![t](https://evil.example/track.png).png`` as a remote image (a
tracking beacon) on an admin's screen, and ``?model=[…](https://evil.example)`` put a link in
an error box. The helper's output was checked in real Chromium against Streamlit 1.67 (no
``<a>``, ``<img>``, icon, colour, emphasis or maths from any of the texts below); these tests
pin what makes that so.
"""

from __future__ import annotations

import re

import pytest

from inspector_ui.text import WORD_JOINER, as_shown, code, md

HOSTILE = [
    "[Session expired - sign in again](https://evil.example/login).png",
    "![t](https://evil.example/track.png).png",
    "<img src=x onerror=alert(1)>.png",
    "[click me](javascript:alert(document.cookie)).png",
    "<https://evil.example/auto>",
    "see https://evil.example/a, www.evil.example and x@evil.example",
    ":red[red] :material/home: :streamlit: :smile: $x^2$ ~~s~~ *i* _u_ `c` {#id}",
    "# heading",
    "1. list",
    "- item",
    "> quote | table |",
    "a -> b -- c <= d",
    "&#91;x&#93;&#40;https&#58;//evil.example&#41;",
    "[x][r]\n\n[r]: https://evil.example/ref",
    "    four spaces ",
    "C:\\Users\\x_y\\z_w.png",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_every_markdown_character_is_escaped(text: str) -> None:
    out = md(text)
    # Outside the backslash escapes and the &#32; of edge spaces, no special character is
    # left to start a link, image, emphasis, code, HTML, entity, heading, list or directive.
    bare = re.sub(r"\\.|&#32;", "", out)
    assert not set(bare) & set("\\`*_{}[]()#+-.!:<>|~$&"), (text, out)
    assert "\n" not in out and "\r" not in out


@pytest.mark.parametrize("text", HOSTILE)
def test_what_is_shown_is_the_text_itself(text: str) -> None:
    """Only line breaks become spaces; nothing is dropped or added (the word joiners are
    invisible)."""
    assert as_shown(md(text)) == re.sub(r"[\r\n\t]", " ", text)


def test_autolinks_and_short_codes_are_split_where_streamlit_looks_for_them() -> None:
    """Streamlit finds bare URLs and ``:material_x:`` / emoji short codes with regular
    expressions over the text after escapes are decoded, so a backslash alone left
    ``https\\://evil.example`` a working link. E-mail addresses stay as typed (a ``mailto:``
    link that shows its own address; names are often addresses, copied from the screen)."""
    shown = md(HOSTILE[5]).replace("\\", "")
    assert "https://" not in shown and f"https:{WORD_JOINER}//" in shown
    assert f"www{WORD_JOINER}." in shown and " x@evil.example" in shown
    shown = md(HOSTILE[6]).replace("\\", "")
    assert not re.search(r":(material/|material_|streamlit:|smile:|red\[)", shown)
    assert "->" not in md("a -> b").replace("\\", "")       # Streamlit draws it as an arrow


def test_the_exact_form_of_a_hostile_file_name() -> None:
    assert md("[Session expired](https://evil.example/login).png") == (
        "\\[Session expired\\]\\(https\\:" + WORD_JOINER + "//evil\\.example/login\\)\\.png")


def test_plain_names_and_refs_stay_as_they_are() -> None:
    """A model ref is copied into commands (``padim predict --model demo@3``): no escape or
    invisible character where none is needed."""
    for text in ("demo@3", "transistor line 3@12", "plates B", "otto", "scan 7"):
        assert md(text) == text


def test_code_spans_hold_any_backticks() -> None:
    assert code("padim users add a`b --sso") == "`` padim users add a`b --sso ``"
    assert code("x") == "` x `"
