"""What a customer reads on WhatsApp: Markdown turned into WhatsApp's marks, long replies split where a person
would split them. Known cases, then properties that hold for any text hypothesis can find."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conversations.whatsapp.formatting import MAX_MESSAGE, whatsapp_parts, whatsapp_text


@pytest.mark.parametrize(
    ("markdown", "whatsapp"),
    [
        ("**bold**", "*bold*"),
        ("__bold too__", "*bold too*"),
        ("*italic*", "_italic_"),
        ("_italic_", "_italic_"),
        ("***both***", "*_both_*"),
        ("~~struck~~", "~struck~"),
        ("# Opening hours", "*Opening hours*"),
        ("## **Already bold**", "*Already bold*"),
        ("### Sub *with italics*", "*Sub _with italics_*"),
        ("* one\n+ two\n- three\n1. four", "- one\n- two\n- three\n1. four"),
        ("See [our shop](https://shop.example/bikes).", "See our shop (https://shop.example/bikes)."),
        ("![a bike](https://shop.example/b.png)", "a bike (https://shop.example/b.png)"),
        ("[https://shop.example](https://shop.example)", "https://shop.example"),
        ("| Size | Price |\n|:---|---:|\n| M | 10 € |\n| L | 12 € |", "Size · Price\nM · 10 €\nL · 12 €"),
        ("Call `__init__` or `**x**`", "Call `__init__` or `**x**`"),  # inline code untouched
        ("```python\nprint('**hi**')\n```", "```python\nprint('**hi**')\n```"),  # fenced code untouched
        ("The __init__ method", "The __init__ method"),  # a dunder name is a name
        ("snake_case_name and file_name.txt", "snake_case_name and file_name.txt"),
        ("2 * 3 * 4 = 24", "2 * 3 * 4 = 24"),  # lone asterisks are arithmetic
        ("a*b*c", "a*b*c"),
        ("\\*not italic\\*", "∗not italic∗"),  # an escaped asterisk stays visible
        ("Great 👍 **thanks** 🚲", "Great 👍 *thanks* 🚲"),
        ("**Price:** 10 € — *today only*", "*Price:* 10 € — _today only_"),
    ],
)
def test_known_markdown_reads_right_on_whatsapp(markdown, whatsapp):
    assert whatsapp_text(markdown) == whatsapp


plain = st.text(st.characters(blacklist_characters="*_~`#[]|!\\+-", blacklist_categories=("Cs",)), max_size=300)
words = st.text(st.characters(whitelist_categories=("L", "N")), min_size=1, max_size=12)


@given(plain)
def test_text_without_marks_is_sent_as_it_is(text):
    assert whatsapp_text(text) == text


def test_characters_the_converter_uses_internally_pass_through_unchanged():
    """It marks converted text with private-use characters; a reply that holds those very characters
    (emoji fonts and some keyboards use them) must still come out as written."""
    text = "\ue000 \ue001 \ue010" + "0\ue011 and **bold** with `code`"
    assert whatsapp_text(text) == "\ue000 \ue001 \ue0100\ue011 and *bold* with `code`"


@given(st.lists(words, min_size=1, max_size=6))
def test_no_markdown_bold_is_left_for_whatsapp_to_show_as_asterisks(chunk):
    text = "**" + " ".join(chunk) + "**"
    converted = whatsapp_text(text)
    assert "**" not in converted and converted == "*" + " ".join(chunk) + "*"


@given(st.text(st.characters(blacklist_characters="`\n", blacklist_categories=("Cs",)), min_size=1, max_size=80))
def test_code_is_never_touched(code):
    assert whatsapp_text(f"before `{code}` after").count(f"`{code}`") == 1
    block = f"```\n{code}\n```"
    assert block in whatsapp_text(f"**x**\n{block}\n**y**")


sentences = st.lists(
    st.builds(lambda ws: " ".join(ws).capitalize() + ".", st.lists(words, min_size=1, max_size=20)),
    min_size=1,
    max_size=400,
)


@settings(max_examples=60, deadline=None)
@given(st.lists(sentences.map(" ".join), min_size=1, max_size=6), st.integers(min_value=50, max_value=MAX_MESSAGE))
def test_a_long_reply_splits_at_paragraphs_sentences_or_spaces_never_inside_a_word(paragraphs, limit):
    text = "\n\n".join(paragraphs)

    parts = whatsapp_parts(text, limit)

    assert all(0 < len(part) <= limit for part in parts)
    assert re.sub(r"\s+", " ", " ".join(parts)) == re.sub(r"\s+", " ", text.strip())  # nothing lost, in order
    for before, after in zip(parts, parts[1:], strict=False):
        joined = before + after[:1]
        assert not (before[-1:].isalnum() and after[:1].isalnum() and text.find(joined) >= 0)  # no word cut


def test_a_split_prefers_the_paragraph_then_the_sentence():
    first, second = "A" * 30 + ". " + "B" * 30 + ".", "C" * 40 + "."
    assert whatsapp_parts(f"{first}\n\n{second}", limit=80) == [first, second]
    assert whatsapp_parts(f"{first} {second}", limit=80) == ["A" * 30 + ". " + "B" * 30 + ".", second]


def test_a_split_never_cuts_a_url_or_a_code_block():
    url = "https://shop.example/" + "x" * 30
    text = "Look here, this is the link " + url + " and more words after it to go past the limit"
    parts = whatsapp_parts(text, limit=60)
    assert any(url in part for part in parts) and all(len(p) <= 60 for p in parts)
    code = "```\n" + "line\n" * 10 + "```"
    parts = whatsapp_parts("Intro words.\n" + code + "\nOutro.", limit=70)
    assert any(code in part for part in parts)


def test_a_word_longer_than_a_message_is_still_sent_whole_in_pieces():
    parts = whatsapp_parts("x" * 9000)
    assert [len(p) for p in parts] == [4096, 4096, 808]
