"""The launcher's errors: each names what is missing and how to fix it."""

from __future__ import annotations


class StackError(Exception):
    """Base of every local stack failure."""


class PrerequisiteError(StackError):
    """A tool, package, download or port the stack needs is not available."""

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(f"{what}\n  fix: {fix}")
        self.what = what
        self.fix = fix


class ComponentFailedError(StackError):
    """A component started but did not become ready; the message points at its log."""
