"""`{{variable}}` placeholders in prompt templates.

Rendering is one pass of one regular expression: a value is inserted as it is and never read again, so a
customer who types `{{business_name}}` gets those characters back, not our business name.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping

from config.names import hidden_in_text

PLACEHOLDER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PLACEHOLDER = re.compile(r"\{\{\s*(" + PLACEHOLDER_NAME.pattern + r")\s*\}\}")
CUSTOMER_MESSAGE = "customer_message"


class TemplateVariableError(ValueError):
    """A template cannot be rendered with the given variables; the message names the variable and the fix."""


def placeholders(*texts: str) -> list[str]:
    """The distinct placeholder names in the texts, in order of first appearance."""
    seen: dict[str, None] = {}
    for text in texts:
        for match in PLACEHOLDER.finditer(text):
            seen.setdefault(match.group(1), None)
    return list(seen)


# Anything between double braces, and a name in single braces: what a placeholder looks like when mistyped.
_BETWEEN_BRACES = re.compile(r"\{\{([^{}]*)\}\}")
_SINGLE_BRACES = re.compile(r"(?<!\{)\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}(?!\})")
_UNCLOSED = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)?[^{}]{0,30}")
_TAG = re.compile(r"\{%.{0,40}?(%\}|$)|\{#.{0,40}?(#\}|$)", re.MULTILINE)


def placeholder_problems(text: str) -> list[str]:
    """Placeholders written so that they would be sent as they are, each with the fix: `{{ business name }}`,
    `{{Opening-Hours}}`, `{{business_name}` and `{customer_message}`."""
    problems = []
    for match in _BETWEEN_BRACES.finditer(text):
        inside = match.group(1).strip()
        if not PLACEHOLDER_NAME.fullmatch(inside):
            better = re.sub(r"[^A-Za-z0-9_]+", "_", inside).strip("_").lower() or "a_name"
            if not better[0].isalpha() and better[0] != "_":  # a name starts with a letter: {{1abc}} → {{v1abc}}
                better = f"v{better}"
            problems.append(
                f"{match.group(0)} is not a placeholder: names are letters, digits and underscores. "
                f"Write {{{{{better}}}}}."
            )
    for match in _UNCLOSED.finditer(_BETWEEN_BRACES.sub("", text)):
        fix = f" Write {{{{{match.group(1)}}}}}." if match.group(1) else ""
        problems.append(
            f"“{match.group(0).strip()}” opens a placeholder with {{{{ but does not close it with }}}}.{fix}"
        )
    for match in _TAG.finditer(text):
        problems.append(
            f"“{match.group(0).strip()}” is template-language syntax, which Switchboard does not run: it would be "
            "sent to the model as it is. Templates have only {{placeholders}}; remove it, or put the wording "
            "you want in the text."
        )
    for match in _SINGLE_BRACES.finditer(_BETWEEN_BRACES.sub("", text)):
        problems.append(
            f"{match.group(0)} has single braces, so it would be sent as it is. Write {{{{{match.group(1)}}}}}."
        )
    return problems


def customer_message_problem(user_message: str) -> str | None:
    """A user message without {{customer_message}} would never send what the customer wrote."""
    names = placeholders(user_message)
    if CUSTOMER_MESSAGE in names:
        return None
    close = difflib.get_close_matches(CUSTOMER_MESSAGE, names, n=1, cutoff=0.7)
    hint = f" {{{{{close[0]}}}}} looks like a typo of it." if close else ""
    return (
        f"The user message has no {{{{{CUSTOMER_MESSAGE}}}}}, so what the customer writes would never reach the "
        f"model.{hint} Put {{{{{CUSTOMER_MESSAGE}}}}} where their words go."
    )


def render(text: str, variables: Mapping[str, str]) -> str:
    return PLACEHOLDER.sub(lambda m: str(variables[m.group(1)]), text)


def check_variables(template_name: str, names: Iterable[str], variables: Mapping[str, str]) -> None:
    """Refuse a missing or an unknown variable before anything is rendered or sent."""
    names = list(names)
    missing = [n for n in names if n not in variables or str(variables[n]).strip() == ""]
    if missing:
        listed = ", ".join(f"{{{{{n}}}}}" for n in missing)
        raise TemplateVariableError(
            f"Template {template_name!r} needs a value for {listed}. Fill in "
            f"{'that field' if len(missing) == 1 else 'those fields'} and send again."
        )
    for name in names:  # the customer's own words are theirs; what staff or a platform fill in goes unseen
        hidden = hidden_in_text(str(variables[name])) if name != CUSTOMER_MESSAGE else None
        if hidden:
            raise TemplateVariableError(
                f"The value of {{{{{name}}}}} holds {hidden}, which nobody sees but which would go into the prompt. "
                "Remove it and send again."
            )
    unknown = [n for n in variables if n not in names and n != CUSTOMER_MESSAGE]
    if unknown:
        listed = ", ".join(repr(n) for n in unknown)
        raise TemplateVariableError(
            f"Template {template_name!r} has no placeholder for {listed}. Remove "
            f"{'that variable' if len(unknown) == 1 else 'those variables'}, or add "
            f"{', '.join(f'{{{{{n}}}}}' for n in unknown)} to the template."
        )


# The test console gives each variable a field, and a form takes at most 1,000 (Django's
# DATA_UPLOAD_MAX_NUMBER_FIELDS); a channel or an API request fills each one too. Real templates use a handful.
MAX_VARIABLES = 100
# About 50,000 tokens: more than most models' whole context; the page of every conversation shows it.
MAX_PROMPT_CHARS = 200_000


def text_problems(system_prompt: str, user_message: str) -> dict[str, list[str]]:
    """Every problem of a template's text, by field: what the form and add_template refuse."""
    errors = {"system_prompt": placeholder_problems(system_prompt), "user_message": placeholder_problems(user_message)}
    missing = customer_message_problem(user_message)
    if missing:
        errors["user_message"].append(missing)
    for field, text in (("system_prompt", system_prompt), ("user_message", user_message)):
        hidden = hidden_in_text(text)
        if hidden:
            errors[field].append(f"It holds {hidden}, which nobody sees but changes how the text reads; remove it.")
        if len(text) > MAX_PROMPT_CHARS:
            errors[field].append(
                f"It is {len(text):,} characters; a template takes at most {MAX_PROMPT_CHARS:,} (about 50,000 "
                "tokens, more than most models' context). Keep reference material out of the prompt."
            )
    count = len([name for name in placeholders(system_prompt, user_message) if name != CUSTOMER_MESSAGE])
    if count > MAX_VARIABLES:
        errors["system_prompt"].append(
            f"The template has {count:,} different {{{{variables}}}}; it may have at most {MAX_VARIABLES}, each "
            "filled for every conversation. Write fixed text into the prompt itself."
        )
    return {field: problems for field, problems in errors.items() if problems}


