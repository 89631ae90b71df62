"""What the account services refuse, and who is asking.

Each error maps to one HTTP status in the admin API (400, 403, 404, 409, 429) and to a plain
message in the CLI and the console.
"""

from __future__ import annotations

from dataclasses import dataclass

from bytespike.store.accounts import Conflict, NotFound

__all__ = ["Actor", "Conflict", "Forbidden", "Invalid", "LoginFailed", "NotConfigured", "NotFound", "Throttled", "Unavailable"]


class Invalid(ValueError):
    """A bad input; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class Forbidden(PermissionError):
    """The actor may not do this (a member acting on another member's key, say)."""


class Throttled(Exception):
    """Too many attempts; try again after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LoginFailed(Exception):
    """Wrong email or password (which one is not said)."""


class Unavailable(Exception):
    """An outside provider (the payment provider) that failed."""


class NotConfigured(Unavailable):
    """A feature this configuration leaves off (card top-ups without Stripe)."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: an operator (the admin token, the CLI) or a person signed in to the console.

    ``name`` is what the audit log records; ``user_id`` is set for a person, whose rights are
    those of their account and role.
    """

    name: str
    user_id: str | None = None

    @classmethod
    def operator(cls, name: str) -> Actor:
        return cls(name)

    @classmethod
    def person(cls, user_id: str, email: str) -> Actor:
        return cls(f"user:{email}", user_id)

    @property
    def is_operator(self) -> bool:
        return self.user_id is None
