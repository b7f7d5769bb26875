"""Generate deploy/examples/vest-finnmark/: a believable estate for the two-location demo.

Seven municipalities in Vest-Finnmark, operated from Alta and Hammerfest. Each site
gets a switch hierarchy (core at the town hall, distribution, access per site), a
firewall at the edge, servers in the two data rooms, UPSes and PCs in numbers that
follow the municipalities' size. The output is deterministic (fixed seed), so the
committed files only change when this script does.

    python scripts/gen_example_estate.py [OUTDIR]
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import yaml

# (id, display name, org number, serving location, PCs, [(site id suffix, name, kind)])
MUNICIPALITIES: list[tuple[str, str, str, str, int, list[tuple[str, str, str]]]] = [
    ("alta", "Alta kommune", "944 588 132", "alta", 1450, [
        ("radhus", "Alta rådhus", "town-hall"),
        ("bossekop-skole", "Bossekop skole", "school"),
        ("komsa-skole", "Komsa skole", "school"),
        ("elvebakken-skole", "Elvebakken skole", "school"),
        ("saga-skole", "Saga skole", "school"),
        ("alta-ungdomsskole", "Alta ungdomsskole", "school"),
        ("alta-helsesenter", "Alta helsesenter", "health-centre"),
        ("alta-sykehjem", "Alta sykehjem", "care-home"),
        ("bossekop-bo-og-service", "Bossekop bo- og servicesenter", "care-home"),
        ("alta-teknisk-drift", "Teknisk drift, Altaveien", "depot"),
        ("alta-bibliotek", "Alta bibliotek", "library"),
    ]),
    ("hammerfest", "Hammerfest kommune", "964 830 533", "hammerfest", 900, [
        ("radhus", "Hammerfest rådhus", "town-hall"),
        ("breilia-skole", "Breilia skole", "school"),
        ("fuglenes-skole", "Fuglenes skole", "school"),
        ("reindalen-skole", "Reindalen skole", "school"),
        ("hammerfest-helsesenter", "Hammerfest helsesenter", "health-centre"),
        ("hammerfest-sykehjem", "Hammerfest sykehjem", "care-home"),
        ("hammerfest-teknisk", "Teknisk drift, Rossmolla", "depot"),
    ]),
    ("nordkapp", "Nordkapp kommune", "964 830 762", "hammerfest", 330, [
        ("radhus", "Nordkapp rådhus, Honningsvåg", "town-hall"),
        ("honningsvag-skole", "Honningsvåg skole", "school"),
        ("nordkapp-helsesenter", "Nordkapp helsesenter", "health-centre"),
        ("nordkapp-sykehjem", "Nordkapp sykehjem", "care-home"),
        ("nordkapp-teknisk", "Teknisk drift, Honningsvåg", "depot"),
    ]),
    ("masoy", "Måsøy kommune", "964 830 711", "hammerfest", 130, [
        ("radhus", "Måsøy rådhus, Havøysund", "town-hall"),
        ("havoysund-skole", "Havøysund skole", "school"),
        ("masoy-helsesenter", "Måsøy helsesenter", "health-centre"),
        ("masoy-sykehjem", "Havøysund sykehjem", "care-home"),
    ]),
    ("kvalsund", "Kvalsund", "964 830 894", "hammerfest", 90, [
        ("radhus", "Kvalsund servicekontor", "town-hall"),
        ("kvalsund-skole", "Kvalsund skole", "school"),
        ("kvalsund-sykehjem", "Kvalsund sykehjem", "care-home"),
    ]),
    ("hasvik", "Hasvik kommune", "959 469 059", "alta", 110, [
        ("radhus", "Hasvik rådhus, Breivikbotn", "town-hall"),
        ("breivikbotn-skole", "Breivikbotn skole", "school"),
        ("hasvik-helsesenter", "Hasvik helsesenter", "health-centre"),
        ("hasvik-sykehjem", "Hasvik sykehjem", "care-home"),
    ]),
    ("loppa", "Loppa kommune", "938 596 898", "alta", 100, [
        ("radhus", "Loppa rådhus, Øksfjord", "town-hall"),
        ("oksfjord-skole", "Øksfjord skole", "school"),
        ("loppa-helsesenter", "Loppa helsesenter", "health-centre"),
        ("loppa-sykehjem", "Loppa sykehjem", "care-home"),
    ]),
]

SERVER_ROLES = [
    ("dc01", "domenekontroller"), ("dc02", "domenekontroller"), ("fil01", "filserver"),
    ("sql01", "databaseserver"), ("fag01", "fagsystem"), ("rds01", "terminalserver"),
    ("print01", "utskriftsserver"), ("backup01", "backupserver"), ("epj01", "journalsystem"),
    ("web01", "webportal"), ("mail01", "e-post"), ("mail02", "e-post"), ("mon01", "driftsvakt"),
    ("helsenett01", "helsenett-gateway"),
]


def generate() -> dict[str, dict[str, Any]]:
    rng = random.Random(2026)
    estate = {
        "locations": [
            {"id": "alta", "name": "Driftssentralen Alta"},
            {"id": "hammerfest", "name": "Driftssentralen Hammerfest"},
        ],
        "municipalities": [
            {"id": m[0], "name": m[1], "org_number": m[2], "office_hours": "kontortid"}
            for m in MUNICIPALITIES
        ],
        "office_hours": [
            {"id": "kontortid", "weekly": {"mon-fri": ["07:00-16:00"]},
             "closed": ["2026-12-24", "2026-12-31", "2027-12-24", "2027-12-31"],
             "grace": 1800},
            {"id": "skoletid", "weekly": {"mon-fri": ["07:30-15:30"]},
             "closed": ["2026-12-24", "2026-12-31", "2027-12-24", "2027-12-31"],
             "grace": 2700},
            {"id": "helse-dogn", "weekly": {"mon-sun": ["00:00-24:00"]},
             "public_holidays": False, "grace": 900},
        ],
        "brokers": [
            {"location": "alta", "host": "127.0.0.1", "port": 1883},
            {"location": "hammerfest", "host": "127.0.0.1", "port": 1883},
        ],
        "snmp_profiles": [
            {"id": "nett-v3", "version": "3", "user": "driftsvakt",
             "auth_protocol": "SHA-256", "auth_key": {"env": "DRIFTSVAKT_SNMP_AUTH"},
             "priv_protocol": "AES", "priv_key": {"env": "DRIFTSVAKT_SNMP_PRIV"}},
            {"id": "ups-v2c", "version": "2c", "community": {"env": "DRIFTSVAKT_SNMP_UPS"}},
            {"id": "server-v2c", "version": "2c",
             "community": {"file": "/etc/driftsvakt/snmp-server-community"}},
        ],
        "engine": {"http_host": "127.0.0.1", "http_port": 9810,
                   "store": "var/engine-{location}.db"},
        # every event stays until both locations' engines have it (docs/ha.md)
        "outbox": {"directory": "var/outbox", "max_rows": 1000000, "max_age": 604800,
                   "wait_for": ["alta", "hammerfest"]},
    }
    sites: list[dict[str, Any]] = []
    network: list[dict[str, Any]] = []
    servers: list[dict[str, Any]] = []
    pcs: list[dict[str, Any]] = []
    for m_index, (mun, _name, _org, loc, n_pcs, msites) in enumerate(MUNICIPALITIES):
        net = f"10.{40 + m_index}"
        site_ids = []
        for suffix, site_name, kind in msites:
            site_id = suffix if suffix != "radhus" else f"{mun}-radhus"
            site_ids.append(site_id)
            site: dict[str, Any] = {"id": site_id, "name": site_name, "location": loc,
                                    "municipality": mun, "kind": kind}
            if kind == "school":
                site["office_hours"] = "skoletid"
            elif kind in ("care-home", "health-centre"):
                site["office_hours"] = "helse-dogn"  # PCs in care work day and night
            sites.append(site)
        hall = f"{mun}-radhus"
        fw = f"{mun}-fw1"
        core = f"{mun}-core1"
        network.append({"id": fw, "name": f"Brannmur {mun}", "class": "firewall", "site": hall,
                        "address": f"{net}.0.1", "snmp_profile": "nett-v3", "tags": ["edge"]})
        network.append({"id": core, "name": f"Kjernesvitsj {mun}", "class": "switch",
                        "site": hall, "address": f"{net}.0.2", "parent": fw,
                        "snmp_profile": "nett-v3", "tags": ["core"]})
        network.append({"id": f"{mun}-ups1", "name": f"UPS serverrom {mun}", "class": "ups",
                        "site": hall, "address": f"{net}.0.5", "parent": core,
                        "snmp_profile": "ups-v2c"})
        access_by_site: dict[str, list[str]] = {}
        for s_index, site_id in enumerate(site_ids):
            third = 1 + s_index
            if site_id == hall:
                dist = core
            else:
                dist = f"{site_id}-dist1"
                network.append({"id": f"{site_id}-rtr1", "name": f"Ruter {site_id}",
                                "class": "router", "site": site_id,
                                "address": f"{net}.{third}.1", "parent": core,
                                "snmp_profile": "nett-v3", "tags": ["wan"]})
                network.append({"id": dist, "name": f"Distribusjon {site_id}", "class": "switch",
                                "site": site_id, "address": f"{net}.{third}.2",
                                "parent": f"{site_id}-rtr1", "snmp_profile": "nett-v3",
                                "tags": ["distribution"]})
            n_access = 2 if site_id == hall else rng.randint(1, 3)
            access_by_site[site_id] = []
            for a in range(1, n_access + 1):
                acc = f"{site_id}-acc{a}"
                access_by_site[site_id].append(acc)
                network.append({"id": acc, "name": f"Aksess {site_id} {a}", "class": "switch",
                                "site": site_id, "address": f"{net}.{third}.{10 + a}",
                                "parent": dist, "snmp_profile": "nett-v3",
                                "tags": ["access"]})
            network.append({"id": f"{site_id}-ap1", "name": f"Trådløst {site_id}", "class": "ap",
                            "site": site_id, "address": f"{net}.{third}.30",
                            "parent": access_by_site[site_id][0]})
            network.append({"id": f"{site_id}-prn1", "name": f"Skriver {site_id}",
                            "class": "printer", "site": site_id,
                            "address": f"{net}.{third}.40",
                            "parent": access_by_site[site_id][-1]})
        n_servers = len(SERVER_ROLES) if mun in ("alta", "hammerfest") else 4
        for s_index, (role, _desc) in enumerate(SERVER_ROLES[:n_servers]):
            servers.append({"id": f"{mun}-{role}", "name": f"{role.upper()} {mun}",
                            "class": "server", "site": hall,
                            "address": f"{net}.0.{100 + s_index}", "parent": core,
                            "snmp_profile": "server-v2c", "tags": ["windows" if role[:2] in
                                                                   ("dc", "rd", "pr") else
                                                                   "linux"]})
        weights = [3 if sid == hall else 2 if "skole" in sid else 1 for sid in site_ids]
        total_weight = sum(weights)
        counter = 0
        for site_id, weight in zip(site_ids, weights, strict=True):
            third = 1 + site_ids.index(site_id)
            count = max(3, n_pcs * weight // total_weight)
            for _ in range(count):
                counter += 1
                host = 50 + counter % 200
                pcs.append({"id": f"{mun}-pc{counter:04d}", "name": f"PC {mun} {counter:04d}",
                            "class": "pc", "site": site_id,
                            "address": f"{net}.{third + 100 + counter // 200}.{host}",
                            "parent": rng.choice(access_by_site[site_id])})
    return {
        "estate.yaml": estate,
        "services.yaml": {"services": services(MUNICIPALITIES)},
        "sites.yaml": {"sites": sites},
        "network.yaml": {"devices": network},
        "servers.yaml": {"devices": servers},
        "pcs.yaml": {"devices": pcs},
    }


def services(municipalities: list[Any]) -> list[dict[str, Any]]:
    """The agreements: per municipality its network, sign-in and files; the fagsystem of
    the two large ones in office hours; e-post and Helsenett shared by all."""
    everyone = [m[0] for m in municipalities]
    out: list[dict[str, Any]] = [
        {"id": "e-post", "name": "E-post",
         "description": "Felles e-postplattform i Alta og Hammerfest: nede bare når "
                        "færre enn to av fire e-postservere svarer.",
         "municipalities": everyone, "target": 99.5,
         "depends": {"at_least": 2, "of": ["device:alta-mail01", "device:alta-mail02",
                                           "device:hammerfest-mail01",
                                           "device:hammerfest-mail02"]},
         "policy": {"ignore_blips_under": 120}},
        {"id": "helsenett-meldinger", "name": "Helsenett-meldinger",
         "description": "Meldingsutveksling med Norsk Helsenett, døgnet rundt.",
         "municipalities": list(everyone), "target": 99.9,
         "depends": {"any": ["device:alta-helsenett01", "device:hammerfest-helsenett01"]},
         "policy": {"degraded": "up", "ignore_blips_under": 60}},
    ]
    for mun, name, *_ in municipalities:
        hall = "Nettverk " + {"alta": "Alta rådhus", "hammerfest": "Hammerfest rådhus"}.get(
            mun, f"rådhuset i {name.replace(' kommune', '')}")
        out.append({"id": f"nett-{mun}-radhus", "name": hall, "municipalities": [mun],
                    "target": 99.7,
                    "depends": {"all": [f"device:{mun}-fw1", f"device:{mun}-core1",
                                        f"device:{mun}-radhus-acc1"]}})
        out.append({"id": f"innlogging-{mun}", "name": "Innlogging og filer",
                    "municipalities": [mun], "target": 99.5, "hours": "kontortid",
                    "depends": {"all": [f"service:nett-{mun}-radhus", f"service:domene-{mun}",
                                        f"device:{mun}-fil01"]}})
        out.append({"id": f"domene-{mun}", "name": "Domenetjenester",
                    "municipalities": [mun], "target": 99.8,
                    "depends": {"any": [f"device:{mun}-dc01", f"device:{mun}-dc02"]}})
        if mun in ("alta", "hammerfest"):
            out.append({"id": f"fagsystem-{mun}", "name": "Fagsystem",
                        "municipalities": [mun], "target": 99.0, "hours": "kontortid",
                        "depends": {"all": [f"service:domene-{mun}", f"device:{mun}-fag01",
                                            f"device:{mun}-sql01"]}})
    return out


HEADER = "# Generated by scripts/gen_example_estate.py; edit the script, not this file.\n"


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "deploy/examples/vest-finnmark")
    out.mkdir(parents=True, exist_ok=True)
    for name, content in generate().items():
        text = yaml.safe_dump(content, sort_keys=False, allow_unicode=True, width=100)
        (out / name).write_text(HEADER + text, encoding="utf-8")
    print(f"wrote {len(generate())} files to {out}")


if __name__ == "__main__":
    main()
