"""User text inside Streamlit Markdown: shown as typed, never as a link, an image or formatting.

Streamlit renders Markdown in ``st.markdown``, ``st.caption``, the ``st.error`` / ``info`` /
``warning`` / ``success`` boxes, headers, image captions, spinner and progress texts and
widget labels. A file name, model name, note, comment, operator or SSO name, or a value from
the URL, put there as it is, is Markdown too: ``[Session expired](https://evil.example)``
became a working link and ``![t](https://evil.example/x.png)`` a remote image (a tracking
beacon) on an admin's screen. :func:`md` makes such text literal; our own fixed text and
numbers need nothing.

Backslash escapes alone are not enough in Streamlit's renderer (checked in its 1.67 frontend
bundle): bare URLs, e-mail addresses and ``:material_x:`` / ``:streamlit:`` / emoji short
codes are found by regular expressions over the text *after* escapes are decoded, and so are
the ``->`` / ``--`` arrows and dashes. :func:`md` therefore also puts an invisible WORD JOINER
(U+2060) where those patterns would match: after a ':' that is followed by text (``https:⁠//``,
``:⁠material…``) and between ``www`` and its dot.

E-mail addresses are left as they are: Streamlit shows one as a ``mailto:`` link whose text is
the address itself (nothing deceptive, nothing fetched), and account, operator and SSO names
often are addresses, read on screen and copied into ``padim users`` commands, where an
invisible character would make another name.
"""

from __future__ import annotations

import re

#: Invisible, not a line-break opportunity, and not a character that Streamlit's autolink and
#: short-code patterns accept: it splits them without changing what is shown.
WORD_JOINER = "\u2060"
#: Every character Markdown (CommonMark, GFM, Streamlit's directives and math) gives a
#: meaning to; each gets a backslash. ``&`` too: ``&#91;`` would decode to a '['.
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!:<>|~$&])")
_BREAKS = (
    re.compile(r"(?<=:)(?=\S)"),                          # https://, :material_x:, :smile:, :red[
    re.compile(r"(?<=www)(?=\.)", re.IGNORECASE),         # www.evil.example
)
#: Streamlit turns these, between spaces, into arrows and a dash (→, ←, ↔, —, ≥, ≤, ≈).
_PAIR = re.compile(r"(?:(?<=\s)|^)(<->|->|<-|--|>=|<=|~=)(?=\s|$)")
_LINE_BREAKS = re.compile(r"[\r\n\t\v\f]")
_EDGE_SPACES = re.compile(r"^ +| +$")


def md(text: object) -> str:
    """``text`` (any value, as ``str()`` writes it) for a Markdown string, so that Streamlit
    shows it literally: Markdown's special characters backslash-escaped, no link, image,
    URL autolink, directive, icon or emoji, on one line (line breaks and tabs become
    spaces), and spaces at either end kept as spaces (not a code block, not an emphasis
    that stops working)."""
    value = _LINE_BREAKS.sub(" ", str(text))
    value = _PAIR.sub(lambda m: WORD_JOINER.join(m.group(1)), value)
    for pattern in _BREAKS:
        value = pattern.sub(WORD_JOINER, value)
    value = _SPECIAL.sub(r"\\\1", value)
    return _EDGE_SPACES.sub(lambda m: "&#32;" * len(m.group(0)), value)


def code(text: object) -> str:
    """``text`` as an inline code span: shown verbatim (for a command to copy), whatever
    backticks it holds."""
    value = _LINE_BREAKS.sub(" ", str(text))
    fence = "`" * (max((len(run) for run in re.findall(r"`+", value)), default=0) + 1)
    return f"{fence} {value} {fence}"


_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")


def as_shown(markdown: str) -> str:
    """What the browser shows of Markdown text made with :func:`md` (its escapes, word
    joiners and edge spaces decoded): for tests and messages compared with plain text."""
    return _ESCAPED.sub(r"\1", markdown.replace("&#32;", " ")).replace(WORD_JOINER, "")


__all__ = ["WORD_JOINER", "as_shown", "code", "md"]
