"""Typed settings, each declared once: name, type, default and help in one ``setting()``.

A settings section is a frozen dataclass with an ``ENV_PREFIX``; every field declared with
``setting()`` is read from ``<ENV_PREFIX><NAME>`` (documented in ``.env.example``, which a
test checks against these declarations) and can be offered as a flag through
``flag_parser``, a parent parser the commands share, as KServe shares its model-server
parser. Settings are built inside ``main()`` (env, then the flags that were given), never at
import time.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from typing import Any, ClassVar, TypeVar

from patentclip.errors import InvalidInputError

DEFAULT_MODEL = "local-dir:data/models/patentclip-tiny"

T = TypeVar("T")


def setting(default: Any, help: str = "", *, flag: str = "", choices: Sequence = (),
            secret: bool = False) -> Any:
    """Declare one setting of a settings section: its default (whose type is the setting's
    type), its help, and optionally a flag name other than ``--<name>``, the values a flag
    accepts, and whether it is a secret (shown as *** wherever settings are printed)."""
    return field(default=default, metadata={"setting": True, "help": help, "flag": flag,
                                            "choices": tuple(choices), "secret": secret})


def declared(cls: type) -> list[Field]:
    """The fields of a settings section declared with ``setting()``."""
    return [f for f in fields(cls) if f.metadata.get("setting")]


def env_name(cls: type, name: str) -> str:
    """The environment variable of setting ``name``: ``PATENTCLIP_QUERY_PORT``."""
    return f"{cls.ENV_PREFIX}{name.upper()}"


def flag_parser(cls: type, names: Sequence[str], section: str) -> argparse.ArgumentParser:
    """A parent parser offering settings ``names`` of ``cls`` as flags.

    A flag that is given lands in the namespace as ``<section>.<name>``; one that is not
    leaves nothing (SUPPRESS), so ``given_flags`` tells "not given" from any value and a flag
    may sit before or after a subcommand.
    """
    parser = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    by_name = {f.name: f for f in declared(cls)}
    for name in names:
        f = by_name[name]
        flag = f.metadata["flag"] or "--" + name.replace("_", "-")
        text = f"{f.metadata['help']} (env {env_name(cls, name)})".lstrip()
        if isinstance(f.default, bool):
            parser.add_argument(flag, dest=f"{section}.{name}", help=text,
                                action=argparse.BooleanOptionalAction)
        else:
            parser.add_argument(flag, dest=f"{section}.{name}", help=text,
                                type=type(f.default), choices=f.metadata["choices"] or None,
                                metavar=None if f.metadata["choices"] else name.upper())
    return parser


def section_parsers(cls: type, flags: Mapping[str, Sequence[str]]
                    ) -> list[argparse.ArgumentParser]:
    """Parent parsers for a service's settings ``cls`` (a dataclass of sections): for each
    section name, the settings of that section offered as flags."""
    sections = {f.name: f.default_factory for f in fields(cls)}
    return [flag_parser(sections[name], names, name) for name, names in flags.items()]


def service_parser(prog: str, description: str, cls: type,
                   flags: Mapping[str, Sequence[str]]) -> argparse.ArgumentParser:
    """A service's command line: the settings ``flags`` of each section of ``cls``, and -v."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     parents=section_parsers(cls, flags))
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def given_flags(args: argparse.Namespace | None, section: str) -> dict[str, Any]:
    """The flags of ``section`` that were given on the command line."""
    prefix = section + "."
    return {key[len(prefix):]: value for key, value in vars(args or argparse.Namespace()).items()
            if key.startswith(prefix)}


class Section:
    """Base of a settings section (a frozen dataclass of ``setting()`` fields): read from
    ``<ENV_PREFIX><NAME>`` variables."""

    ENV_PREFIX: ClassVar[str] = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None,
                 args: argparse.Namespace | None = None, section: str = ""):
        """From the environment, then the flags given in ``args`` for ``section`` (the name
        ``flag_parser`` was given)."""
        return with_flags(settings_from_env(cls, cls.ENV_PREFIX, env), given_flags(args, section))

    def override(self, **values):
        """These settings with ``values`` applied (None means 'not given': left as is)."""
        return with_flags(self, values)


