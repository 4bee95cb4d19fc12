"""The model registry: every trained PatentCLIP version, its lineage and its results.

Layout under ``root`` (``PATENTCLIP_REGISTRY_DIR``, default ``data/registry``)::

    models/<version>/open_clip_config.json     open_clip's local-dir layout, so
    models/<version>/open_clip_model.safetensors   ``local-dir:<folder>`` loads it anywhere
    models/<version>/manifest.json             parent, data window + hash, hyperparameters,
                                               benchmark results, created, weight checksums
    eval_sets/<name>.json                      frozen evaluation sets (benchmark versions)
    decisions.jsonl                            every rollout/rollback decision, with reasons

A version is ``<family>_<first 12 hex of the weights digest>``: the same weights always get
the same version, and the encoder reports exactly this version when it loads the folder
(and refuses weights whose digest differs from the manifest's).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from patentclip.errors import InvalidInputError, ModelLoadError, NotFoundError

MANIFEST = "manifest.json"
CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"
# The classification head a run trained beside the model (its weights and classes): kept
# with the version, so the next run starts from it instead of a random head.
HEAD_FILES = ("classification_head.safetensors", "classification_head.json")
_DIGEST_SUFFIX = re.compile(r"_[0-9a-f]{12}$")


@dataclass(frozen=True)
class ModelVersion:
    """One registered version."""

    version: str
    path: Path
    manifest: dict

    @property
    def spec(self) -> str:
        """What Encoder.load and PATENTCLIP_MODEL accept."""
        return f"local-dir:{self.path}"


def family_of(version: str) -> str:
    """'patentclip_tiny_0123456789ab' -> 'patentclip_tiny' (the lineage's name)."""
    return _DIGEST_SUFFIX.sub("", version) or "patentclip"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def registered_version(folder: Path, weights_digest: str) -> str | None:
    """The version a registry folder's manifest names, checked against the loaded weights.

    None for an ordinary model folder (no manifest). ModelLoadError when the weights differ
    from what was registered (a corrupted or swapped file).
    """
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return None
    manifest = _read_manifest(manifest_path)
    if manifest.get("weights_digest") != weights_digest:
        raise ModelLoadError(f"{folder}: weights do not match the registry manifest "
                             f"(digest {weights_digest[:12]}, manifest "
                             f"{str(manifest.get('weights_digest'))[:12]}); the file is "
                             "corrupted or was replaced")
    return str(manifest["version"])


def results_key(eval_set_sha256: str, protocol: str) -> str:
    """Where results are stored: the set's content hash and the protocol they were made
    under (results from before protocols were recorded have none, and match no request)."""
    return f"{eval_set_sha256}@{protocol or 'unversioned'}"


class ModelRegistry:
    """Versions, frozen evaluation sets and rollout decisions in one folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.models = self.root / "models"

    # -- versions

    def register(self, model_dir: str | Path, weights_digest: str, family: str,
                 parent: str = "", data: dict | None = None,
                 hyperparameters: dict | None = None) -> ModelVersion:
        """Copy a local-dir model in under its version; idempotent for the same weights."""
        source = Path(model_dir)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (source / name).is_file():
                raise InvalidInputError(f"{source}: no {name} (not an open_clip local-dir model)")
        version = f"{family}_{weights_digest[:12]}"
        target = self.models / version
        if (target / MANIFEST).is_file():
            return self.get(version)
        self.models.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=self.models))
        names = [CONFIG_FILE, WEIGHTS_FILE]
        if all((source / name).is_file() for name in HEAD_FILES):
            names += HEAD_FILES
        for name in names:
            shutil.copyfile(source / name, staging / name)
        manifest = {
            "version": version, "family": family, "parent": parent,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "weights_digest": weights_digest,
            "files": {n: file_sha256(staging / n) for n in names},
            "data": data or {}, "hyperparameters": hyperparameters or {}, "benchmarks": {},
        }
        _write_json(staging / MANIFEST, manifest)
        staging.rename(target)  # a version appears complete or not at all
        return ModelVersion(version, target, manifest)

    def get(self, version: str) -> ModelVersion:
        path = self.models / version
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", version) or not (path / MANIFEST).is_file():
            known = ", ".join(v.version for v in self.list()) or "none"
            raise NotFoundError(f"no model version {version!r} in registry {self.root} "
                                f"(registered: {known})")
        return ModelVersion(version, path, _read_manifest(path / MANIFEST))

    def exists(self, version: str) -> bool:
        return bool(re.fullmatch(r"[A-Za-z0-9_.-]+", version)) and \
            (self.models / version / MANIFEST).is_file()

    def list(self) -> list[ModelVersion]:
        """All versions, oldest first."""
        if not self.models.is_dir():
            return []
        versions = [ModelVersion(p.name, p, _read_manifest(p / MANIFEST))
                    for p in self.models.iterdir() if (p / MANIFEST).is_file()]
        return sorted(versions, key=lambda v: (v.manifest.get("created", ""), v.version))

    def verify(self, version: str) -> ModelVersion:
        """Check the files against the manifest's checksums; ModelLoadError if they differ."""
        entry = self.get(version)
        for name, expected in entry.manifest.get("files", {}).items():
            path = entry.path / name
            if not path.is_file():
                raise ModelLoadError(f"{version}: {name} is missing from {entry.path}")
            if file_sha256(path) != expected:
                raise ModelLoadError(f"{version}: {name} does not match its checksum in the "
                                     "manifest (corrupted or replaced)")
        return entry

    def record_benchmark(self, version: str, results: dict) -> None:
        """Store a model's results on a frozen evaluation set, keyed by the set's content
        hash (``results['eval_set_sha256']``): two sets of one name but other content never
        share results. A registered version keeps them in its manifest; any other model (an
        outside live checkpoint) under ``benchmarks/<version>/``."""
        if not results.get("eval_set_sha256"):
            raise InvalidInputError(f"{version}: benchmark results without eval_set_sha256")
        key = results_key(results["eval_set_sha256"], results.get("protocol", ""))
        if self.exists(version):
            entry = self.get(version)
            manifest = dict(entry.manifest)
            manifest["benchmarks"] = {**manifest.get("benchmarks", {}), key: results}
            _write_json(entry.path / MANIFEST, manifest)
        else:
            path = self._outside_benchmark(version, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_json(path, results)

    def benchmark_results(self, version: str, eval_set_sha256: str, protocol: str
                          ) -> dict | None:
        """A model's stored results on the set with this content hash, made under this
        protocol (the benchmark's and the preprocessing's versions), if any."""
        key = results_key(eval_set_sha256, protocol)
        if self.exists(version):
            return self.get(version).manifest.get("benchmarks", {}).get(key)
        path = self._outside_benchmark(version, key)
        return json.loads(path.read_text()) if path.is_file() else None

    def _outside_benchmark(self, version: str, key: str) -> Path:
        key = re.sub(r"[^A-Za-z0-9_.-]", "_", key)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", version)
        return self.root / "benchmarks" / safe / f"{key}.json"

    # -- evaluation sets and decisions

    def eval_set_path(self, name: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise InvalidInputError(f"evaluation set name {name!r}: use letters, digits, . _ -")
        return self.root / "eval_sets" / f"{name}.json"

    def record_decision(self, decision: dict) -> dict:
        """Append one decision (with a timestamp) to the log; returns what was stored."""
        stored = {"time": datetime.now(UTC).isoformat(timespec="seconds"), **decision}
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "decisions.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(stored, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return stored

    def decisions(self) -> list[dict]:
        path = self.root / "decisions.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _read_manifest(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: unreadable manifest: {exc}") from exc


def _write_json(path: Path, body: dict) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True))
    tmp.replace(path)
