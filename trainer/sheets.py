"""The model inputs of evaluation sheets, read from an image store: one owner for the
benchmark's protocols (trainer/benchmark.py) and examiner-cited prior art (trainer/cited.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from patentclip.drawings.imagestore import LocalImageStore
from patentclip.errors import InvalidInputError
from trainer.data import EvalItem

if TYPE_CHECKING:
    from patentclip.model.encoder import Encoder


def drawing_inputs(encoder: Encoder, items: Sequence[EvalItem], images: LocalImageStore,
                   check: bool = True, reference: bool = False) -> list:
    """Model inputs of the items' drawings; ``check``: each image's sha256 must be the one
    frozen with the set (a corpus read as it is now passes False); ``reference``: open_clip's
    reference preprocessing instead of ours."""
    def one(item: EvalItem):
        data = images.get(item.image_uri)
        if check and hashlib.sha256(data).hexdigest() != item.image_sha256:
            raise InvalidInputError(f"{item.image_uri}: image changed since the evaluation "
                                    "set was frozen (sha256 differs)")
        if reference:
            return encoder.reference_pixels(data, item.image_uri)
        return encoder.drawing_pixels(data, item.image_uri)

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, items))
