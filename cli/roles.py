"""Who may run a manual check: `allocator.check_roles` against the user's `operators` roles.

The CLI asks before it contacts Temporal. The allocator's `run_check` and the order's
`request_check` updates do not check roles (yet): integrators calling them are trusted.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping

from cli.errors import CliError
from config import Settings

OPERATOR_ENV = "BACKORDER_OPERATOR"
"""Who the user is when set (a shared login, a script acting for someone); else the OS login."""


def operator_name(environ: Mapping[str, str] = os.environ) -> str | None:
    """The user's name, or None when neither the variable nor the OS says who they are."""
    named = environ.get(OPERATOR_ENV, "").strip()
    if named:
        return named
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (a bare container)
        return None


def check_refusal(settings: Settings, user: str | None) -> str | None:
    """Why `user` may not run a manual check, or None when they may: with `check_roles` set,
    they need one of them in `operators`."""
    required = settings.allocator.check_roles
    if not required:
        return None
    if user is not None and set(settings.operators.get(user, ())) & set(required):
        return None
    roles, where = ", ".join(required), "(settings: operators, allocator.check_roles)"
    if user is None:
        return (
            f"check refused: cannot tell who you are (set {OPERATOR_ENV}); a check needs one "
            f"of the roles {roles} {where}"
        )
    return f"check refused: user {user} has none of the roles {roles} {where}"


def require_check_role(settings: Settings) -> None:
    """Refuse (CliError, exit 1) a user without a check role, before anything is sent."""
    if not settings.allocator.check_roles:
        return  # anyone may: no need to know who
    refusal = check_refusal(settings, operator_name())
    if refusal is not None:
        raise CliError(refusal)
