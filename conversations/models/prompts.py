"""Prompt template versions: every save is kept, one version is published.

A template's own `system_prompt` and `user_message` are always its published version's text (publishing
copies them), so everything that renders a template reads the published version without knowing of
versions; a draft changes nothing a customer sees until it is published.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from .. import rendering
from .log import PromptTemplate


class TemplateVersion(rendering.PromptText, models.Model):
    """One saved state of a template, never changed after it is made."""

    template = models.ForeignKey(PromptTemplate, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    system_prompt = models.TextField(blank=True)
    user_message = models.TextField()
    changes = models.CharField(max_length=200, help_text="What this version changed, in words.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True, help_text="When it was last published.")

    class Meta:
        ordering = ["template", "-number"]
        constraints = [models.UniqueConstraint(fields=["template", "number"], name="template_version_number_unique")]

    def __str__(self) -> str:
        return f"{self.template.name} v{self.number}"

    @property
    def prompt_name(self) -> str:
        return f"{self.template.name} v{self.number}"

    @property
    def is_published(self) -> bool:
        return self.template.published_id == self.pk


class TestSet(models.Model):
    """Customer questions to ask a template version before it goes live, each with what its reply must be."""

    __test__ = False  # not a pytest test class, whatever its name

    name = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TestCase(models.Model):
    """One exchange: the variables, the customer's message (or several turns), and the expectations on the
    last reply. Every expectation must hold for the case to pass."""

    __test__ = False  # not a pytest test class, whatever its name

    test_set = models.ForeignKey(TestSet, on_delete=models.CASCADE, related_name="cases")
    template = models.ForeignKey(PromptTemplate, on_delete=models.PROTECT, related_name="test_cases")
    variables = models.JSONField(default=dict, blank=True)
    turns = models.JSONField(help_text="The customer's messages, in order; the last reply is checked.")
    expect_contains = models.JSONField(default=list, blank=True, help_text="Texts the reply contains (any case).")
    expect_not_contains = models.JSONField(default=list, blank=True, help_text="Texts it must not contain.")
    expect_regex = models.JSONField(default=list, blank=True, help_text="Regular expressions it matches.")
    max_chars = models.PositiveIntegerField(null=True, blank=True, help_text="At most this many characters.")
    no_markdown = models.BooleanField(default=False, help_text="No Markdown left after WhatsApp formatting.")
    from_message = models.ForeignKey(
        "Message", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", help_text="Taken from a reply."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["test_set", "id"]

    def __str__(self) -> str:
        return f"{self.test_set.name}: {self.turns[-1][:60] if self.turns else ''}"


class TestRun(models.Model):
    """A test set sent through the real worker path on one connection and one template version."""

    __test__ = False  # not a pytest test class, whatever its name

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        FINISHED = "finished", "Finished"

    test_set = models.ForeignKey(TestSet, on_delete=models.CASCADE, related_name="runs")
    connection = models.ForeignKey("connectors.ProviderConnection", on_delete=models.PROTECT, related_name="+")
    version = models.ForeignKey(
        TemplateVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="runs",
        help_text="The version every case ran with (when the set's cases share a template).",
    )  # fmt: skip
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    advanced_at = models.DateTimeField(null=True, blank=True, help_text="The last look at its cases.")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Run {self.pk} of {self.test_set.name}"


class TestResult(models.Model):
    __test__ = False  # not a pytest test class, whatever its name

    class Status(models.TextChoices):
        PENDING = "pending", "Running"
        PASSED = "passed", "Passed"
        FAILED = "failed", "Failed"

    run = models.ForeignKey(TestRun, on_delete=models.CASCADE, related_name="results")
    case = models.ForeignKey(TestCase, on_delete=models.CASCADE, related_name="results")
    conversation = models.ForeignKey("Conversation", on_delete=models.SET_NULL, null=True, related_name="+")
    call = models.ForeignKey("Call", on_delete=models.SET_NULL, null=True, related_name="+")
    turn = models.PositiveSmallIntegerField(default=0, help_text="Which of the case's turns `call` answers.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    failures = models.JSONField(default=list, blank=True)
    reply = models.TextField(blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True, help_text="All turns' calls, summed.")
    tokens = models.PositiveIntegerField(null=True, blank=True)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)

    class Meta:
        ordering = ["run", "case_id"]
        constraints = [models.UniqueConstraint(fields=["run", "case"], name="test_result_one_per_case")]

    def __str__(self) -> str:
        return f"{self.run}: case {self.case_id} {self.status}"
