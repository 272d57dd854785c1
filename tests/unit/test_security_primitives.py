"""Password hashing, access tokens, CSRF tokens and the credential secret box.

Each refusal is tested with the real libraries (argon2-cffi, PyJWT, cryptography);
forged tokens are made the way an attacker would make them.
"""

from __future__ import annotations

import base64
import json
import stat
import threading
import time
from pathlib import Path

import jwt
import pytest
from argon2 import PasswordHasher

from partnergate.security.csrf import check_csrf, csrf_token, new_session_id
from partnergate.security.passwords import hash_password, needs_rehash, verify_password
from partnergate.security.secretbox import SecretBox, SecretBoxError
from partnergate.security.tokens import (
    InvalidToken,
    TokenClaims,
    issue_token,
    key_id,
    new_signing_key,
    verify_token,
)

# ----------------------------------------------------------------------- passwords


def test_password_hash_is_argon2id_and_verifies() -> None:
    hashed = hash_password("s3cret")
    assert hashed.startswith("$argon2id$")
    assert verify_password(hashed, "s3cret")
    assert hash_password("s3cret") != hashed  # salted


@pytest.mark.parametrize("attempt", ["wrong", "S3cret", "s3cret ", ""])
def test_wrong_password_is_false(attempt: str) -> None:
    assert verify_password(hash_password("s3cret"), attempt) is False


@pytest.mark.parametrize("stored", ["", "plain", "$argon2id$v=19$garbage", "$2b$12$abc"])
def test_invalid_stored_hash_is_false_not_an_error(stored: str) -> None:
    assert verify_password(stored, "s3cret") is False


def test_unicode_password() -> None:
    assert verify_password(hash_password("Pässwört✓"), "Pässwört✓")


def test_needs_rehash_for_weaker_parameters() -> None:
    assert needs_rehash(hash_password("x")) is False
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("x")
    assert verify_password(weak, "x")
    assert needs_rehash(weak) is True
    assert needs_rehash("not a hash") is True


# -------------------------------------------------------------------------- tokens

ISSUER = "partnergate"


@pytest.fixture
def key() -> bytes:
    return new_signing_key()


def test_signing_keys_are_32_random_bytes() -> None:
    one, two = new_signing_key(), new_signing_key()
    assert len(one) == 32 and one != two


def test_token_round_trip(key: bytes) -> None:
    before = int(time.time())
    token = issue_token(
        key, "client-a", ["AuthGroup.TenantPartnerDirectoryConfigurator"], 3600, ISSUER
    )
    claims = verify_token(key, token, ISSUER)
    assert isinstance(claims, TokenClaims)
    assert claims.subject == "client-a"
    assert claims.issuer == ISSUER
    assert claims.roles == ("AuthGroup.TenantPartnerDirectoryConfigurator",)
    assert before <= claims.issued_at <= int(time.time())
    assert claims.expires_at == claims.issued_at + 3600
    assert len(claims.token_id) == 32
    assert claims.key_id == key_id(key)
    assert claims.extra == {}


def test_token_header_and_claims_on_the_wire(key: bytes) -> None:
    token = issue_token(key, "c", ["r"], 60, ISSUER, extra={"sv": "abc"})
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256" and header["kid"] == key_id(key)
    payload = jwt.decode(token, options={"verify_signature": False})
    assert set(payload) == {"iss", "sub", "iat", "exp", "jti", "roles", "sv"}
    assert verify_token(key, token, ISSUER).extra == {"sv": "abc"}


def test_each_token_has_its_own_id(key: bytes) -> None:
    one = verify_token(key, issue_token(key, "c", [], 60, ISSUER), ISSUER)
    two = verify_token(key, issue_token(key, "c", [], 60, ISSUER), ISSUER)
    assert one.token_id != two.token_id


def test_key_id_is_short_and_does_not_contain_the_key(key: bytes) -> None:
    kid = key_id(key)
    assert len(kid) == 16 and key.hex()[:16] != kid
    assert key_id(new_signing_key()) != kid