class ServiceSettings:
    """Base of a service's settings (a frozen dataclass whose fields are sections)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None,
                 args: argparse.Namespace | None = None):
        """Each section from the environment, then the flags given for it in ``args``
        (``section_parsers``)."""
        return cls(**{f.name: f.default_factory.from_env(env, args, f.name) for f in fields(cls)
                      if f.default_factory is not MISSING})

    def override(self, **sections: Mapping[str, Any] | None):
        """These settings with values applied per section (``core={"device": "cuda"}``);
        a value of None means 'not given' and leaves the setting as it is."""
        return replace(self, **{name: with_flags(getattr(self, name), values)
                                for name, values in sections.items()})


def settings_from_env(cls: type[T], prefix: str, env: Mapping[str, str] | None = None) -> T:
    """Build a settings section from ``<prefix><FIELD NAME>`` variables.

    Values are converted to each setting's type; a value that does not convert is an
    InvalidInputError naming the variable.
    """
    env = os.environ if env is None else env
    values = {}
    for f in declared(cls):
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
class CoreSettings(Section):
    """Where the model, the vectors and the drawing images are."""

    ENV_PREFIX: ClassVar[str] = "PATENTCLIP_"

    model: str = setting(DEFAULT_MODEL, "open_clip name, hf-hub:..., local-dir:...")
    pretrained: str = setting("", "pretrained tag or checkpoint file")
    device: str = setting("cpu", "cpu, cuda, cuda:1")
    batch_size: int = setting(32, "encoder batch size")
    milvus_uri: str = setting("data/patents.db", "file = Milvus Lite, http://")
    milvus_token: str = setting("", "\"user:password\" or API token", secret=True)
    milvus_timeout_s: float = setting(30.0, "per call")
    milvus_tls_ca: str = setting("", "PEM CA of the server; turns TLS on")
    milvus_tls_cert: str = setting("", "client certificate (mutual TLS)")
    milvus_tls_key: str = setting("", "client key (mutual TLS)")
    milvus_tls_server_name: str = setting("", "if not the host")
    search_ef: int = setting(128, "HNSW ef at search (raised to the fetch depth)")
    hnsw_m: int = setting(16, "HNSW graph degree of new collections")
    hnsw_ef_construction: int = setting(200, "of new collections")
    collection_prefix: str = setting("patentclip")
    images_dir: str = setting("data/images", "local image store root")
    registry_dir: str = setting("data/registry", "model registry folder")
    encoder_backend: str = setting("eager", "eager torch onnx int8 bf16 fp16")
    onnx_cache_dir: str = setting("data/onnx", "exported towers per version")
    figure_labels: bool = setting(False, "read the FIG. labels of sheets whose figures the "
                                  "XML leaves unknown (Tesseract; ~0.5 s a sheet)")
    part_tiles: str = setting("", "tiles of each figure stored for part matching, as "
                              "fractions of its sides ('0.5': 9 tiles, '0.5,0.3'); '' none")

    def tile_scales(self) -> tuple[float, ...]:
        """The part tiles' scales PATENTCLIP_PART_TILES asks for (): no part rows)."""
        try:
            scales = tuple(float(v) for v in self.part_tiles.replace(" ", "").split(",") if v)
        except ValueError:
            scales = (-1.0,)
        if not all(0.1 <= s < 1.0 for s in scales):
            raise InvalidInputError(f"PATENTCLIP_PART_TILES {self.part_tiles!r}: expected "
                                    "fractions in [0.1, 1), comma-separated (e.g. 0.5,0.3)")
        return scales

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

    def __repr__(self) -> str:
        return redacted_repr(self)


def redacted_repr(settings: object) -> str:
    """``Name({...})`` with secret settings that are set shown as *** (settings get logged)."""
    shown = {f.name: ("***" if f.metadata.get("secret") and getattr(settings, f.name)
                      else getattr(settings, f.name)) for f in fields(settings)}
    return f"{type(settings).__name__}({shown})"
