"""Models write Markdown; WhatsApp has its own marks. Every text sent to a customer goes through `whatsapp_text`,
then `whatsapp_parts` when it is longer than one message.

What changes, and what does not:
- `**bold**` and `__bold__` become `*bold*`; `*italic*` and `_italic_` become `_italic_`; `***both***`
  becomes `*_both_*`; `~~struck~~` becomes `~struck~`.
- A heading becomes a bold line; `* item` and `+ item` bullets become `- item`; numbered items stay.
- `[text](url)` becomes `text (url)` (an image, `alt (url)`); a link whose text is its URL stays the URL.
- A table becomes plain lines, its cells joined by " · ", its rule (`|---|`) dropped.
- Code is left exactly as written: fenced blocks (WhatsApp shows ``` as monospace) and `inline code`.
- Known corner cases: a Python dunder name (`__init__`) is a name, not bold; an escaped asterisk (`\\*`)
  stays a visible asterisk (as ∗, which WhatsApp does not read as a mark); a lone `*` or `_` is left
  alone; emoji and other text pass through untouched.
"""

from __future__ import annotations

import re

MAX_MESSAGE = 4096  # characters in one WhatsApp text message

# Private-use characters stand in for the marks already converted, so later rules do not read them again. They
# are chosen per text among those it does not contain: a reply may hold any character, these included.
_PRIVATE_USE = range(0xE000, 0xF900)
_FENCE = re.compile(r"^(```|~~~).*?^\1[^\S\n]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)
_HEADING = re.compile(r"^[^\S\n]{0,3}#{1,6}[^\S\n]+(.+?)[^\S\n]*#*[^\S\n]*$", re.M)
_BULLET = re.compile(r"^([^\S\n]*)[*+][^\S\n]+", re.M)
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
# Every repeat is bounded (a label, a URL, an emphasised span): unbounded, a reply of many unclosed "[a]("
# or "*a " took seconds (each start scanned to the end of the line). No real link or bold runs longer. A URL
# stops at "[" or "(" too: a link whose address holds one is left as written.
_IMAGE = re.compile(r"!\[([^\]\n]{0,500})\]\(\s*<?([^)\s>\[(]{1,2000})>?(?:\s+\"[^\"]{0,500}\")?\s*\)")
_LINK = re.compile(r"\[([^\]\n]{1,500})\]\(\s*<?([^)\s>\[(]{1,2000})>?(?:\s+\"[^\"]{0,500}\")?\s*\)")
_BOLD_ITALIC = re.compile(r"\*\*\*(?=\S)(.{1,1000}?)(?<=\S)\*\*\*")
_BOLD_STARS = re.compile(r"\*\*(?=\S)(.{1,1000}?)(?<=\S)\*\*")
# __bold__ but not a dunder name: the text inside is more than one identifier-like word.
_BOLD_UNDERSCORES = re.compile(r"(?<![\w])__(?=\S)(?![A-Za-z0-9_]{1,200}__(?!\w))(.{1,1000}?)(?<=\S)__(?![\w])")
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=[^\s*])(.{1,1000}?)(?<=[^\s*])\*(?![\w*])")
_STRIKE_TILDES = re.compile(r"~~(?=\S)(.{1,1000}?)(?<=\S)~~")


def whatsapp_text(markdown: str) -> str:
    """The text as WhatsApp shows it: its Markdown turned into WhatsApp's marks, its code untouched."""
    out, position = [], 0
    for block in _FENCE.finditer(markdown):
        out.append(_convert_prose(markdown[position : block.start()]))
        out.append(block.group())
        position = block.end()
    out.append(_convert_prose(markdown[position:]))
    return "".join(out)


