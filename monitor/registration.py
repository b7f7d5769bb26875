"""Host agents that register themselves: placed by the estate's rules, accepted or
held for an operator, in the estate without a YAML edit per PC.

An agent installed with a broker address and its municipality's enrolment token
(``driftsvakt enrolment-token``) announces itself on its own ``register`` topic,
through its outbox like every event: host name, system, addresses, machine id, AD
site and object. The broker lets the token's identity publish only in its
municipality; the engine checks what the broker cannot see: the registration is the
agent's own (``src`` is the device) and carries a proof made with the token
(HMAC-SHA256 over municipality, device and machine id). A registration without one
is refused like any bad event: dead-lettered, counted (``enrolment``), logged.

Placement (``enrolment.placement``): each rule whose conditions all hold (subnet,
host name pattern, OU, AD site) sets the fields it names — municipality, site,
class — that an earlier rule has not set. A registration is *accepted* when it is
placed on a site of the token's municipality, that municipality's policy is
``accept`` and no other machine holds the name; otherwise it is *pending*, with the
reason, until an operator accepts it (naming the site where the rules gave none) or
rejects it. A pending agent's events are kept (its state is current the moment it
is accepted) but raise nothing; a rejected one's events are refused.

Every decision is stored in the batch that carried the registration, with its audit
entry, and an operator's is shared with the other location (``_ops``). Both engines
take the same registrations and decide by the same rules, so they agree without
talking; the later decision wins where an operator's meets a peer's.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import re
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Final, Literal

import msgspec
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from monitor.config import Config, Device, EnrolmentToken, PlacementRule
from monitor.enrolment import proof
from monitor.events import DeviceTopic, Event, RegisterEvent, Rejected
from monitor.ingest import EventObserver
from monitor.state import State

__all__ = ["Placement", "Registration", "RegistrationChange", "Registry", "place"]

log = structlog.get_logger(__name__)

Status = Literal["accepted", "pending", "rejected"]
RULES_ACTOR: Final = "enrolment"  # who decides by the rules, in the audit log


@dataclass(frozen=True, slots=True)
class Placement:
    municipality: str | None
    site: str | None
    device_class: Literal["server", "pc"]
    why: tuple[str, ...]  # which rule set what


def _under(dn: str | None, ou: str) -> bool:
    if not dn:
        return False
    norm = re.sub(r"\s*,\s*", ",", dn.strip().lower())
    base = re.sub(r"\s*,\s*", ",", ou.strip().lower())
    return norm == base or norm.endswith("," + base)


def _in_subnet(addresses: Iterable[str], subnet: str) -> bool:
    network = ipaddress.ip_network(subnet, strict=False)
    for text in addresses:
        try:
            if ipaddress.ip_address(text.split("%")[0]) in network:
                return True
        except ValueError:
            continue
    return False


def _matches(rule: PlacementRule, event: RegisterEvent) -> bool:
    short = event.hostname.split(".")[0].lower()
    return ((rule.subnet is None or _in_subnet(event.addresses, rule.subnet))
            and (rule.name is None or re.fullmatch(rule.name, short) is not None)
            and (rule.ou is None or _under(event.dn, rule.ou))
            and (rule.ad_site is None
                 or (event.ad_site or "").lower() == rule.ad_site.lower()))


def place(event: RegisterEvent, rules: list[PlacementRule]) -> Placement:
    """Where the rules put an agent: each field from the first matching rule that
    sets it; the class the agent gave where no rule sets one."""
    municipality: str | None = None
    site: str | None = None
    device_class: Literal["server", "pc"] | None = None
    why: list[str] = []
    for i, rule in enumerate(rules):
        if not _matches(rule, event):
            continue
        set_here = []
        if rule.municipality is not None and municipality is None:
            municipality = rule.municipality
            set_here.append(f"municipality {municipality}")
        if rule.site is not None and site is None:
            site = rule.site
            set_here.append(f"site {site}")
        if rule.device_class is not None and device_class is None:
            device_class = rule.device_class
            set_here.append(f"class {device_class}")
        if set_here:
            why.append(f"enrolment.placement[{i}]: {', '.join(set_here)}")
    return Placement(municipality, site, device_class or event.device_class, tuple(why))


class Registration(msgspec.Struct, kw_only=True):
    """One agent's registration as the engine holds it (the latest version wins)."""

    device: str
    token: str  # the municipality whose token it came with
    municipality: str  # where it is, or would be, placed
    site: str | None
    device_class: Literal["server", "pc"]
    status: Status
    reason: str
    hostname: str
    os: str = ""
    addresses: list[str] = []
    machine_id: str
    ad_site: str | None = None
    dn: str | None = None
    first_seen: float
    changed: float  # this version's time
    by: str = RULES_ACTOR  # the rules, or the operator who decided
    claimed_by: str | None = None  # another machine's id that registered as this device

    def as_device(self) -> Device:
        assert self.site is not None
        return Device(id=self.device, name=self.hostname.split(".")[0], site=self.site,
                      device_class=self.device_class, tags=["registered"])


