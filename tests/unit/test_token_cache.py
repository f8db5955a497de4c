"""TokenService keeps the access tokens it verified until they expire: a cached token is never served
past its `exp`, a bad token never enters, and the cache is bounded."""

from __future__ import annotations

import time

import jwt
import pytest

from api import auth
from api.auth import TokenService
from api.errors import Unauthorized

USER = {"id": 7, "name": "Ana", "profile": "admin", "company_id": 3, "super": False}


def service() -> TokenService:
    return TokenService(secret="s" * 32, refresh_secret="r" * 32, access_ttl=60, refresh_ttl=3600)


def test_a_verified_token_is_answered_from_the_cache_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = service()
    token = tokens.access_token(USER, None)
    first = tokens.verify_access(token)
    assert (first.user_id, first.company_id, first.profile) == (7, 3, "admin")

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded again")

    monkeypatch.setattr(jwt, "decode", no_decoding)
    assert tokens.verify_access(token) is first  # from the cache
    monkeypatch.undo()
    # a token cached while valid whose exp has passed: verified again, and refused as expired
    now = int(time.time())
    expired = jwt.encode({"id": 7, "companyId": 3, "type": "access", "exp": now - 5}, "s" * 32, algorithm="HS256")
    tokens._verified[expired] = (first, now - 5)
    with pytest.raises(Unauthorized) as refused:
        tokens.verify_access(expired)
    assert refused.value.code == "ERR_SESSION_EXPIRED"


def test_bad_tokens_are_not_cached_and_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = service()
    forged = jwt.encode({"id": 1, "companyId": 1, "type": "access", "exp": int(time.time()) + 60}, "x" * 32,
                        algorithm="HS256")
    for _ in range(2):
        with pytest.raises(Unauthorized):
            tokens.verify_access(forged)
    assert forged not in tokens._verified
    monkeypatch.setattr(auth, "VERIFIED_CACHE_SIZE", 5)
    issued = [tokens.access_token({**USER, "id": n}, None) for n in range(8)]
    for token in issued:
        tokens.verify_access(token)
    assert len(tokens._verified) == 5 and list(tokens._verified) == issued[3:]  # the oldest went first
