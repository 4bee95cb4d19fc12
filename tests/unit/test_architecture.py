"""The layout's direction, enforced: the core at the bottom, then what the applications
share and the client library, then the applications, the CLI, and the harness and
benchmarks on top. No module imports a layer above its own or a neighbour in its layer,
and no import cycle exists anywhere (imports inside functions count; ``if TYPE_CHECKING``
blocks do not: they never run)."""

from __future__ import annotations

import ast
from pathlib import Path

from harness import REPO

# Bottom to top. A unit may import its own modules and any unit of a lower layer.
LAYERS: tuple[tuple[str, ...], ...] = (
    # The core (``patentclip``), in its own layers: errors and the generated protobuf code;
    ("patentclip", "patentclip.errors", "patentclip.v1"),
    ("patentclip.config", "patentclip.grants"),  # settings declarations; the grant model, XML
    ("patentclip.codec",),  # grant events on the topic, the search API's enum maps
    ("patentclip.drawings", "patentclip.store"),  # drawings and the image store; Milvus
    ("patentclip.model",),  # encoder, backends, registry
    ("patentclip.search",),  # engine, ranking, batching, admission, BM25 captions
    ("patentclip.ingest",),  # grant sheets to rows, a bundle into the store
    # the client library; what the services share ("services" itself is an empty package)
    ("patentclip_client", "services.common", "services"),
    ("services.publisher", "services.embedder", "services.query"),  # applications
    ("trainer",),  # the trainer application (a rollout reindexes through the embedder)
    ("patentclip_cli",),  # every command
    ("harness",),  # tests', benchmarks' and the demo's harness
    ("benchmarks",),
)
TRANSPORT = ("grpc", "kafka")  # third-party packages the core must not import
PACKAGES = ("patentclip", "patentclip_client", "patentclip_cli", "services", "trainer",
            "harness", "benchmarks")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
                continue  # generated from protos/ (make proto)
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imported(tree: ast.AST) -> list[tuple[str, list[str]]]:
    """(module, names) of every import that runs: not under ``if TYPE_CHECKING``."""
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
               for n in ast.walk(node)}
    result = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            result += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            result.append((node.module, [alias.name for alias in node.names]))
    return result


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Our modules -> the modules of ours they import; and -> third-party top names."""
    modules = _modules()
    ours, others = {}, {}
    for name, path in modules.items():
        ours[name], others[name] = set(), set()
        for module, names in _imported(ast.parse(path.read_text())):
            if module.split(".")[0] not in PACKAGES:
                others[name].add(module.split(".")[0])
                continue
            submodules = {f"{module}.{n}" for n in names if f"{module}.{n}" in modules}
            if module in modules and (not names or len(submodules) < len(names)):
                submodules.add(module)  # "import m", or names defined in m itself
            ours[name] |= submodules - {name}
    return ours, others


def _unit(module: str) -> tuple[int, str]:
    """(layer, unit) of a module: the longest unit it is in."""
    matches = [(len(unit), level, unit) for level, units in enumerate(LAYERS) for unit in units
               if module == unit or module.startswith(unit + ".")]
    assert matches, f"{module} is in no layer: add its folder to LAYERS"
    _, level, unit = max(matches)
    return level, unit


def test_every_import_points_down_or_stays_in_its_unit():
    ours, _ = _graph()
    wrong = []
    for module, targets in ours.items():
        level, unit = _unit(module)
        for target in targets:
            t_level, t_unit = _unit(target)
            if t_unit != unit and t_level >= level:
                wrong.append(f"{module} -> {target} (layer {level} {unit} -> "
                             f"layer {t_level} {t_unit})")
    assert not wrong, "upward or sideways imports:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles():
    ours, _ = _graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in ours.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(ours):
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


def test_the_query_service_keeps_its_two_transports_apart_over_one_plane():
    """services/query: ``plane`` (the live snapshot, stored drawings) knows neither
    transport; ``rpc`` (gRPC) and ``http`` (the web app and the embedding provider) do not
    import each other; only ``main`` wires them together."""
    ours, _ = _graph()
    rules = {"services.query.plane": ("services.query.rpc", "services.query.http"),
             "services.query.rpc": ("services.query.http",),
             "services.query.http": ("services.query.rpc",)}
    wrong = [f"{module} -> {target}" for module, targets in ours.items()
             for part, banned in rules.items() if module.startswith(part + ".")
             for target in targets if target.startswith(banned)]
    assert not wrong, wrong


def test_core_imports_no_transport():
    """The core never imports gRPC or Kafka (pymilvus, a dependency, talks gRPC
    internally; that is not the core's business)."""
    _, others = _graph()
    offenders = [f"{module}: {name}" for module, names in others.items()
                 if _unit(module)[1].split(".")[0] == "patentclip" for name in names
                 if name in TRANSPORT]
    assert offenders == []


def test_the_client_library_needs_no_torch_numpy_or_milvus():
    """What examiner tooling installs (the base dependencies: grpcio, protobuf) is enough
    for ``patentclip_client`` and every core module it reaches."""
    ours, others = _graph()
    reached, todo = set(), ["patentclip_client.client", "patentclip_client"]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo += ours[module]
    heavy = {f"{m}: {n}" for m in reached for n in others[m]
             if n in ("torch", "numpy", "pymilvus", "open_clip", "kafka", "PIL")}
    assert not heavy, sorted(heavy)


def test_the_layers_cover_every_package_folder():
    for module in _modules():
        _unit(module)


def test_the_core_top_level_holds_only_its_packages_errors_and_config():
    """A new core module goes into the package of what it holds (and so into a layer):
    the top level is not a room to put things in."""
    flat = sorted(path.name for path in (REPO / "patentclip").glob("*.py"))
    assert flat == ["__init__.py", "config.py", "errors.py"], flat


def test_the_readme_layout_table_matches_the_tree():
    """Every folder of the repository is in the README's layout table, and every path the
    table names exists."""
    import re
    import subprocess

    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("## Layout"):]
    table = table[:table.index("\n\n", table.index("| path |"))]
    named = set(re.findall(r"`([\w./-]+)`", "\n".join(line.split("|")[1] for line in
                                                      table.splitlines()[2:])))
    missing = [path for path in named if not (REPO / path).exists()]
    assert not missing, f"the layout table names what does not exist: {missing}"
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    folders = {path.split("/")[0] for path in tracked if "/" in path and
               not path.startswith(".")}
    covered = {path.rstrip("/").split("/")[0] for path in named}
    assert folders <= covered, f"folders missing from the layout table: {folders - covered}"