@dataclass(frozen=True, slots=True)
class RegistrationChange:
    """A version to store, with its audit entry (monitor.store)."""

    row: Registration
    actor: str
    action: str

    def store_row(self) -> tuple[str, str, str, float, bytes]:
        r = self.row
        return r.device, r.municipality, r.status, r.changed, _ENCODER.encode(r)


_ENCODER: Final = msgspec.json.Encoder()
DECODER: Final = msgspec.json.Decoder(Registration)


def _decision(placement: Placement, token: EnrolmentToken, config: Config
              ) -> tuple[str, Status, str]:
    """Where it goes (municipality), and whether it is accepted, with the reason."""
    site = config.sites.get(placement.site or "")
    municipality = placement.municipality or (site.municipality if site else None) or (
        token.municipality)
    if site is None:
        return municipality, "pending", ("no placement rule gives a site: choose one to "
                                         "accept it")
    if site.municipality != municipality:
        return municipality, "pending", (f"the rules place it in {municipality} and on "
                                         f"site {site.id}, which is in {site.municipality}")
    if municipality != token.municipality:
        return municipality, "pending", (f"the rules place it in {municipality}, but it "
                                         f"enrolled with {token.municipality}'s token")
    if token.policy == "approve":
        return municipality, "pending", f"{token.municipality} approves each new agent"
    return municipality, "accepted", "; ".join(placement.why)


