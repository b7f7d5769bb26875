"""Server-side sessions on a fake clock: idle and absolute expiry, sign-out, bounds."""

from __future__ import annotations

from monitor.web.sessions import Sessions


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_idle_and_absolute_expiry() -> None:
    """Used every 59 minutes a session lives its 12 hours and no longer; left alone
    it ends after 2 hours; the id is checked by value only (a prefix or garbage is
    nobody's)."""
    clock = Clock()
    sessions = Sessions(max_age=12 * 3600, idle=2 * 3600, clock=clock)
    busy, idle = sessions.start("kari"), sessions.start("ola")
    seen = []
    while clock.now < 1_000 + 13 * 3600:
        clock.now += 59 * 60
        seen.append(sessions.user(busy))
    assert ["kari"] * 12 == seen[:12]  # 12 x 59 min = 11 h 48 min
    assert [None] == list(set(seen[13:]))  # past 12 h: gone, however busy
    assert None is sessions.user(idle)
    assert set() == sessions.users()  # both ended: nobody is signed in
    assert [None, None, None] == [sessions.user(x) for x in (busy[:10], "", "ø" * 40)]


def test_end_and_end_all() -> None:
    clock = Clock()
    sessions = Sessions(clock=clock)
    a, b, c = sessions.start("kari"), sessions.start("kari"), sessions.start("ola")
    assert "kari" == sessions.end(a)
    assert None is sessions.end(a)
    assert 1 == sessions.end_all("kari")
    assert (None, "ola") == (sessions.user(b), sessions.user(c))


def test_a_flood_of_sign_ins_keeps_the_store_bounded() -> None:
    """Over capacity, the least recently used sessions make room."""
    clock = Clock()
    sessions = Sessions(clock=clock, capacity=100)
    kept = sessions.start("kari")
    for i in range(1_000):
        clock.now += 1
        if i % 50 == 0:
            assert "kari" == sessions.user(kept)
        sessions.start(f"bot{i}")
    assert len(sessions._by_key) <= 100
    assert "kari" == sessions.user(kept)
