"""Errors of the review workflow: each says what was wrong and changes nothing."""

from polyp_core.errors import StudioError


class ReviewError(StudioError):
    """Base class: a review request that was refused."""


class AuthError(ReviewError):
    """Wrong name or password (the message never says which)."""


class SignInLocked(AuthError):
    """Too many recent failed sign-ins for a name or address: refused before any hash runs."""

    def __init__(self, message: str, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds


class PermissionDenied(ReviewError):
    """The signed-in person may not do this."""


class NotFound(ReviewError):
    """No such study, reviewer or assignment token (for this reviewer)."""


class StudyClosed(ReviewError):
    """The study is closed: ratings can no longer be given or revised."""


class InvalidRating(ReviewError):
    """A rating field has a value outside the allowed ones."""