class Registry:
    """The registrations, their decisions, and the accepted agents as devices."""

    def __init__(self, config: Config, registry: CollectorRegistry) -> None:
        self.config = config
        self.rows: dict[str, Registration] = {}
        self._changes: list[RegistrationChange] = []
        self._wake = asyncio.Event()
        self.in_force: set[str] = set()  # registered devices the estate holds now
        self._site_gone: dict[str, str] = {}  # accepted agents whose site is gone, as said
        self._secrets: dict[EnrolmentToken, str] = {}
        # what puts accepted agents in the running estate at once, and what takes the
        # rest of a change (a rejection, a move) in a step of its own (monitor.reload)
        self.join: Callable[[list[Device]], None] | None = None
        self.put_in_force: Callable[[], Awaitable[None]] | None = None
        self.share: Callable[[Registration], None] | None = None  # to the peer engine
        self.counted = Counter("driftsvakt_registrations_total",
                               "Agent registrations taken, by what was decided",
                               ["outcome"], registry=registry)
        for outcome in ("accepted", "pending", "rejected", "updated", "moved", "claimed",
                        "declared"):
            self.counted.labels(outcome)
        self.held = Gauge("driftsvakt_registered_agents", "Agent registrations held, by status",
                          ["status"], registry=registry)
        for status in ("accepted", "pending", "rejected"):
            self.held.labels(status)

    def load(self, rows: Iterable[Registration]) -> None:
        for row in rows:
            self.rows[row.device] = row
        self._recount()

    # -- the estate ---------------------------------------------------------------------

    def registered(self, config: Config, declared: Collection[str]) -> dict[str, Device]:
        """The accepted agents as devices: those on a site ``config`` has, and not
        declared in the estate's files (a declared device is the files')."""
        out: dict[str, Device] = {}
        gone: dict[str, str] = {}
        for row in self.rows.values():
            if row.status != "accepted" or row.device in declared:
                continue
            if row.site in config.sites:
                out[row.device] = row.as_device()
            else:
                gone[row.device] = row.site or "?"
        if gone != self._site_gone:  # said when it changes, not at every burst
            self._site_gone = gone
            if gone:
                log.warning("registered_site_gone", devices=len(gone),
                            sites=sorted(set(gone.values()))[:20],
                            first=sorted(gone)[:20],
                            why="accepted agents whose site the estate no longer has "
                                "are out of the estate until they register again")
        return out

    def declared(self) -> dict[str, Device]:
        """The running estate's devices that its files declare."""
        return {d: dev for d, dev in self.config.devices.items() if d not in self.in_force}

    # -- the event path (ingest) ----------------------------------------------------------

    def check(self, where: DeviceTopic, event: Event) -> None:
        """Refuse a registration without a valid proof, and the events of an agent an
        operator rejected (Rejected: dead-lettered and counted by ingest)."""
        if isinstance(event, RegisterEvent):
            if event.src != event.device:
                raise Rejected("enrolment", f"a registration is the agent's own: src "
                                            f"{event.src!r} is not the device")
            token = self._token(where.municipality)
            if token is None:
                raise Rejected("enrolment", f"{where.municipality!r} has no enrolment "
                                            "token (enrolment.tokens)")
            expected = proof(self._secret(token), where.municipality, event.device,
                             event.machine_id)
            if not hmac.compare_digest(expected, event.proof):
                raise Rejected("enrolment", f"the proof of {event.device!r} was not made "
                                            f"with {where.municipality}'s enrolment token")
            return
        row = self.rows.get(event.device)
        if row is not None and row.status == "rejected" and event.device not in (
                self.config.devices):
            raise Rejected("enrolment", f"{event.device!r}'s registration was rejected "
                                        f"by {row.by}")

    def quiet(self, device: str) -> bool:
        """Held for approval: its events are kept, the rules are not told of them."""
        row = self.rows.get(device)
        return row is not None and row.status != "accepted" and device not in (
            self.config.devices)

    def gated(self, observer: EventObserver) -> EventObserver:
        registry = self

        class _Gated:
            def on_event(self, topic: DeviceTopic, event: Event, state: State) -> None:
                if not registry.quiet(event.device):
                    observer.on_event(topic, event, state)
        return _Gated()

    def on_event(self, topic: DeviceTopic, event: Event, state: State) -> None:
        if isinstance(event, RegisterEvent):
            self.register(topic.municipality, event)

    def register(self, municipality: str, event: RegisterEvent) -> Registration:
        token = self._token(municipality)
        assert token is not None  # check() let it in
        placement = place(event, self.config.enrolment.placement)
        placed_in, status, reason = _decision(placement, token, self.config)
        held = self.rows.get(event.device)
        now = time.time()
        row = Registration(
            device=event.device, token=municipality, municipality=placed_in,
            site=placement.site,
            device_class=placement.device_class, status=status, reason=reason,
            hostname=event.hostname, os=event.os, addresses=list(event.addresses),
            machine_id=event.machine_id, ad_site=event.ad_site, dn=event.dn,
            first_seen=event.ts, changed=max(now, held.changed + 1e-6) if held else now)
        outcome: str = status
        if event.device in self.config.devices and event.device not in self.in_force:
            row.status, row.reason = "accepted", "declared in the estate's files"
            row.site = self.config.devices[event.device].site
            outcome = "declared"
        elif held is not None:
            row, outcome = self._again(held, row)
        self._changes.append(self._put(row, RULES_ACTOR, "register_agent"))
        self.counted.labels(outcome).inc()
        log.info("agent_registered", device=row.device, municipality=row.municipality,
                 site=row.site, status=row.status, outcome=outcome, reason=row.reason)
        return row

    def _again(self, held: Registration, new: Registration) -> tuple[Registration, str]:
        """A device already registered: the same machine again (facts updated, placed
        again while pending; moved while accepted only where its policy accepts), or
        another machine under the same name (held, the first keeps it)."""
        new.first_seen = held.first_seen
        if held.machine_id != new.machine_id:
            held = msgspec.structs.replace(
                held, claimed_by=new.machine_id, changed=new.changed,
                reason=f"another machine ({new.machine_id}) registered as "
                       f"{held.device} from {new.hostname}; accept to give it the name")
            if held.status == "pending":
                return msgspec.structs.replace(new, claimed_by=new.machine_id,
                                               reason=held.reason), "claimed"
            return held, "claimed"
        if held.status == "rejected":
            return msgspec.structs.replace(new, status="rejected", reason=held.reason,
                                           by=held.by), "rejected"
        if held.status == "accepted":
            if new.status == "accepted" and new.site != held.site:
                return new, "moved"
            return msgspec.structs.replace(new, status="accepted", site=held.site,
                                           municipality=held.municipality,
                                           device_class=held.device_class,
                                           reason=held.reason, by=held.by), "updated"
        return new, new.status

    def changes(self) -> list[RegistrationChange]:
        """What to store with the batch that took the registrations."""
        out, self._changes = self._changes, []
        return out

    # -- operators, and the peer engine -------------------------------------------------

    def decide(self, device: str, accept: bool, actor: str, site: str | None = None,
               device_class: Literal["server", "pc"] | None = None) -> RegistrationChange:
        """An operator's decision, for the caller to store (KeyError: no such
        registration; ValueError: why it cannot be taken)."""
        held = self.rows.get(device)
        if held is None:
            raise KeyError(device)
        now = max(time.time(), held.changed + 1e-6)
        if not accept:
            row = msgspec.structs.replace(held, status="rejected", by=actor, changed=now,
                                          reason=f"rejected by {actor}", claimed_by=None)
        else:
            site = site or held.site
            if site is None:
                raise ValueError("the rules gave no site: name one")
            if site not in self.config.sites:
                raise ValueError(f"no such site {site!r}")
            row = msgspec.structs.replace(
                held, status="accepted", by=actor, changed=now, site=site,
                municipality=self.config.sites[site].municipality,
                device_class=device_class or held.device_class,
                machine_id=held.claimed_by or held.machine_id, claimed_by=None,
                reason=f"accepted by {actor}")
        change = self._put(row, actor, "accept_agent" if accept else "reject_agent")
        if self.share is not None:
            self.share(row)
        return change

    def apply_peer(self, row: Registration) -> RegistrationChange | None:
        """The other location's operator decided: the later version wins; the caller
        stores what this returns."""
        held = self.rows.get(row.device)
        if held is not None and held.changed >= row.changed:
            return None
        return self._put(row, row.by, "accept_agent" if row.status == "accepted"
                         else "reject_agent")

    def _put(self, row: Registration, actor: str, action: str) -> RegistrationChange:
        held = self.rows.get(row.device)
        if held is not None:
            self.held.labels(held.status).dec()
        self.held.labels(row.status).inc()
        self.rows[row.device] = row
        if (self.join is not None and row.status == "accepted" and row.site in
                self.config.sites and row.device not in self.config.devices):
            self.join([row.as_device()])
        self._wake.set()
        return RegistrationChange(row, actor, action)

    def _recount(self) -> None:
        counts = {"accepted": 0, "pending": 0, "rejected": 0}
        for row in self.rows.values():
            counts[row.status] += 1
        for status, n in counts.items():
            self.held.labels(status).set(n)

    def _secret(self, token: EnrolmentToken) -> str:
        """Read once per token (a reload brings new ones); a token that cannot be read
        refused the start or the reload."""
        secret = self._secrets.get(token)
        if secret is None:
            secret = self._secrets[token] = token.token.resolve()
        return secret

    def _token(self, municipality: str) -> EnrolmentToken | None:
        return next((t for t in self.config.enrolment.tokens
                     if t.municipality == municipality), None)

    # -- the task that puts accepted agents in force ---------------------------------------

    async def run(self, stop: asyncio.Event, settle: float = 0.5) -> None:
        """Accepted agents join the estate in steps, a burst of them in one."""
        while not stop.is_set():
            waiter = asyncio.create_task(self._wake.wait())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
            if stop.is_set():
                break
            await asyncio.sleep(settle)  # the rest of a burst
            self._wake.clear()
            if self.put_in_force is not None:
                await self.put_in_force()