def _payload(**changes: object) -> dict[str, object]:
    """Claims as issue_token writes them, for tokens forged by hand."""
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": ISSUER,
        "sub": "c",
        "iat": now,
        "exp": now + 60,
        "jti": "x",
        "roles": [],
    }
    claims.update(changes)
    return claims


def _refusal(key: bytes, token: str, issuer: str = ISSUER) -> str:
    with pytest.raises(InvalidToken) as caught:
        verify_token(key, token, issuer)
    assert str(caught.value) == caught.value.reason
    return caught.value.reason


def test_expired_token(key: bytes) -> None:
    token = issue_token(key, "c", [], 60, ISSUER, now=time.time() - 120)
    assert _refusal(key, token).startswith("expired at ")


def test_leeway_tolerates_clock_skew(key: bytes) -> None:
    token = issue_token(key, "c", [], 60, ISSUER, now=time.time() - 65)
    assert verify_token(key, token, ISSUER, leeway_s=30).subject == "c"


def test_token_from_the_future(key: bytes) -> None:
    token = issue_token(key, "c", [], 60, ISSUER, now=time.time() + 600)
    assert "future" in _refusal(key, token)


def test_token_of_another_key_names_the_rotation(key: bytes) -> None:
    token = issue_token(new_signing_key(), "c", [], 60, ISSUER)
    assert "another key" in _refusal(key, token)


def test_tampered_payload_fails_the_signature(key: bytes) -> None:
    token = issue_token(key, "client-a", ["reader"], 60, ISSUER)
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"] = ["admin"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert "bad signature" in _refusal(key, f"{head}.{forged}.{signature}")


def test_same_kid_but_other_secret_fails_the_signature(key: bytes) -> None:
    forged = jwt.encode(
        _payload(),
        new_signing_key(),
        algorithm="HS256",
        headers={"kid": key_id(key)},
    )
    assert "bad signature" in _refusal(key, forged)


def test_alg_none_is_refused(key: bytes) -> None:
    payload = _payload(roles=["admin"])
    forged = jwt.encode(payload, None, algorithm="none", headers={"kid": key_id(key)})
    reason = _refusal(key, forged)
    assert "'none'" in reason and "HS256" in reason
    # the same, hand-made with a signature part that is empty
    head = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    assert "'none'" in _refusal(key, f"{head}.{body}.")


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_other_hmac_algorithm_is_refused(key: bytes) -> None:
    forged = jwt.encode(_payload(), key, algorithm="HS512", headers={"kid": key_id(key)})
    assert "'HS512' is not accepted" in _refusal(key, forged)


def test_wrong_issuer(key: bytes) -> None:
    token = issue_token(key, "c", [], 60, "someone-else")
    assert "wrong issuer" in _refusal(key, token)


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "a.b", "ey.ey.ey"])
def test_malformed_token(key: bytes, token: str) -> None:
    assert _refusal(key, token).startswith("malformed token")


def test_missing_claim_and_bad_roles(key: bytes) -> None:
    no_jti = _payload()
    del no_jti["jti"]
    signed = jwt.encode(no_jti, key, algorithm="HS256", headers={"kid": key_id(key)})
    assert "'jti'" in _refusal(key, signed)
    bad_roles = _payload(roles="admin")
    signed = jwt.encode(bad_roles, key, algorithm="HS256", headers={"kid": key_id(key)})
    assert "'roles'" in _refusal(key, signed)


def test_token_arguments_are_checked(key: bytes) -> None:
    with pytest.raises(ValueError):
        issue_token(b"short", "c", [], 60, ISSUER)
    with pytest.raises(ValueError):
        verify_token(b"short", "a.b.c", ISSUER)
    with pytest.raises(ValueError):
        issue_token(key, "c", [], 0, ISSUER)
    with pytest.raises(ValueError):
        issue_token(key, "c", [], 60, ISSUER, extra={"sub": "admin"})


# ---------------------------------------------------------------------------- CSRF


def test_csrf_token_is_stable_url_safe_and_session_bound() -> None:
    secret = new_signing_key()
    session = new_session_id()
    token = csrf_token(secret, session)
    assert token == csrf_token(secret, session)  # any node with the secret agrees
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert check_csrf(secret, session, token)
    assert csrf_token(secret, new_session_id()) != token


