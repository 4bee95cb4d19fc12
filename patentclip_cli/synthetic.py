"""Synthetic weekly USPTO design bundles, for the demo and tests.

Writes ``I20YYMMDD.tar`` in USPTO's with-images layout: ``DESIGN/USD0xxxxxx-YYYYMMDD.ZIP``
members, each zip holding ``USD0xxxxxx-YYYYMMDD/USD0xxxxxx-YYYYMMDD.XML`` (us-patent-grant
v4.5) and bilevel CCITT G4 TIFF sheets; plus one utility-patent zip, which readers must
skip. Designs are line drawings of simple 3-D objects (each patent its own proportions)
rendered from the standard patent views, with realistic figure descriptions and claims.
Object types carry a Locarno class and are drawn with a long-tailed (Zipf) frequency.
"""

from __future__ import annotations

import io
import math
import tarfile
import zipfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image, ImageDraw

PAGE = (1000, 1400)  # pixels of one drawing sheet (bilevel)
_VIEW_ANGLES = {  # view name -> (azimuth, elevation) in degrees; camera looks at the origin
    "front perspective": (-35.0, 25.0), "front": (0.0, 0.0), "rear": (180.0, 0.0),
    "left side": (-90.0, 0.0), "right side": (90.0, 0.0), "top plan": (0.0, 90.0),
    "bottom plan": (0.0, -90.0), "rear perspective": (145.0, 25.0),
}


@dataclass(frozen=True)
class DesignType:
    key: str
    title: str
    article: str  # "a bottle"
    locarno: str
    uspc: str


DESIGN_TYPES: tuple[DesignType, ...] = (  # most frequent first (Zipf weights by position)
    DesignType("bottle", "Bottle", "a bottle", "0901", "D 9538"),
    DesignType("box", "Storage box", "a storage box", "0903", "D 9424"),
    DesignType("cup", "Drinking cup", "a drinking cup", "0702", "D 7523"),
    DesignType("lampshade", "Lamp shade", "a lamp shade", "2606", "D26117"),
    DesignType("table", "Table", "a table", "0603", "D 6475"),
    DesignType("case", "Cosmetic case with hinged lid", "a cosmetic case with hinged lid",
               "0301", "D 3 32"),
    DesignType("speaker", "Loudspeaker", "a loudspeaker", "1403", "D14214"),
    DesignType("vase", "Vase", "a vase", "1101", "D11143"),
    DesignType("stool", "Stool", "a stool", "0601", "D 6349"),
    DesignType("wheel", "Wheel", "a wheel", "1216", "D12204"),
    DesignType("elbow", "Pipe elbow", "a pipe elbow", "2301", "D23262"),
    DesignType("pyramid", "Paperweight", "a paperweight", "1902", "D19 91"),
)


@dataclass(frozen=True)
class SyntheticPatent:
    number: str  # D0907292
    design: DesignType
    grant_date: date
    views: tuple[str, ...]
    figures_per_sheet: int
    params: tuple[float, ...]
    # (doc-number as USPTO writes it, category): the examiner's citation of the patent of
    # the same position a week earlier (in the default numbering), an applicant's citation
    # of a real design patent outside any generated corpus; plus one non-patent reference.
    cites: tuple[tuple[str, str], ...] = ()

    @property
    def stem(self) -> str:
        return f"US{self.number}-{self.grant_date:%Y%m%d}"


