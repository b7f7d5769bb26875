"""Agents registering themselves (monitor.registration): placement by the estate's
rules, the decision per municipality's policy, a second machine under a held name,
the proof, operators' decisions and the peer's, and the estate's checks of the
``enrolment`` block. Expected values are worked out by hand from the rules below."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from monitor.config import Config, PlacementRule, load_config
from monitor.enrolment import parse_token, proof, token_text
from monitor.events import DeviceTopic, HeartbeatEvent, RegisterEvent, Rejected
from monitor.registration import Registry, place
from monitor.yamlmodel import Problems

SECRETS = {"loppa": "loppa-hemmelighet", "hasvik": "hasvik-hemmelighet"}
OU_SKOLER = "OU=Skoler,OU=Hasvik,DC=kommune,DC=no"

PLACEMENT: list[dict[str, Any]] = [
    {"subnet": "10.21.1.0/24", "site": "loppa-radhus"},
    {"subnet": "10.21.2.0/24", "site": "loppa-skole"},
    {"name": "lop-srv[0-9]+", "class": "server"},
    {"subnet": "10.22.0.0/16", "site": "hasvik-radhus"},
    {"ou": OU_SKOLER, "site": "hasvik-skole"},
    {"ou": "OU=Alta,DC=kommune,DC=no", "municipality": "alta"},
    {"ad_site": "Loppa-Skole", "site": "loppa-skole"},
    {"ad_site": "Alta-Skole", "site": "alta-skole"},
]


def _estate(tmp: Path, placement: list[dict[str, Any]] | None = None) -> Path:
    for m, secret in SECRETS.items():
        (tmp / f"{m}.token").write_text(secret + "\n", encoding="utf-8")
    estate = {
        "locations": [{"id": "alta", "name": "Alta"}],
        "municipalities": [{"id": m, "name": m.title()} for m in ("loppa", "hasvik", "alta")],
        "sites": [{"id": s, "name": s, "location": "alta", "municipality": s.split("-")[0]}
                  for s in ("loppa-radhus", "loppa-skole", "hasvik-radhus", "hasvik-skole",
                            "alta-skole")],
        "devices": [{"id": "lop-srv1", "name": "lop-srv1", "class": "server",
                     "site": "loppa-radhus"}],
        "enrolment": {
            "tokens": [{"municipality": "loppa", "token": {"file": str(tmp / "loppa.token")},
                        "policy": "accept"},
                       {"municipality": "hasvik",
                        "token": {"file": str(tmp / "hasvik.token")}}],
            "placement": PLACEMENT if placement is None else placement},
    }
    path = tmp / "estate.yaml"
    path.write_text(yaml.safe_dump(estate, sort_keys=False), encoding="utf-8")
    return path


def _event(device: str, municipality: str = "loppa", *, addresses: tuple[str, ...] = (),
           dn: str | None = None, ad_site: str | None = None, machine: str = "",
           secret: str | None = None, ts: float | None = None) -> RegisterEvent:
    machine = machine or f"m-{device}"
    return RegisterEvent(
        v=1, ts=ts or time.time(), src=device, seq=1, device=device,
        hostname=f"{device.upper()}.{municipality}.kommune.no", os="Windows-10",
        addresses=list(addresses), machine_id=machine, dn=dn, ad_site=ad_site,
        proof=proof(secret or SECRETS[municipality], municipality, device, machine))


def _topic(device: str, municipality: str = "loppa") -> DeviceTopic:
    return DeviceTopic("alta", municipality, device, "register", device)


def _registry(config: Config) -> Registry:
    return Registry(config, CollectorRegistry())


def _take(registry: Registry, event: RegisterEvent, municipality: str = "loppa") -> None:
    registry.check(_topic(event.device, municipality), event)
    registry.register(municipality, event)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(_estate(tmp_path))


def _rules() -> list[PlacementRule]:
    return [PlacementRule(**{("device_class" if k == "class" else k): v
                             for k, v in r.items()}) for r in PLACEMENT]


# -- placement -----------------------------------------------------------------------------

@pytest.mark.parametrize(("event", "expected"), [
    (_event("lop-pc1", addresses=("fe80::1", "10.21.1.17")),
     (None, "loppa-radhus", "pc", ("enrolment.placement[0]: site loppa-radhus",))),
    (_event("lop-srv7", addresses=("10.21.2.5",)),
     (None, "loppa-skole", "server", ("enrolment.placement[1]: site loppa-skole",
                                      "enrolment.placement[2]: class server"))),
    # the name pattern is matched on the short host name, whole: lop-srv7x is no server
    (_event("lop-srv7x", addresses=("10.21.2.5",)),
     (None, "loppa-skole", "pc", ("enrolment.placement[1]: site loppa-skole",))),
    # the first rule that sets a field wins: the subnet's site before the OU's
    (_event("hv-pc1", "hasvik", addresses=("10.22.4.4",),
            dn=f"CN=HV-PC1, {OU_SKOLER.lower()}"),
     (None, "hasvik-radhus", "pc", ("enrolment.placement[3]: site hasvik-radhus",))),
    (_event("hv-pc2", "hasvik", addresses=("192.168.1.2",), dn=f"CN=HV-PC2,{OU_SKOLER}"),
     (None, "hasvik-skole", "pc", ("enrolment.placement[4]: site hasvik-skole",))),
    # an OU named like the base but not under it does not match
    (_event("hv-pc3", "hasvik", dn="CN=HV-PC3,OU=XSkoler,OU=Hasvik,DC=kommune,DC=no"),
     (None, None, "pc", ())),
    (_event("lop-pc9", dn="CN=LOP-PC9,OU=Alta,DC=kommune,DC=no"),
     ("alta", None, "pc", ("enrolment.placement[5]: municipality alta",))),
    (_event("lop-pc10", ad_site="loppa-skole"),
     (None, "loppa-skole", "pc", ("enrolment.placement[6]: site loppa-skole",))),
])
def test_placement_by_the_rules(event: RegisterEvent, expected: tuple[Any, ...]) -> None:
    got = place(event, _rules())
    assert expected == (got.municipality, got.site, got.device_class, got.why)


# -- decisions -----------------------------------------------------------------------------

def test_decisions_per_policy_and_placement(config: Config) -> None:
    registry = _registry(config)
    _take(registry, _event("lop-pc1", addresses=("10.21.1.17",)))
    _take(registry, _event("lop-pc2", addresses=("10.77.0.1",)))
    _take(registry, _event("lop-pc3", dn="CN=X,OU=Alta,DC=kommune,DC=no",
                           addresses=("10.21.1.18",)))
    _take(registry, _event("lop-pc4", ad_site="Alta-Skole"))
    _take(registry, _event("hv-pc1", "hasvik", addresses=("10.22.0.9",)), "hasvik")
    rows = {d: (r.status, r.municipality, r.site, r.reason) for d, r in registry.rows.items()}
    assert rows == {
        "lop-pc1": ("accepted", "loppa", "loppa-radhus",
                    "enrolment.placement[0]: site loppa-radhus"),
        "lop-pc2": ("pending", "loppa", None,
                    "no placement rule gives a site: choose one to accept it"),
        "lop-pc3": ("pending", "alta", "loppa-radhus",
                    "the rules place it in alta and on site loppa-radhus, which is in loppa"),
        "lop-pc4": ("pending", "alta", "alta-skole",
                    "the rules place it in alta, but it enrolled with loppa's token"),
        "hv-pc1": ("pending", "hasvik", "hasvik-radhus", "hasvik approves each new agent"),
    }
    assert {"lop-pc1"} == set(registry.registered(config, config.devices))
    assert not registry.quiet("lop-pc1")
    assert registry.quiet("lop-pc2")
    assert registry.quiet("hv-pc1")
    changes = registry.changes()
    assert [("enrolment", "register_agent")] * 5 == [(c.actor, c.action) for c in changes]
    assert [] == registry.changes()  # handed over once, to the batch that stores them


def test_a_declared_device_stays_the_files(config: Config) -> None:
    registry = _registry(config)
    _take(registry, _event("lop-srv1", addresses=("10.21.2.5",)))
    row = registry.rows["lop-srv1"]
    assert ("accepted", "loppa-radhus", "declared in the estate's files") == (
        row.status, row.site, row.reason)
    assert {} == registry.registered(config, config.devices)


def test_another_machine_under_a_held_name_is_held(config: Config) -> None:
    registry = _registry(config)
    _take(registry, _event("lop-pc1", addresses=("10.21.1.17",), machine="aaa"))
    _take(registry, _event("lop-pc1", addresses=("10.21.1.99",), machine="bbb"))
    row = registry.rows["lop-pc1"]
    assert ("accepted", "aaa", "bbb", ["10.21.1.17"]) == (
        row.status, row.machine_id, row.claimed_by, row.addresses)
    assert row.reason.startswith("another machine (bbb) registered as lop-pc1")
    change = registry.decide("lop-pc1", True, "ola")
    assert ("accepted", "bbb", None, "ola") == (change.row.status, change.row.machine_id,
                                                change.row.claimed_by, change.row.by)


def test_the_same_machine_again_moves_only_where_its_policy_accepts(config: Config) -> None:
    registry = _registry(config)
    _take(registry, _event("lop-pc1", addresses=("10.21.1.17",)))
    _take(registry, _event("lop-pc1", addresses=("10.21.2.17",)))
    assert ("accepted", "loppa-skole") == (registry.rows["lop-pc1"].status,
                                           registry.rows["lop-pc1"].site)
    _take(registry, _event("hv-pc1", "hasvik", addresses=("10.22.0.9",)), "hasvik")
    registry.decide("hv-pc1", True, "ola")
    _take(registry, _event("hv-pc1", "hasvik", dn=f"CN=HV-PC1,{OU_SKOLER}"), "hasvik")
    row = registry.rows["hv-pc1"]
    assert ("accepted", "hasvik-radhus", "accepted by ola") == (row.status, row.site,
                                                                row.reason)


def test_a_rejected_agent_is_refused(config: Config) -> None:
    registry = _registry(config)
    _take(registry, _event("lop-pc2", addresses=("10.77.0.1",)))
    registry.decide("lop-pc2", False, "ola")
    beat = HeartbeatEvent(v=1, ts=time.time(), src="lop-pc2", seq=2, device="lop-pc2",
                          interval=60.0)
    with pytest.raises(Rejected) as caught:
        registry.check(DeviceTopic("alta", "loppa", "lop-pc2", "heartbeat", "lop-pc2"), beat)
    assert ("enrolment", "'lop-pc2''s registration was rejected by ola") == (
        caught.value.reason, caught.value.detail)
    _take(registry, _event("lop-pc2", addresses=("10.21.1.5",)))  # again: still rejected
    assert "rejected" == registry.rows["lop-pc2"].status


@pytest.mark.parametrize(("event", "municipality", "detail"), [
    (_event("lop-pc1", secret="gjettet"), "loppa",
     "the proof of 'lop-pc1' was not made with loppa's enrolment token"),
    # loppa's proof on hasvik's topic: made with the wrong token
    (_event("lop-pc1"), "hasvik",
     "the proof of 'lop-pc1' was not made with hasvik's enrolment token"),
    (_event("alta-pc1", "loppa"), "alta", "'alta' has no enrolment token (enrolment.tokens)"),
])
def test_a_registration_without_a_valid_proof_is_refused(
        config: Config, event: RegisterEvent, municipality: str, detail: str) -> None:
    registry = _registry(config)
    with pytest.raises(Rejected) as caught:
        registry.check(_topic(event.device, municipality), event)
    assert ("enrolment", detail) == (caught.value.reason, caught.value.detail)


def test_operators_decide_and_the_later_version_wins(config: Config) -> None:
    registry = _registry(config)
    _take(registry, _event("lop-pc2", addresses=("10.77.0.1",)))
    with pytest.raises(ValueError, match="the rules gave no site: name one"):
        registry.decide("lop-pc2", True, "ola")
    with pytest.raises(ValueError, match="no such site 'nowhere'"):
        registry.decide("lop-pc2", True, "ola", site="nowhere")
    with pytest.raises(KeyError):
        registry.decide("lop-pc99", True, "ola")
    shared: list[Any] = []
    registry.share = shared.append
    accepted = registry.decide("lop-pc2", True, "ola", site="hasvik-skole",
                               device_class="server").row
    assert ("accepted", "hasvik", "hasvik-skole", "server") == (
        accepted.status, accepted.municipality, accepted.site, accepted.device_class)
    assert [accepted] == shared
    # the peer: an older version changes nothing, a newer one is taken
    peer = _registry(config)
    assert peer.apply_peer(accepted) is not None
    older = accepted.__class__(**{**{f: getattr(accepted, f)
                                     for f in accepted.__struct_fields__},
                                  "status": "rejected", "changed": accepted.changed - 1})
    assert peer.apply_peer(older) is None
    assert "accepted" == peer.rows["lop-pc2"].status
    assert {"lop-pc2"} == set(peer.registered(config, config.devices))


# -- the token -----------------------------------------------------------------------------

def test_the_token_round_trips_and_refuses_what_is_not_one() -> None:
    assert ("alta", "loppa", "a:b") == parse_token(token_text("alta", "loppa", "a:b") + "\n")
    for bad in ("", "dv1:alta:loppa", "dv2:alta:loppa:x", "dv1::loppa:x"):
        with pytest.raises(ValueError, match="not an enrolment token"):
            parse_token(bad)


def test_the_proof_is_hmac_sha256_of_the_documented_message() -> None:
    """Computed with the standard library's HMAC outside the function under test."""
    import hashlib
    import hmac
    message = b"driftsvakt-enrol/v1\nloppa\nlop-pc1\nabc"
    assert hmac.new(b"k", message, hashlib.sha256).hexdigest() == proof(
        "k", "loppa", "lop-pc1", "abc")


