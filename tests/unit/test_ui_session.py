"""Dashboard session and CSRF tokens (pure)."""

from __future__ import annotations

from imagedrop.web.ui import session

SECRET = b"s" * 32
KEYS = ("key-one", "key-two")


def test_a_session_is_good_until_it_expires():
    value = session.make_session(SECRET, "key-one", now=1000.0)
    assert session.valid_session(SECRET, value, KEYS, now=1000.0 + session.SESSION_SECONDS - 1)
    assert not session.valid_session(SECRET, value, KEYS, now=1000.0 + session.SESSION_SECONDS)


def test_removing_the_key_ends_its_sessions():
    value = session.make_session(SECRET, "key-one", now=0.0)
    assert not session.valid_session(SECRET, value, ("key-two",), now=1.0)


def test_forged_or_mangled_values_are_refused():
    value = session.make_session(SECRET, "key-one", now=0.0)
    body, mac = value.split(".")
    for bad in (None, "", "x", value + "x", f"{body}.{mac[:-1]}A", "a.b.c", "." * 600,
                session.make_session(b"other" * 8, "key-one", now=0.0)):
        assert not session.valid_session(SECRET, bad, KEYS, now=1.0), bad


def test_csrf_token_is_bound_to_the_session():
    one = session.make_session(SECRET, "key-one", now=0.0)
    two = session.make_session(SECRET, "key-two", now=0.0)
    token = session.csrf_token(SECRET, one)
    assert session.valid_csrf(SECRET, one, token)
    assert not session.valid_csrf(SECRET, two, token)
    assert not session.valid_csrf(SECRET, one, None)
    assert not session.valid_csrf(SECRET, one, "")
