"""Typed settings shared by the CLI and (later) the services.

Built from environment variables (documented in ``.env.example``) and then overridden by
command-line flags, inside ``main()``; never at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import TypeVar

from patentclip.errors import InvalidInputError

DEFAULT_MODEL = "local-dir:data/models/patentclip-tiny"

T = TypeVar("T")


def settings_from_env(cls: type[T], prefix: str, env: Mapping[str, str] | None = None) -> T:
    """Build a flat settings dataclass from ``<prefix><FIELD NAME>`` variables.

    Values are converted to each field's default's type; a value that does not convert is
    an InvalidInputError naming the variable.
    """
    env = os.environ if env is None else env
    values = {}
    for f in fields(cls):
        name = f"{prefix}{f.name.upper()}"
        raw = env.get(name)
        if raw is None:
            continue
        kind = type(f.default)
        try:
            values[f.name] = raw.strip().lower() in ("1", "true", "yes", "on") \
                if kind is bool else kind(raw)
        except ValueError as exc:
            raise InvalidInputError(f"{name}={raw!r}: expected {kind.__name__}") from exc
    return cls(**values)


def with_flags(settings: T, flags: Mapping[str, object] | None) -> T:
    """``settings`` with the flags that were given applied (None means 'not given')."""
    return replace(settings, **{k: v for k, v in (flags or {}).items() if v is not None})


def require_positive(settings: object, names: tuple[str, ...], what: str) -> None:
    """InvalidInputError naming the first of ``names`` that is below 1."""
    for name in names:
        if getattr(settings, name) < 1:
            raise InvalidInputError(f"{what} setting {name}={getattr(settings, name)}: "
                                    "must be at least 1")


@dataclass(frozen=True)
class CoreSettings:
    """Where the model, the vectors and the drawing images are."""

    model: str = DEFAULT_MODEL  # PATENTCLIP_MODEL: open_clip name, hf-hub:..., local-dir:...
    pretrained: str = ""  # PATENTCLIP_PRETRAINED: pretrained tag or checkpoint file
    device: str = "cpu"  # PATENTCLIP_DEVICE: cpu, cuda, cuda:1
    batch_size: int = 32  # PATENTCLIP_BATCH_SIZE: encoder batch size
    milvus_uri: str = "data/patents.db"  # PATENTCLIP_MILVUS_URI: file = Milvus Lite, http://
    milvus_token: str = ""  # PATENTCLIP_MILVUS_TOKEN: "user:password" or API token
    milvus_timeout_s: float = 30.0  # PATENTCLIP_MILVUS_TIMEOUT_S: per call
    milvus_tls_ca: str = ""  # PATENTCLIP_MILVUS_TLS_CA: PEM CA of the server; turns TLS on
    milvus_tls_cert: str = ""  # PATENTCLIP_MILVUS_TLS_CERT: client certificate (mutual TLS)
    milvus_tls_key: str = ""  # PATENTCLIP_MILVUS_TLS_KEY: client key (mutual TLS)
    milvus_tls_server_name: str = ""  # PATENTCLIP_MILVUS_TLS_SERVER_NAME: if not the host
    search_ef: int = 128  # PATENTCLIP_SEARCH_EF: HNSW ef at search (raised to the fetch depth)
    hnsw_m: int = 16  # PATENTCLIP_HNSW_M: HNSW graph degree of new collections
    hnsw_ef_construction: int = 200  # PATENTCLIP_HNSW_EF_CONSTRUCTION: of new collections
    collection_prefix: str = "patentclip"  # PATENTCLIP_COLLECTION_PREFIX
    images_dir: str = "data/images"  # PATENTCLIP_IMAGES_DIR: local image store root
    registry_dir: str = "data/registry"  # PATENTCLIP_REGISTRY_DIR: model registry folder
    encoder_backend: str = "eager"  # PATENTCLIP_ENCODER_BACKEND: eager torch onnx int8 bf16 fp16
    onnx_cache_dir: str = "data/onnx"  # PATENTCLIP_ONNX_CACHE_DIR: exported towers per version

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CoreSettings:
        return settings_from_env(cls, "PATENTCLIP_", env)

    def encoder_options(self) -> dict:
        """Keyword arguments of Encoder.load for serving: device, batch size and backend."""
        return {"device": self.device, "batch_size": self.batch_size,
                "backend": self.encoder_backend, "onnx_cache_dir": self.onnx_cache_dir}

    def milvus_connection(self) -> dict:
        """Keyword arguments of MilvusClient beyond the URI: credentials and TLS files."""
        if bool(self.milvus_tls_cert) != bool(self.milvus_tls_key):
            raise InvalidInputError("PATENTCLIP_MILVUS_TLS_CERT and PATENTCLIP_MILVUS_TLS_KEY "
                                    "go together (mutual TLS)")
        options: dict = {"token": self.milvus_token}
        if self.milvus_tls_cert:
            options.update(secure=True, ca_pem_path=self.milvus_tls_ca,
                           client_pem_path=self.milvus_tls_cert,
                           client_key_path=self.milvus_tls_key)
        elif self.milvus_tls_ca:
            options.update(secure=True, server_pem_path=self.milvus_tls_ca)
        if self.milvus_tls_server_name:
            options["server_name"] = self.milvus_tls_server_name
        return options

    def override(self, **flags) -> CoreSettings:
        """Apply command-line flags that were given (None means 'not given')."""
        return with_flags(self, flags)

    def __repr__(self) -> str:
        return redacted_repr(self, ("milvus_token",))


def redacted_repr(settings: object, secrets: tuple[str, ...]) -> str:
    """``Name({...})`` with the values of ``secrets`` shown as *** (settings get logged)."""
    shown = {f.name: ("***" if f.name in secrets and getattr(settings, f.name)
                      else getattr(settings, f.name)) for f in fields(settings)}
    return f"{type(settings).__name__}({shown})"
