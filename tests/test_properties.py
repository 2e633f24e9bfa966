"""Property-based tests: template rendering and response parsing hold for any input hypothesis can find."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from connectors import chat_completions
from connectors.errors import ErrorKind, ProviderError
from conversations.rendering import placeholders, render

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True)
values = st.text(max_size=200)


@given(st.dictionaries(names, values, min_size=1, max_size=5), st.text(max_size=100))
def test_rendering_inserts_each_value_as_is(variables, filler):
    template = filler.replace("{", "").replace("}", "") + "".join(f"[{{{{{n}}}}}]" for n in variables)

    rendered = render(template, variables)

    for name, value in variables.items():
        assert f"[{value}]" in rendered  # even when the value itself looks like {{a_placeholder}}


@given(values)
def test_a_value_is_never_rendered_again(value):
    assert render("{{a}}", {"a": value, "b": "SHOULD-NOT-APPEAR"}) == value


@given(st.lists(names, max_size=6))
def test_every_placeholder_is_found_once(found):
    text = " ".join(f"{{{{ {n} }}}}" for n in found)
    assert placeholders(text) == list(dict.fromkeys(found))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@given(st.integers(min_value=300, max_value=599), st.one_of(st.text(max_size=300), json_values.map(json.dumps)))
def test_any_error_answer_is_classified_without_crashing(status, body):
    error = chat_completions.classify(status, body, {"Retry-After": "2"})
    assert isinstance(error.kind, ErrorKind)
    assert error.message  # staff always get words, never an empty error


@given(st.one_of(st.text(max_size=300), json_values.map(json.dumps)))
def test_any_success_answer_parses_or_is_a_bad_response(body):
    try:
        reply = chat_completions.parse_reply(200, body)
    except ProviderError as error:
        assert error.kind == ErrorKind.BAD_RESPONSE
    else:
        assert reply.content.strip()


@given(
    st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=200).filter(str.strip),
    st.sampled_from(["stop", "length", "model_length"]),
)
def test_a_well_formed_reply_always_comes_back_intact(content, finish_reason):
    body = {
        "id": "cmpl-1",
        "model": "m",
        "choices": [{"message": {"content": content}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
    }
    reply = chat_completions.parse_reply(200, json.dumps(body))
    assert (reply.content, reply.finish_reason, reply.prompt_tokens) == (content, finish_reason, 3)


def test_nul_characters_are_dropped_from_replies():
    body = {"choices": [{"message": {"content": "a\x00b"}, "finish_reason": "stop"}]}
    assert chat_completions.parse_reply(200, json.dumps(body)).content == "ab"  # PostgreSQL text cannot hold NUL
