"""The enrolment token and the proof made with it: what an agent and the engines
share (collectors.agent.enrol, monitor.registration), kept free of both sides'
dependencies, as the agent runs on every PC."""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

__all__ = ["TOKEN_PREFIX", "parse_token", "proof", "token_text"]

TOKEN_PREFIX: Final = "dv1"


def proof(secret: str, municipality: str, device: str, machine_id: str) -> str:
    """What an agent holding the token sends with its registration, and the engine
    computes again: HMAC-SHA256 over municipality, device and machine id."""
    message = f"driftsvakt-enrol/v1\n{municipality}\n{device}\n{machine_id}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def token_text(location: str, municipality: str, secret: str) -> str:
    """The one string an agent is installed with: where it sends, for whom, the key."""
    return f"{TOKEN_PREFIX}:{location}:{municipality}:{secret}"


def parse_token(text: str) -> tuple[str, str, str]:
    """(location, municipality, secret) of a token; ValueError saying what is wrong."""
    parts = text.strip().split(":", 3)
    if len(parts) != 4 or parts[0] != TOKEN_PREFIX or not all(parts[1:]):
        raise ValueError(f"not an enrolment token (expected {TOKEN_PREFIX}:LOCATION:"
                         "MUNICIPALITY:SECRET, as `driftsvakt enrolment-token` prints it)")
    return parts[1], parts[2], parts[3]
