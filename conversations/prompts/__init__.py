"""Prompt templates as admins change them: versions, checks before publishing, and diffs."""
