"""Escalation chains, on an injectable clock.

A route with ``escalation`` starts a chain for each alert group it flushes. Step 0
goes out at once (its ``after`` is usually 0): to the people of the step, or to
whoever a schedule has on call at that moment, through the step's receivers. While
the group is not acknowledged (every firing alert in it acknowledged, through the API
or a signed link), each later step goes out when its ``after`` has passed since the
chain began; after the last, the chain starts again ``repeat_after`` later, up to
``repeat`` times. Acknowledgement (or resolution) stops the steps. When everything in
the group has resolved, everyone who was told gets a resolved notice, once: also
whoever was paged before an acknowledgement, or before the alert resolved between
two flushes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from monitor.fields import parse_duration
from monitor.notify.dispatch import Flush
from monitor.notify.oncall import OnCall
from monitor.notify.settings import EscalationSettings

__all__ = ["Chain", "Escalator", "Page"]


class Chain(msgspec.Struct, kw_only=True):
    """A running chain, as the store keeps it."""

    group: str
    policy: str
    started: float
    round: int = 0
    next_step: int = 0
    notified: list[tuple[str, str]] = []  # (person, receiver), in the order told
    firing: list[str] = []
    stopped: bool = False  # acknowledged or resolved: no further steps
    done: bool = False  # and the resolved notice is out (or nothing is left to say)


@dataclass(frozen=True, slots=True)
class Page:
    """One message to one person through one receiver."""

    person: str
    receiver: str
    flush: Flush
    step: int
    resolved_notice: bool = False


@dataclass(slots=True)
class Escalator:
    policies: dict[str, EscalationSettings]
    schedules: dict[str, OnCall]
    chains: dict[str, Chain] = field(default_factory=dict)
    last_flush: dict[str, Flush] = field(default_factory=dict)

    def flush(self, flush: Flush, at: float) -> list[Page]:
        """A group routed to an escalation has something to say."""
        policy = flush.route.escalation
        assert policy is not None
        chain = self.chains.get(flush.group)
        self.last_flush[flush.group] = flush
        if chain is not None and not chain.done and not flush.firing:
            # all resolved: everyone who was told hears it, once, also when the chain
            # had stopped (acknowledged, or resolved before this flush came)
            chain.done = chain.stopped = True
            chain.firing = []
            return [Page(person, receiver, flush, -1, resolved_notice=True)
                    for person, receiver in chain.notified]
        if chain is None or chain.done or chain.stopped:
            if not flush.firing:
                return []
            told = chain.notified if chain is not None and not chain.done else []
            chain = self.chains[flush.group] = Chain(
                group=flush.group, policy=policy, started=at, notified=list(told),
                firing=[a.fingerprint for a in flush.firing])
            return self._due(chain, at)
        chain.firing = [a.fingerprint for a in flush.firing]
        # new content while the chain runs: those already told hear of it
        return [Page(person, receiver, flush, chain.next_step - 1)
                for person, receiver in chain.notified]

    def tick(self, at: float, acknowledged: Callable[[list[str]], bool]) -> list[Page]:
        pages: list[Page] = []
        for chain in self.chains.values():
            if chain.stopped:
                continue
            if chain.firing and acknowledged(chain.firing):
                chain.stopped = True  # acknowledged (or resolved): no further steps
                continue
            pages += self._due(chain, at)
        return pages

    def _due(self, chain: Chain, at: float) -> list[Page]:
        policy = self.policies.get(chain.policy)
        flush = self.last_flush.get(chain.group)
        if policy is None or flush is None:
            return []
        pages: list[Page] = []
        while True:
            if chain.next_step >= len(policy.steps):
                if chain.round >= policy.repeat:
                    return pages
                # the next round begins repeat_after after the last step
                last_after = parse_duration(policy.steps[-1].after)
                next_start = chain.started + last_after + parse_duration(policy.repeat_after)
                if at < next_start:
                    return pages
                chain.round += 1
                chain.started = next_start
                chain.next_step = 0
            step = policy.steps[chain.next_step]
            if at < chain.started + parse_duration(step.after):
                return pages
            people = list(step.people)
            if step.schedule is not None:
                oncall = self.schedules.get(step.schedule)
                who = oncall.who(datetime.fromtimestamp(at, UTC)) if oncall else None
                if who is not None:
                    people.insert(0, who)
            for person in people:
                for receiver in step.via:
                    pages.append(Page(person, receiver, flush, chain.next_step))
                    if (person, receiver) not in chain.notified:
                        chain.notified.append((person, receiver))
            chain.next_step += 1
