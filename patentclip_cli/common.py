"""What every ``patentclip`` command shares: exit codes, the settings offered as flags, and
the encoder loader. Flags come from the settings' own declarations (patentclip/config.py)."""

from __future__ import annotations

import argparse

from patentclip.config import CoreSettings, flag_parser

EXIT_USAGE, EXIT_FAILED = 2, 1

COMMON_CORE_FLAGS = ("model", "pretrained", "device", "milvus_uri", "registry_dir")
KAFKA_FLAGS = ("bootstrap_servers", "topic", "partitions")


def common_flags() -> argparse.ArgumentParser:
    """The flags every command takes (before or after its name): model, Milvus, registry."""
    parser = flag_parser(CoreSettings, COMMON_CORE_FLAGS, "core")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def core_flags(*names: str) -> argparse.ArgumentParser:
    """More core settings as flags for one command (``--images-dir``, ``--batch-size``)."""
    return flag_parser(CoreSettings, names, "core")


def kafka_flags() -> argparse.ArgumentParser:
    from services.common.broker import KafkaSettings

    return flag_parser(KafkaSettings, KAFKA_FLAGS, "kafka")


def kafka_settings(args: argparse.Namespace):
    """KafkaSettings from the environment, then the Kafka flags that were given."""
    from services.common.broker import KafkaSettings

    return KafkaSettings.from_env(args=args, section="kafka")


def load_encoder(settings: CoreSettings):
    from patentclip.model.encoder import Encoder

    return Encoder.from_settings(settings)


def figure_labeller(settings: CoreSettings):
    """The figure-label reader PATENTCLIP_FIGURE_LABELS asks for (None: off), for `index`
    and `publish`; imported on use (OpenCV)."""
    if not settings.figure_labels:
        return None
    from patentclip.ingest.figures import FigureLabeller

    return FigureLabeller()