class BundleGenerator:
    """Deterministic (by seed) generator of synthetic design grants and bundles."""

    def __init__(self, seed: int = 0, zipf_s: float = 1.1) -> None:
        self.seed = seed
        weights = np.array([1.0 / (i + 1) ** zipf_s for i in range(len(DESIGN_TYPES))])
        self.type_probabilities = weights / weights.sum()

    def patents(self, grant_date: date, count: int, first_number: int | None = None
                ) -> list[SyntheticPatent]:
        rng = np.random.default_rng([self.seed, grant_date.toordinal()])
        weeks = max(0, (grant_date - date(2021, 1, 5)).days // 7)
        first = first_number if first_number is not None else 900_000 + weeks * 1000
        patents = []
        for i in range(count):
            design = DESIGN_TYPES[rng.choice(len(DESIGN_TYPES), p=self.type_probabilities)]
            extra = [v for v in _VIEW_ANGLES if v != "front perspective"]
            n_views = int(rng.integers(3, len(extra) + 1))
            chosen = sorted(rng.choice(len(extra), size=n_views, replace=False))
            views = ("front perspective", *(extra[j] for j in chosen))
            cites = ((f"D{first - 1000 + i}", "examiner"),) if first_number is None and \
                weeks > 0 else ()
            patents.append(SyntheticPatent(
                number=f"D{first + i:07d}", design=design, grant_date=grant_date,
                views=views, figures_per_sheet=2 if rng.random() < 0.2 else 1,
                params=tuple(float(x) for x in rng.uniform(0.6, 1.4, size=6)),
                cites=(*cites, ("D844798", "applicant"))))
        return patents

    def write_bundle(self, out_dir: str | Path, grant_date: date, count: int,
                     first_number: int | None = None, with_utility: bool = True) -> Path:
        """Write ``out_dir/I<YYYYMMDD>.tar``; return its path."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"I{grant_date:%Y%m%d}.tar"
        with tarfile.open(path, "w") as tar:
            for patent in self.patents(grant_date, count, first_number):
                _add_bytes(tar, f"DESIGN/{patent.stem}.ZIP", self.patent_zip(patent))
            if with_utility:
                stem = f"US10{grant_date:%m%d}001-{grant_date:%Y%m%d}"
                _add_bytes(tar, f"UTIL0{grant_date:%m%d}/{stem}.ZIP",
                           _zip({f"{stem}/{stem}.XML": utility_xml(stem, grant_date)}))
        return path

    def patent_zip(self, patent: SyntheticPatent) -> bytes:
        files = {f"{patent.stem}/{patent.stem}.XML": grant_xml(patent)}
        for name, data in render_sheets(patent).items():
            files[f"{patent.stem}/{name}"] = data
        return _zip(files)


# ----------------------------------------------------------------------------- XML


def figure_descriptions(patent: SyntheticPatent) -> list[str]:
    article = patent.design.article
    lines = []
    for i, view in enumerate(patent.views, start=1):
        if i == 1:
            text = f"is a {view} view of {article} showing our new design"
        else:
            text = f"is a {view} view thereof"
        end = "." if i == len(patent.views) else ("; and," if i == len(patent.views) - 1
                                                  else ";")
        lines.append((f"FIG. {i}", f" {text}{end}"))
    return lines


def grant_xml(patent: SyntheticPatent) -> bytes:
    d = patent.design
    n_sheets = _sheet_count(patent)
    paragraphs = "".join(
        f'<p id="p-{i:04d}" num="{i:04d}"><figref idref="DRAWINGS">{ref}</figref>{escape(text)}</p>\n'
        for i, (ref, text) in enumerate(figure_descriptions(patent), start=1))
    paragraphs += (f'<p id="p-{len(patent.views) + 1:04d}" num="{len(patent.views) + 1:04d}">'
                   f"The broken lines illustrate environment and form no part of the claimed "
                   f"design.</p>\n")
    figures = "".join(
        f'<figure id="Fig-EMI-D{s:05d}" num="{s:05d}"><img id="EMI-D{s:05d}" he="200.00mm" '
        f'wi="140.00mm" file="{patent.stem}-D{s:05d}.TIF" alt="embedded image" '
        f'img-content="drawing" img-format="tif"/></figure>\n' for s in range(n_sheets + 1))
    day = f"{patent.grant_date:%Y%m%d}"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE us-patent-grant SYSTEM "us-patent-grant-v45-2014-04-03.dtd" [ ]>
<us-patent-grant lang="EN" dtd-version="v4.5 2014-04-03" file="{patent.stem}.XML" status="PRODUCTION" id="us-patent-grant" country="US" date-produced="{day}" date-publ="{day}">
<us-bibliographic-data-grant>
<publication-reference><document-id><country>US</country><doc-number>{patent.number}</doc-number><kind>S1</kind><date>{day}</date></document-id></publication-reference>
<application-reference appl-type="design"><document-id><country>US</country><doc-number>29{patent.number[2:]}</doc-number><date>20190220</date></document-id></application-reference>
<us-application-series-code>29</us-application-series-code>
<us-term-of-grant><length-of-grant>15</length-of-grant></us-term-of-grant>
<classification-locarno><edition>13</edition><main-classification>{d.locarno}</main-classification></classification-locarno>
<classification-national><country>US</country><main-classification>{d.uspc}</main-classification></classification-national>
<invention-title id="d2e71">{escape(d.title)}</invention-title>
<number-of-claims>1</number-of-claims>
<us-references-cited>
{_citations_xml(patent)}</us-references-cited>
<figures><number-of-drawing-sheets>{n_sheets}</number-of-drawing-sheets><number-of-figures>{len(patent.views)}</number-of-figures></figures>
</us-bibliographic-data-grant>
<drawings id="DRAWINGS">
{figures}</drawings>
<description id="description">
<description-of-drawings>
{paragraphs}</description-of-drawings>
</description>
<us-claim-statement>CLAIM</us-claim-statement>
<claims id="claims"><claim id="CLM-00001" num="00001"><claim-text>The ornamental design for {escape(d.article)}, as shown and described.</claim-text></claim></claims>
</us-patent-grant>
""".encode()


def _citations_xml(patent: SyntheticPatent) -> str:
    rows = [f'<us-citation><patcit num="{i:05d}"><document-id><country>US</country>'
            f"<doc-number>{number}</doc-number><kind>S</kind><name>Doe</name>"
            f"<date>20200100</date></document-id></patcit><category>cited by {category}"
            "</category></us-citation>\n"
            for i, (number, category) in enumerate(patent.cites, start=1)]
    rows.append(f'<us-citation><nplcit num="{len(rows) + 1:05d}"><othercit>Design catalogue '
                "of the year, p. 12.</othercit></nplcit><category>cited by applicant"
                "</category></us-citation>\n")
    return "".join(rows)


def utility_xml(stem: str, grant_date: date) -> bytes:
    number = stem[2:].split("-")[0]
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<us-patent-grant lang="EN" dtd-version="v4.5 2014-04-03" file="{stem}.XML" country="US">
<us-bibliographic-data-grant>
<publication-reference><document-id><country>US</country><doc-number>{number}</doc-number><kind>B2</kind><date>{grant_date:%Y%m%d}</date></document-id></publication-reference>
<invention-title id="t1">Method for testing readers</invention-title>
</us-bibliographic-data-grant>
</us-patent-grant>
""".encode()


# ----------------------------------------------------------------------------- drawings


def render_sheets(patent: SyntheticPatent) -> dict[str, bytes]:
    """File name -> G4 TIFF bytes, front page (D00000 = FIG. 1) first."""
    edges = design_edges(patent.design.key, patent.params)
    figures = [(i, _render_view(edges, view)) for i, view in enumerate(patent.views, start=1)]
    sheets = {f"{patent.stem}-D00000.TIF": _page([figures[0]])}
    per = patent.figures_per_sheet
    for s in range(_sheet_count(patent)):
        sheets[f"{patent.stem}-D{s + 1:05d}.TIF"] = _page(figures[s * per:(s + 1) * per])
    return sheets


def _sheet_count(patent: SyntheticPatent) -> int:
    return math.ceil(len(patent.views) / patent.figures_per_sheet)


def _page(figures: list[tuple[int, list]]) -> bytes:
    page = Image.new("L", PAGE, 255)
    draw = ImageDraw.Draw(page)
    slot_h = PAGE[1] // len(figures)
    for slot, (number, lines2d) in enumerate(figures):
        top = slot * slot_h
        box = (80, top + 60, PAGE[0] - 80, top + slot_h - 120)
        for polyline in _fit(lines2d, box):
            draw.line(polyline, fill=0, width=3)
        draw.text((PAGE[0] // 2 - 30, top + slot_h - 90), f"FIG. {number}", fill=0)
    buffer = io.BytesIO()
    page.convert("1").save(buffer, format="TIFF", compression="group4", dpi=(300, 300))
    return buffer.getvalue()


def _fit(lines2d: list[np.ndarray], box: tuple[int, int, int, int]) -> list[list[tuple]]:
    points = np.concatenate(lines2d)
    lo, hi = points.min(axis=0), points.max(axis=0)
    scale = min((box[2] - box[0]) / max(hi[0] - lo[0], 1e-6),
                (box[3] - box[1]) / max(hi[1] - lo[1], 1e-6))
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    mid = (lo + hi) / 2
    out = []
    for line in lines2d:
        xy = (line - mid) * scale
        xy[:, 1] = -xy[:, 1]  # image y grows downwards
        out.append([tuple(p) for p in (xy + centre)])
    return out


def _render_view(edges: list[np.ndarray], view: str) -> list[np.ndarray]:
    azimuth, elevation = (math.radians(a) for a in _VIEW_ANGLES[view])
    rz = np.array([[math.cos(azimuth), -math.sin(azimuth), 0],
                   [math.sin(azimuth), math.cos(azimuth), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(elevation), -math.sin(elevation)],
                   [0, math.sin(elevation), math.cos(elevation)]])
    rotation = rx @ rz
    return [(e @ rotation.T)[:, [0, 2]] for e in edges]  # orthographic: drop depth (y)


def design_edges(key: str, p: tuple[float, ...]) -> list[np.ndarray]:
    """3-D polylines (arrays of xyz points) of one design; ``p`` sets its proportions."""
    builders = {
        "bottle": lambda: _revolve([(0.5 * p[0], 0), (0.5 * p[0], 1.4 * p[1]),
                                    (0.18 * p[2], 1.8 * p[1]), (0.18 * p[2], 2.2 * p[1])]),
        "vase": lambda: _revolve([(0.3 * p[0], 0), (0.6 * p[1], 0.7), (0.25 * p[2], 1.6 * p[3]),
                                  (0.4 * p[4], 2.0 * p[3])]),
        "cup": lambda: _revolve([(0.4 * p[0], 0), (0.5 * p[0], 1.0 * p[1])])
        + [_arc((0.5 * p[0], 0, 0.5 * p[1]), 0.3 * p[2])],
        "lampshade": lambda: _revolve([(0.8 * p[0], 0), (0.35 * p[1], 0.9 * p[2])]),
        "box": lambda: _box(1.2 * p[0], 0.8 * p[1], 0.7 * p[2]),
        "case": lambda: _box(1.0 * p[0], 0.7 * p[1], 0.3 * p[2])
        + _box(1.0 * p[0], 0.7 * p[1], 0.08, z0=0.3 * p[2] + 0.25, tilt=0.5),
        "speaker": lambda: _box(0.7 * p[0], 0.6 * p[1], 1.2 * p[2])
        + [_circle((0, -0.3 * p[1], 0.4 * p[2]), 0.25 * p[0], "y"),
           _circle((0, -0.3 * p[1], 0.9 * p[2]), 0.12 * p[0], "y")],
        "table": lambda: _box(1.6 * p[0], 0.9 * p[1], 0.08, z0=0.9 * p[2])
        + _legs(0.7 * p[0], 0.35 * p[1], 0.9 * p[2], 4),
        "stool": lambda: _revolve([(0.5 * p[0], 0.9 * p[1]), (0.5 * p[0], 1.0 * p[1])])
        + _legs(0.35 * p[0], 0.35 * p[0], 0.9 * p[1], 3),
        "wheel": lambda: [_circle((0, 0, 0), 1.0 * p[0], "y"), _circle((0, 0, 0), 0.8 * p[0], "y"),
                          _circle((0, 0, 0), 0.15 * p[1], "y")]
        + [np.array([[0, 0, 0], [0.8 * p[0] * math.cos(a), 0, 0.8 * p[0] * math.sin(a)]])
           for a in np.linspace(0, 2 * math.pi, int(4 + 4 * p[2]), endpoint=False)],
        "elbow": lambda: _revolve([(0.3 * p[0], 0), (0.3 * p[0], 1.0 * p[1])])
        + [_circle((0.3 + 0.6 * p[2], 0, 1.0 * p[1] + 0.3), 0.3 * p[0], "x"),
           np.array([[0.3 * p[0], 0, 1.0 * p[1]], [0.3 + 0.6 * p[2], 0, 1.3 * p[1] + 0.3]])],
        "pyramid": lambda: _pyramid(1.0 * p[0], 1.0 * p[1], 1.2 * p[2]),
    }
    return builders[key]()


def _circle(centre, radius: float, axis: str = "z", n: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n + 1)
    c, s = radius * np.cos(t), radius * np.sin(t)
    zeros = np.zeros_like(t)
    xyz = {"z": (c, s, zeros), "y": (c, zeros, s), "x": (zeros, c, s)}[axis]
    return np.stack(xyz, axis=1) + np.asarray(centre, dtype=float)


def _revolve(profile: list[tuple[float, float]], meridians: int = 8) -> list[np.ndarray]:
    rings = [_circle((0, 0, z), r) for r, z in profile]
    lines = []
    for a in np.linspace(0, 2 * math.pi, meridians, endpoint=False):
        lines.append(np.array([[r * math.cos(a), r * math.sin(a), z] for r, z in profile]))
    return rings + lines


def _box(w: float, d: float, h: float, z0: float = 0.0, tilt: float = 0.0) -> list[np.ndarray]:
    x, y = w / 2, d / 2
    corners = np.array([[sx * x, sy * y, z0 + sz * h] for sz in (0, 1)
                        for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))])
    if tilt:  # hinge along the rear edge
        hinge = np.array([0, y, z0])
        rel = corners - hinge
        rot = np.array([[1, 0, 0], [0, math.cos(tilt), -math.sin(tilt)],
                        [0, math.sin(tilt), math.cos(tilt)]])
        corners = rel @ rot.T + hinge
    faces = [[0, 1, 2, 3, 0], [4, 5, 6, 7, 4]] + [[i, i + 4] for i in range(4)]
    return [corners[f] for f in faces]


def _legs(x: float, y: float, h: float, count: int) -> list[np.ndarray]:
    if count == 3:
        spots = [(x * math.cos(a), y * math.sin(a)) for a in (0, 2.1, 4.2)]
    else:
        spots = [(sx * x, sy * y) for sx in (-1, 1) for sy in (-1, 1)]
    return [np.array([[a, b, 0.0], [a, b, h]]) for a, b in spots]


def _pyramid(w: float, d: float, h: float) -> list[np.ndarray]:
    base = np.array([[-w / 2, -d / 2, 0], [w / 2, -d / 2, 0], [w / 2, d / 2, 0],
                     [-w / 2, d / 2, 0]])
    apex = np.array([0, 0, h])
    return [np.vstack([base, base[:1]])] + [np.array([c, apex]) for c in base]


def _arc(centre, radius: float) -> np.ndarray:
    t = np.linspace(-math.pi / 2, math.pi / 2, 24)
    cx, cy, cz = centre
    return np.stack([cx + radius * np.cos(t), np.full_like(t, cy), cz + radius * np.sin(t)], 1)


# ----------------------------------------------------------------------------- archives


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            # a fixed timestamp keeps bundles byte-identical for the same seed
            info = zipfile.ZipInfo(name, date_time=(2021, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 1_600_000_000
    tar.addfile(info, io.BytesIO(data))