def _convert_prose(text: str) -> str:
    """Everything outside fenced blocks; inline code spans are set aside and put back unchanged."""
    present = set(text)
    free = (chr(c) for c in _PRIVATE_USE if chr(c) not in present)
    try:
        bold, italic, strike, opening, closing = (next(free) for _ in range(5))
    except (StopIteration, RuntimeError):
        return text  # every stand-in is taken: send it unconverted rather than wrong
    spans: list[str] = []

    def keep(match: re.Match) -> str:
        spans.append(match.group())
        return f"{opening}{len(spans) - 1}{closing}"

    def heading(match: re.Match) -> str:
        """A heading is a bold line; a heading that was bold already is not bolded twice."""
        inner = re.sub(r"^(\*\*|__)(.+)\1$", r"\2", match.group(1).strip())
        return f"{bold}{inner}{bold}"

    text = _CODE_SPAN.sub(keep, text)
    text = text.replace("\\*", "∗").replace("\\_", "_").replace("\\~", "~").replace("\\#", "#")
    text = _tables(text)
    text = _HEADING.sub(heading, text)
    text = _BULLET.sub(lambda m: f"{m.group(1)}- ", text)
    text = _IMAGE.sub(lambda m: _link(m.group(1), m.group(2)), text)
    text = _LINK.sub(lambda m: _link(m.group(1), m.group(2)), text)
    text = _BOLD_ITALIC.sub(lambda m: f"{bold}{italic}{m.group(1)}{italic}{bold}", text)
    text = _BOLD_STARS.sub(lambda m: f"{bold}{m.group(1)}{bold}", text)
    text = _BOLD_UNDERSCORES.sub(lambda m: f"{bold}{m.group(1)}{bold}", text)
    text = _ITALIC_STAR.sub(lambda m: f"{italic}{m.group(1)}{italic}", text)
    text = _STRIKE_TILDES.sub(lambda m: f"{strike}{m.group(1)}{strike}", text)
    text = text.replace(bold, "*").replace(italic, "_").replace(strike, "~")
    return re.sub(f"{opening}(\\d+){closing}", lambda m: spans[int(m.group(1))], text)


def _link(label: str, url: str) -> str:
    label = label.strip()
    if not label or label == url or label.rstrip("/") == url.rstrip("/"):
        return url
    return f"{label} ({url})"


def _tables(text: str) -> str:
    lines, out = text.split("\n"), []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("|") and stripped.count("|") >= 2:
            if _TABLE_RULE.match(stripped):
                continue
            cells = [cell.strip() for cell in stripped.strip("|").split("|")]
            out.append(" · ".join(cell for cell in cells if cell))
        else:
            out.append(line)
    return "\n".join(out)


# --- Splitting a long reply -----------------------------------------------------------------------------

_URL = re.compile(r"https?://\S+")
_SENTENCE_END = re.compile(r"[.!?…][)\"'»”’]*(?=\s)")


def whatsapp_parts(text: str, limit: int = MAX_MESSAGE) -> list[str]:
    """The text in messages of at most `limit` characters, broken where a person would break it: at a
    paragraph, else after a sentence, else at a space; never inside a word, a URL or a code block unless
    one of them alone is longer than a message."""
    parts: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = _best_cut(rest, limit)
        head, rest = rest[:cut].rstrip(), rest[cut:].lstrip()
        if head:
            parts.append(head)
    if rest or not parts:
        parts.append(rest)
    return parts


def _best_cut(text: str, limit: int) -> int:
    protected = [m.span() for m in _FENCE.finditer(text)] + [m.span() for m in _URL.finditer(text)]

    def allowed(position: int) -> bool:
        return not any(start < position < end for start, end in protected)

    window = text[: limit + 1]
    candidates = [
        [m.end() for m in re.finditer(r"\n[^\S\n]*\n", window)],  # paragraphs
        [m.end() for m in _SENTENCE_END.finditer(window)] + [m.end() for m in re.finditer(r"\n", window)],
        [m.start() for m in re.finditer(r"\s", window)],  # spaces
    ]
    for positions in candidates:
        good = [p for p in positions if 0 < p <= limit and allowed(p)]
        if good:
            return max(good)
    spaces = [m.start() for m in re.finditer(r"\s", window) if 0 < m.start() <= limit]
    return max(spaces) if spaces else limit  # a word, URL or code block longer than a message


# What WhatsApp would show literally: Markdown a conversion left behind (a test set's "no Markdown" check).
_MARKDOWN_LEFT = [
    (re.compile(r"\*\*\S"), "**bold**"),
    (re.compile(r"~~\S"), "~~strike~~"),
    (re.compile(r"^[^\S\n]{0,3}#{1,6}[^\S\n]+\S", re.M), "a # heading"),
    (re.compile(r"\[[^\]\n]{1,500}\]\([^)\s\[(]{1,2000}\)"), "a [text](link)"),
    (re.compile(r"^\s*\|?\s*:?-{3,}:?\s*\|", re.M), "a table rule"),
]


def markdown_left(text: str) -> list[str]:
    """The kinds of Markdown still in `text` once converted for WhatsApp (code spans and blocks aside)."""
    converted = _FENCE.sub("", _CODE_SPAN.sub("", whatsapp_text(text)))
    return [name for pattern, name in _MARKDOWN_LEFT if pattern.search(converted)]