# -- the estate's checks ---------------------------------------------------------------------

def _problems(tmp: Path, placement: list[dict[str, Any]]) -> list[tuple[str, str]]:
    with pytest.raises(Problems) as caught:
        load_config(_estate(tmp, placement))
    return [(p.key, p.message) for p in caught.value.problems]


def test_the_placement_rules_shapes_are_checked(tmp_path: Path) -> None:
    assert [
        ("enrolment.placement[0].subnet",
         "'10.21.1.0/33' does not appear to be an IPv4 or IPv6 network"),
        ("enrolment.placement[1].name",
         "not a regular expression: missing ), unterminated subpattern at position 4"),
        ("enrolment.placement[2]", "a rule needs a condition: subnet, name, ou or ad_site"),
        ("enrolment.placement[3]", "a rule sets municipality, site or class"),
    ] == _problems(tmp_path, [{"subnet": "10.21.1.0/33", "site": "loppa-radhus"},
                              {"name": "lop-(", "class": "server"},
                              {"site": "loppa-skole"},
                              {"subnet": "10.0.0.0/8"}])


def test_the_placement_rules_references_are_checked(tmp_path: Path) -> None:
    assert [
        ("enrolment.placement[0].site", "unknown site 'nowhere'"),
        ("enrolment.placement[1].site", "site 'loppa-skole' is not in 'hasvik'"),
        ("enrolment.placement[2].municipality", "unknown municipality 'tana'"),
    ] == _problems(tmp_path, [{"ou": "OU=X", "site": "nowhere"},
                              {"ou": "OU=Y", "municipality": "hasvik", "site": "loppa-skole"},
                              {"ou": "OU=Z", "municipality": "tana"}])