class PromptText:
    """Rendering for anything with a `system_prompt` and a `user_message`: a template (its published text) and
    each of its versions."""

    system_prompt: str
    user_message: str

    @property
    def prompt_name(self) -> str:
        raise NotImplementedError

    @property
    def placeholders(self) -> list[str]:
        return placeholders(self.system_prompt, self.user_message)

    @property
    def variables(self) -> list[str]:
        """The placeholders staff fill in; the customer's message is asked for separately."""
        return [name for name in self.placeholders if name != CUSTOMER_MESSAGE]

    def render_system(self, *, variables: Mapping[str, str]) -> str:
        """The system prompt with the conversation's variables, before any customer message."""
        check_variables(self.prompt_name, self.variables, variables)
        return render(self.system_prompt, {**variables, CUSTOMER_MESSAGE: ""})

    def render(self, *, variables: Mapping[str, str], customer_message: str) -> tuple[str, str]:
        """(system prompt, user message) with every placeholder filled, or TemplateVariableError."""
        values = {**variables, CUSTOMER_MESSAGE: customer_message}
        check_variables(self.prompt_name, self.placeholders, values)
        return render(self.system_prompt, values), render(self.user_message, values)

    def render_lenient(self, *, variables: Mapping[str, str], customer_message: str = "") -> tuple[str, str]:
        """As `render`, for a conversation that began under another version: values the text no longer uses
        are left out instead of refused (a missing one is still TemplateVariableError)."""
        used = {name: variables.get(name, "") for name in self.variables}
        check_variables(self.prompt_name, self.variables, used)
        values = {**used, CUSTOMER_MESSAGE: customer_message}
        return render(self.system_prompt, values), render(self.user_message, values)
