"""PatentCLIPEmbeddingFunction: PatentCLIP with the interface of pymilvus's model functions.

    from pymilvus import MilvusClient
    from patentclip_client.milvus import PatentCLIPEmbeddingFunction

    ef = PatentCLIPEmbeddingFunction("local-dir:data/models/patentclip-tiny")  # in-process
    ef = PatentCLIPEmbeddingFunction(server="search.internal:50051", token=...)  # remote
    client.create_collection("my_designs", dimension=ef.dim)
    client.insert("my_designs", [{"id": i, "vector": v} for i, v in
                                 enumerate(ef.encode_documents(captions))])
    client.search("my_designs", data=ef.encode_queries(["hinged cosmetic case"]))
    client.search("my_designs", data=ef.encode_images(["D00001.TIF"]))  # drawing -> text

Like pymilvus's dense functions (``pymilvus.model.dense``), ``encode_queries`` and
``encode_documents`` return one float32 numpy vector per text and ``dim`` is the vector
size; CLIP's two sides are symmetric, so queries and documents are encoded alike. The
vectors are L2-normalized: use COSINE or IP. Remote mode calls the query service's
``EncodeText``/``EncodeImage`` RPCs (64 items per call), so it needs no model locally and
follows the service's live model; ``model_version`` says which one answered.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

try:  # subclass pymilvus' base when the optional pymilvus.model package is installed
    from pymilvus.model.base import BaseEmbeddingFunction
except ImportError:  # the interface is duck-typed; the package pulls in transformers
    BaseEmbeddingFunction = object

from patentclip.errors import InvalidInputError

ImageInput = str | Path | bytes  # or a PIL image
REMOTE_BATCH = 64  # the query service's per-call limit (MAX_ENCODE_ITEMS)


class PatentCLIPEmbeddingFunction(BaseEmbeddingFunction):
    """Text and drawing embeddings in PatentCLIP's shared space, in-process or remote."""

    def __init__(self, model: str | None = None, *, server: str | None = None,
                 pretrained: str | None = None, device: str = "cpu", batch_size: int = 32,
                 token: str = "", ca_cert: str = "", client_cert: str = "",
                 client_key: str = "", timeout: float = 30.0) -> None:
        """``model`` (an open_clip spec, ``local-dir:...`` or ``hf-hub:...``) loads it in
        this process; ``server`` (host:port of the query service) uses its live model."""
        if (model is None) == (server is None):
            raise InvalidInputError("give a model to load here or the server to ask, not "
                                    "both and not neither")
        self._encoder = self._client = None
        if model is not None:
            from patentclip.model.encoder import Encoder

            self._encoder = Encoder.load(model, pretrained=pretrained, device=device,
                                         batch_size=batch_size)
        else:
            from patentclip_client import PatentSearchClient

            self._client = PatentSearchClient(server, timeout=timeout, token=token,
                                              ca_cert=ca_cert, client_cert=client_cert,
                                              client_key=client_key)
        self._remote_version = ""

    # -- the pymilvus model interface

    def __call__(self, texts: Sequence[str]) -> list[np.ndarray]:
        return self.encode_documents(texts)

    def encode_queries(self, queries: Sequence[str]) -> list[np.ndarray]:
        return self._texts(queries)

    def encode_documents(self, documents: Sequence[str]) -> list[np.ndarray]:
        return self._texts(documents)

    @property
    def dim(self) -> int:
        if self._encoder is not None:
            return self._encoder.dim
        return int(self._client.server_info().dim)

    # -- drawings

    def encode_images(self, images: Sequence[ImageInput]) -> list[np.ndarray]:
        """Drawings (file paths, encoded bytes such as TIFF/PNG/JPEG, or PIL images)."""
        blobs, names = zip(*(_image_bytes(image, i) for i, image in enumerate(images)),
                           strict=True) if images else ((), ())
        if self._encoder is not None:
            return list(self._encoder.encode_drawings(list(blobs), list(names)))
        return self._remote(list(blobs), self._client.encode_images)

    @property
    def model_version(self) -> str:
        """The model that produced the vectors (remote: the server's live version)."""
        if self._encoder is not None:
            return self._encoder.model_version
        return self._remote_version or self._client.server_info().model_version

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    # -- steps

    def _texts(self, texts: Sequence[str]) -> list[np.ndarray]:
        if isinstance(texts, str):
            raise InvalidInputError("pass a list of texts, not one string")
        if self._encoder is not None:
            return list(self._encoder.encode_texts(list(texts)))
        return self._remote(list(texts), self._client.encode_texts)

    def _remote(self, items: list, call) -> list[np.ndarray]:
        vectors: list[np.ndarray] = []
        for start in range(0, len(items), REMOTE_BATCH):
            reply = call(items[start:start + REMOTE_BATCH])
            self._remote_version = reply.model_version
            vectors += [np.asarray(v.values, dtype=np.float32) for v in reply.vectors]
        return vectors


def _image_bytes(image: ImageInput, index: int) -> tuple[bytes, str]:
    if isinstance(image, bytes):
        return image, f"images[{index}]"
    if isinstance(image, str | Path):
        path = Path(image)
        try:
            return path.read_bytes(), str(path)
        except OSError as exc:
            raise InvalidInputError(f"{path}: {exc.strerror}") from exc
    if hasattr(image, "save"):  # a PIL image
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue(), f"images[{index}]"
    raise InvalidInputError(f"images[{index}]: expected a path, bytes or a PIL image, got "
                            f"{type(image).__name__}")
