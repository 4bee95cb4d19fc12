"""protos/ is the source of truth: committed generated code must match a fresh generation."""

import subprocess
import sys

from harness import REPO
from patentclip.v1 import grant_pb2, search_pb2


def test_generated_code_matches_protos(tmp_path):
    protos = sorted(str(p.relative_to(REPO)) for p in (REPO / "protos").rglob("*.proto"))
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-Iprotos",
                    f"--python_out={tmp_path}", f"--pyi_out={tmp_path}",
                    f"--grpc_python_out={tmp_path}", *protos], cwd=REPO, check=True)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert generated, "protoc generated nothing"
    stale = [str(p) for p in generated
             if not (REPO / p).is_file() or (REPO / p).read_bytes() != (tmp_path / p).read_bytes()]
    assert stale == [], f"run `make proto` and commit: {stale}"


def test_grant_event_round_trip():
    event = grant_pb2.GrantEvent(schema_version=1, bundle="I20210105.tar")
    g = event.grant
    g.patent_number, g.kind, g.title, g.grant_date = "D0907292", "S1", "Cartridge", 20210105
    g.locarno.code, g.locarno.edition = "2803", "13"
    g.uspc.add(raw="D28 47", normalized="D28/47", main=True)
    g.figures.add(number="1", view=grant_pb2.VIEW_PERSPECTIVE, view_text="front perspective view")
    g.sheets.add(number=1, file_name="x-D00001.TIF", figure_numbers=["1"],
                 mapping=grant_pb2.SHEET_FIGURE_MAPPING_ONE_PER_SHEET)
    parsed = grant_pb2.GrantEvent.FromString(event.SerializeToString())
    assert parsed == event and parsed.grant.sheets[0].figure_numbers == ["1"]
    options = search_pb2.SearchOptions(top_k=10)
    assert not options.HasField("group_by_patent")  # unset means the default (on)