def test_session_ids_are_random_and_url_safe() -> None:
    ids = {new_session_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) >= 43 and "=" not in i and "/" not in i and "+" not in i for i in ids)


@pytest.mark.parametrize("mangle", ["other session", "other secret", "altered", "empty", "unicode"])
def test_wrong_csrf_token(mangle: str) -> None:
    secret, session = new_signing_key(), new_session_id()
    token = csrf_token(secret, session)
    if mangle == "other session":
        token = csrf_token(secret, new_session_id())
    elif mangle == "other secret":
        token = csrf_token(new_signing_key(), session)
    elif mangle == "altered":
        token = token[:-1] + ("A" if token[-1] != "A" else "B")
    elif mangle == "empty":
        token = ""
    else:
        token = token[:-1] + "é"
    assert check_csrf(secret, session, token) is False


def test_csrf_secret_must_be_long_enough() -> None:
    with pytest.raises(ValueError):
        csrf_token(b"short", "session")


# ----------------------------------------------------------------------- secretbox


def test_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "credentials.key"
    box = SecretBox.from_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(base64.urlsafe_b64decode(path.read_bytes().strip())) == 32
    blob = box.encrypt("pässword")
    assert SecretBox.from_key_file(path).decrypt(blob) == "pässword"
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_encryption_is_randomised_and_hides_the_plain_text(tmp_path: Path) -> None:
    box = SecretBox.from_key_file(tmp_path / "k")
    one, two = box.encrypt("secret-password"), box.encrypt("secret-password")
    assert one != two
    assert b"secret-password" not in one
    assert box.decrypt(memoryview(one)) == box.decrypt(bytearray(two)) == "secret-password"
    assert box.decrypt(box.encrypt("")) == ""


def test_wrong_key_says_the_key_file_does_not_match(tmp_path: Path) -> None:
    blob = SecretBox.from_key_file(tmp_path / "one.key").encrypt("pw")
    other = SecretBox.from_key_file(tmp_path / "two.key")
    with pytest.raises(SecretBoxError, match=r"key file .*two\.key does not match the data"):
        other.decrypt(blob)


def test_wrong_key_with_forged_key_id_still_fails(tmp_path: Path) -> None:
    """Even if the key id matched by chance, GCM's tag refuses the other key."""
    box = SecretBox.from_key_file(tmp_path / "one.key")
    other = SecretBox.from_key_file(tmp_path / "two.key")
    blob = bytearray(box.encrypt("pw"))
    blob[1:5] = bytes.fromhex(other.key_id)
    with pytest.raises(SecretBoxError, match="does not match the data"):
        other.decrypt(bytes(blob))


@pytest.mark.parametrize("position", [0, 3, 10, -1])
def test_tampered_or_damaged_value_is_refused(tmp_path: Path, position: int) -> None:
    box = SecretBox.from_key_file(tmp_path / "k")
    blob = bytearray(box.encrypt("pw"))
    blob[position] ^= 0x01
    with pytest.raises(SecretBoxError):
        box.decrypt(bytes(blob))


@pytest.mark.parametrize("blob", [b"", b"\x01", b"plain text password", b"\x02" + b"x" * 40])
def test_foreign_values_are_refused(tmp_path: Path, blob: bytes) -> None:
    with pytest.raises(SecretBoxError):
        SecretBox.from_key_file(tmp_path / "k").decrypt(blob)


@pytest.mark.parametrize("content", [b"", b"not base64 !!", base64.b64encode(b"short") + b"\n"])
def test_unusable_key_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    with pytest.raises(SecretBoxError, match="bad.key"):
        SecretBox.from_key_file(path)


def test_nodes_starting_at_once_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "shared.key"
    boxes: list[SecretBox] = []
    threads = [
        threading.Thread(target=lambda: boxes.append(SecretBox.from_key_file(path)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    blob = boxes[0].encrypt("pw")
    assert all(box.decrypt(blob) == "pw" for box in boxes)
    assert [p.name for p in tmp_path.iterdir()] == ["shared.key"]
