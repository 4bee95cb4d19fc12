"""Tokens, roles and credential settings: pure logic, no sockets."""

from __future__ import annotations

import hmac
import os
from dataclasses import replace

import pytest

from patentclip.config import CoreSettings
from patentclip.errors import InvalidInputError
from services.common import auth
from services.common.auth import (
    PermissionDeniedError,
    Role,
    TokenAuthenticator,
    UnauthenticatedError,
    bearer_token,
    new_token,
    token_line,
)
from services.common.broker import KafkaSettings
from services.query.config import ServerSettings


@pytest.fixture
def tokens(tmp_path):
    search, admin = new_token(), new_token()
    path = tmp_path / "tokens"
    path.write_text("# examiner tools\n"
                    f"{token_line(search, Role.SEARCH, 'examiner-ui')}\n\n"
                    f"{token_line(admin, Role.ADMIN, 'ops')}  # rotate quarterly\n")
    return path, search, admin


def test_the_file_stores_digests_never_tokens(tokens):
    path, search, admin = tokens
    text = path.read_text()
    assert search not in text and admin not in text
    assert auth.token_digest(search) in text


def test_roles_and_refusals(tokens):
    path, search, admin = tokens
    table = TokenAuthenticator(path)
    assert table.authorize(search, Role.SEARCH).name == "examiner-ui"
    assert table.authorize(admin, Role.ADMIN).role is Role.ADMIN
    assert table.authorize(admin, Role.SEARCH).name == "ops"  # admin may also search
    with pytest.raises(PermissionDeniedError, match="needs role admin"):
        table.authorize(search, Role.ADMIN)
    with pytest.raises(UnauthenticatedError, match="missing bearer token"):
        table.authorize(None, Role.SEARCH)
    with pytest.raises(UnauthenticatedError, match="invalid bearer token"):
        table.authorize(search + "x", Role.SEARCH)
    with pytest.raises(UnauthenticatedError):
        table.authorize(auth.token_digest(search), Role.SEARCH)  # the digest is no token


def test_every_entry_is_compared_even_after_a_match(tokens, monkeypatch):
    path, search, _ = tokens
    table = TokenAuthenticator(path)
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(auth.hmac, "compare_digest",
                        lambda a, b: calls.append(1) or real(a, b))
    table.authenticate(search)  # the first entry matches
    assert len(calls) == 2


@pytest.mark.parametrize(("text", "words"), [
    ("not-a-digest search alice\n", "tokens:1: expected '<sha256 hex digest> <role>"),
    ("# only a comment\n", "no tokens"),
    (f"{'a' * 64} root alice\n", "tokens:1: unknown role 'root'"),
])
def test_bad_tokens_files_name_the_file_and_line(tmp_path, text, words):
    path = tmp_path / "tokens"
    path.write_text(text)
    with pytest.raises(InvalidInputError, match=words):
        TokenAuthenticator(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidInputError, match="tokens file .*nope"):
        TokenAuthenticator(tmp_path / "nope")


def test_file_changes_are_picked_up_and_a_broken_edit_keeps_the_last_table(tokens):
    path, search, admin = tokens
    table = TokenAuthenticator(path, recheck_s=0)
    fresh = new_token()
    path.write_text(token_line(fresh, Role.SEARCH, "new") + "\n")
    os.utime(path, (1, 1))  # a different mtime, whatever the clock's resolution
    assert table.authenticate(fresh).name == "new"
    with pytest.raises(UnauthenticatedError):
        table.authenticate(search)  # rotated out
    path.write_text("garbage\n")
    os.utime(path, (2, 2))
    assert table.authenticate(fresh).name == "new"


@pytest.mark.parametrize(("header", "token"), [
    ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", None), ("Bearer", None),
    ("", None), (None, None)])
def test_bearer_header_parsing(header, token):
    assert bearer_token(header) == token


def test_token_names_are_checked():
    with pytest.raises(InvalidInputError, match="token name"):
        token_line(new_token(), Role.SEARCH, "two words")


def test_kafka_security_options():
    plain = KafkaSettings()
    assert plain.client_options()["security_protocol"] == "PLAINTEXT"
    assert "sasl_plain_password" not in plain.client_options()
    secure = replace(plain, security_protocol="sasl_ssl", sasl_mechanism="scram-sha-512",
                     sasl_username="embedder", sasl_password="hunter2",
                     ssl_cafile="/etc/kafka/ca.pem")
    options = secure.client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_password"] == "hunter2"
    assert options["ssl_cafile"] == "/etc/kafka/ca.pem"
    assert "hunter2" not in repr(secure) and "***" in repr(secure)
    with pytest.raises(InvalidInputError, match="SASL_PASSWORD"):
        replace(secure, sasl_password="").client_options()
    with pytest.raises(InvalidInputError, match="SECURITY_PROTOCOL='TLS'"):
        replace(plain, security_protocol="tls").client_options()


def test_milvus_credentials_and_tls_options():
    core = CoreSettings(milvus_uri="https://milvus:19530", milvus_token="root:Milvus")
    assert core.milvus_connection() == {"token": "root:Milvus"}
    assert "root:Milvus" not in repr(core)
    one_way = replace(core, milvus_tls_ca="/ca.pem", milvus_tls_server_name="milvus.internal")
    assert one_way.milvus_connection() == {
        "token": "root:Milvus", "secure": True, "server_pem_path": "/ca.pem",
        "server_name": "milvus.internal"}
    mutual = replace(core, milvus_tls_ca="/ca.pem", milvus_tls_cert="/c.pem",
                     milvus_tls_key="/c.key")
    assert mutual.milvus_connection()["client_key_path"] == "/c.key"
    with pytest.raises(InvalidInputError, match="TLS_KEY"):
        replace(core, milvus_tls_cert="/c.pem").milvus_connection()


@pytest.mark.parametrize(("changes", "words"), [
    ({"tls_cert": "c.pem"}, "tls_cert and tls_key go together"),
    ({"tls_client_ca": "ca.pem"}, "mutual TLS"),
])
def test_query_tls_settings_are_checked(changes, words):
    with pytest.raises(InvalidInputError, match=words):
        replace(ServerSettings(), **changes).validate()
