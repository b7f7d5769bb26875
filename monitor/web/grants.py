"""What someone an identity provider vouched for may do: the highest role among the
configured groups they are in, and for a viewer the one municipality those groups
name. Shared by the directory (LDAP groups) and OpenID Connect (a claim's values).
Someone in no configured group, or in viewers' groups of two municipalities, is
refused: that is for the directory's owners to sort out, not for a guess."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final, Literal

import structlog

from monitor.config import ApiUser

__all__ = ["ROLES", "granted_user"]

log = structlog.get_logger(__name__)

ROLES: Final = {"viewer": 0, "operator": 1, "admin": 2}
Role = Literal["admin", "operator", "viewer"]


def granted_user(source: str, name: str, granted: Sequence[tuple[Role, str | None]]
                 ) -> ApiUser | None:
    """The user ``name`` signed in through ``source`` (``ldap``, ``oidc``) is, given
    the (role, municipality) of each configured group they are in."""
    if not granted:
        log.warning("sign_in_no_group", source=source, user=name[:64])
        return None
    role = max((r for r, _ in granted), key=lambda r: ROLES[r])
    municipality = None
    if role == "viewer":
        places = {m for _, m in granted}
        if len(places) != 1:
            log.warning("sign_in_ambiguous", source=source, user=name[:64],
                        municipalities=sorted(p or "" for p in places))
            return None
        municipality = places.pop()
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:50] or "user"
    return ApiUser(id=f"{source}-{slug}", role=role, name=name,
                   municipality=municipality, directory=True)
