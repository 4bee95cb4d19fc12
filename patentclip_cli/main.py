"""``patentclip``: the command line over the core.

    patentclip generate --out data/bundles --date 2021-01-05 --patents 40
    patentclip model init-tiny --out data/models/patentclip-tiny
    patentclip index data/bundles/I20210105.tar
    patentclip search --text "bottle with a narrow neck" --locarno 09 --k 10
    patentclip search --image drawing.tif --json
    patentclip search --server localhost:50051 --similar D0907292 --k 20
    patentclip collections
    patentclip publish data/bundles/I20210105.tar --bootstrap-servers 127.0.0.1:9092
    patentclip publish /backfill/bundles/     (every weekly bundle in date order, resumable)
    patentclip withdraw D0907292              (a tombstone: the patent leaves the index)
    patentclip serve embedder            (same as: python -m services.embedder)
    patentclip reindex --model local-dir:data/models/new
    patentclip train --epochs 3           (one trainer cycle: python -m trainer --once)
    patentclip benchmark VERSION | models list | models show VERSION
    patentclip rollout VERSION | rollback

Settings come from PATENTCLIP_* environment variables (see .env.example), then flags.
Errors are one clear line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import date
from pathlib import Path

from patentclip.codec.events import region_from_proto
from patentclip.config import CoreSettings, given_flags
from patentclip.drawings.parts import Tiling
from patentclip.errors import (
    ERROR_ANSWERS,
    AuthError,
    InvalidInputError,
    NotFoundError,
    PatentClipError,
)
from patentclip.grants.model import (
    LOCARNO_MAIN_CLASSES,
    SHEET_VIEWS,
    iso_date,
    normalize_patent_number,
    yyyymmdd,
)
from patentclip.search.engine import AGAINST
from patentclip.store import Hit, PatentStore, SearchFilters, open_store
from patentclip_cli import queries, streaming, trainer
from patentclip_cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    common_flags,
    core_flags,
    figure_labeller,
    load_encoder,
)

logger = logging.getLogger("patentclip")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:  # every flag belongs to the trainer (argparse REMAINDER cannot
        from trainer.main import main as trainer_main  # take leading --options)

        return trainer_main(["--once", "--progress", *argv[1:]])
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is streaming.run_serve:
        return streaming.run_serve(args, None)  # the service configures its own logging
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_USAGE
    settings = CoreSettings.from_env(args=args, section="core")
    try:
        return args.run(args, settings)
    except InvalidInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PatentClipError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _parser() -> argparse.ArgumentParser:
    # Flags not given leave no attribute (SUPPRESS), so "patentclip --model X index" and
    # "patentclip index --model X" both work (subparser defaults would overwrite otherwise).
    common = common_flags()
    parser = argparse.ArgumentParser(prog="patentclip", description=__doc__.split("\n")[0],
                                     parents=[common])
    sub = parser.add_subparsers(title="commands")

    gen = sub.add_parser("generate", parents=[common],
                         help="write a synthetic weekly USPTO design bundle (I20YYMMDD.tar)")
    gen.add_argument("--out", required=True, type=Path)
    gen.add_argument("--date", type=date.fromisoformat, default=date(2021, 1, 5),
                     help="grant date (a Tuesday), YYYY-MM-DD")
    gen.add_argument("--patents", type=int, default=40)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--first-number", type=int, default=None,
                     help="first patent number (default derived from the date)")
    gen.set_defaults(run=_run_generate)

    model = sub.add_parser("model", parents=[common], help="model utilities")
    model_sub = model.add_subparsers(title="model commands")
    tiny = model_sub.add_parser("init-tiny", parents=[common],
                                help="create the tiny open_clip model used by tests and demo")
    tiny.add_argument("--out", required=True, type=Path)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(run=_run_init_tiny)
    info = model_sub.add_parser("info", parents=[common], help="load a model, print its version")
    info.set_defaults(run=_run_model_info)

    index = sub.add_parser("index", parents=[common, core_flags("images_dir", "batch_size")],
                           help="read grants, encode sheets and captions, upsert into Milvus")
    index.add_argument("sources", nargs="+", help="I20YYMMDD.tar, per-patent zip, ipg zip "
                       "or folder")
    index.add_argument("--no-progress", action="store_true")
    index.add_argument("--set-live", action="store_true",
                       help="point the live alias at this model's collection (it is set "
                       "automatically when no live collection exists yet)")
    index.set_defaults(run=_run_index)

    search = sub.add_parser("search", parents=[common],
                            help="search by text, a drawing (or part of it), both, or a patent")
    queries.add_query_flags(search)
    search.add_argument("--locarno", action="append", default=[],
                        help="Locarno class (02) or class+subclass (0204); repeatable")
    search.add_argument("--from", dest="date_from", type=date.fromisoformat)
    search.add_argument("--to", dest="date_to", type=date.fromisoformat)
    search.add_argument("--view", action="append", default=[], choices=SHEET_VIEWS,
                        metavar="VIEW", help=f"repeatable; one of {', '.join(SHEET_VIEWS)}")
    search.add_argument("--k", type=int, default=10)
    search.add_argument("--against", choices=AGAINST,
                        help="what to match: drawings, sheet captions, both, the patents' "
                        "words (BM25), or all fused (default: all for text, drawing for "
                        "images)")
    search.add_argument("--no-group", action="store_true",
                        help="return sheets, not one hit per patent")
    search.add_argument("--suggest-classes", type=int, default=0, metavar="N",
                        help="also the query's N most probable Locarno classes, by the model's "
                        "classification head (a model trained without one says so)")
    search.add_argument("--collection", help="collection or alias (default: the live alias)")
    search.add_argument("--json", action="store_true")
    search.add_argument("--server", metavar="HOST:PORT",
                        help="ask a running query service (gRPC) instead of searching locally")
    search.add_argument("--page-token", default="", help="--server: next page of a search")
    search.add_argument("--timeout", type=float, default=10.0, help="--server: deadline (s)")
    _add_connection_flags(search)
    search.set_defaults(run=_run_search)

    cites = sub.add_parser("cites", parents=[common, core_flags("images_dir")],
                           help="what a grant cites (the examiner's citations first) and which "
                           "grants of the corpus cite it")
    cites.add_argument("patent", help="e.g. D0907292, D907,292")
    cites.add_argument("--json", action="store_true")
    cites.add_argument("--server", metavar="HOST:PORT",
                       help="ask a running query service (GetPatent) instead of the local "
                       "image store")
    cites.add_argument("--timeout", type=float, default=10.0, help="--server: deadline (s)")
    _add_connection_flags(cites)
    cites.set_defaults(run=_run_cites)

    reload = sub.add_parser("reload", help="ask a query service to serve the live alias now "
                            "(admin token)")
    reload.add_argument("--server", metavar="HOST:PORT", required=True)
    reload.add_argument("--timeout", type=float, default=30.0)
    _add_connection_flags(reload)
    reload.set_defaults(run=_run_reload)

    token = sub.add_parser("token", help="make a bearer token for the query service")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    new = token_sub.add_parser("new", help="print a new token and its tokens-file line")
    new.add_argument("--role", choices=("search", "admin"), required=True)
    new.add_argument("--name", required=True, help="who uses it (shown in logs, not secret)")
    new.set_defaults(run=_run_token_new)
    init = token_sub.add_parser(
        "init", help="once, for a deployment: a tokens file with one new token, and the token "
        "in a file beside it only its operator reads; an existing tokens file is left as is")
    init.add_argument("--dir", type=Path, required=True, help="e.g. /data/auth")
    init.add_argument("--role", choices=("search", "admin"), default="search")
    init.add_argument("--name", default="examiner", help="the token's name (in logs)")
    init.set_defaults(run=_run_token_init)

    cols = sub.add_parser("collections", parents=[common], help="list collections")
    cols.set_defaults(run=_run_collections)

    streaming.add_commands(sub, common)
    trainer.add_commands(sub, common)
    return parser


# ----------------------------------------------------------------------------- commands


def _run_generate(args, settings: CoreSettings) -> int:
    from patentclip_cli.synthetic import BundleGenerator

    path = BundleGenerator(seed=args.seed).write_bundle(
        args.out, args.date, args.patents, first_number=args.first_number)
    print(f"wrote {path}")
    return 0


def _run_init_tiny(args, settings: CoreSettings) -> int:
    from patentclip.model.encoder import create_tiny_model

    out = create_tiny_model(args.out, seed=args.seed)
    print(f"wrote tiny model to {out}; use --model local-dir:{out}")
    return 0


def _run_model_info(args, settings: CoreSettings) -> int:
    encoder = load_encoder(settings)
    print(json.dumps(encoder.info.__dict__, indent=2))
    return 0


def _run_index(args, settings: CoreSettings) -> int:
    from patentclip.drawings.imagestore import LocalImageStore
    from patentclip.ingest.indexer import Indexer

    for source in args.sources:
        if not Path(source).exists():
            raise InvalidInputError(f"{source}: no such file or folder")
    encoder = load_encoder(settings)
    with open_store(settings) as store:
        indexer = Indexer(encoder, store, LocalImageStore(settings.images_dir),
                          batch_size=settings.batch_size, progress=not args.no_progress,
                          labeller=figure_labeller(settings),
                          tiling=Tiling.of(settings.tile_scales()))
        summary = indexer.index(args.sources)
        live = _set_live_if_needed(store, summary.collection, args.set_live)
    print(f"indexed {summary.grants} grants, {summary.sheets} sheets ({summary.rows} rows) "
          f"into {summary.collection} in {summary.seconds:.1f}s "
          f"({summary.sheets_per_second:.1f} sheets/s){live}")
    if summary.figure_labels:
        print("grants whose figures the XML leaves unknown, read from their labels: "
              f"{summary.figure_labels.get('mapped', 0)} mapped, "
              f"{summary.figure_labels.get('disagreed', 0)} disagreed (sheets kept unknown)")
    for reason, count in sorted(summary.skipped.items()):
        print(f"skipped {count}: {reason}")
    for error in summary.errors:
        print(f"error: {error}")
    return EXIT_FAILED if summary.errors and not summary.sheets else 0


def _run_search(args, settings: CoreSettings) -> int:
    filters = SearchFilters(
        locarno=tuple(args.locarno), views=tuple(args.view),
        date_from=yyyymmdd(args.date_from), date_to=yyyymmdd(args.date_to))
    query = _query(args)  # refused here, before a model or a connection is opened
    if args.server:
        hits, version, collection, next_token, suggested = _search_remote(args, query)
    else:
        hits, version, collection, suggested = _search_local(args, settings, filters, query)
        next_token = ""
    if args.json:
        print(json.dumps({"model_version": version, "collection": collection,
                          "hits": [h.as_dict() for h in hits],
                          "next_page_token": next_token, **suggested}, indent=2))
    else:
        print(format_hits(hits))
        print(f"\n{len(hits)} hits from {collection} (model {version}); searched: "
              f"{', '.join(suggested['legs'])}")
        if suggested["legs_note"]:
            print(suggested["legs_note"])
        if next_token:
            print(f"more: --page-token {next_token}")
        if args.suggest_classes:
            shown = ", ".join(f"{c} {LOCARNO_MAIN_CLASSES.get(c, '')} ({p:.0%})"
                              for c, p in suggested["suggested_classes"])
            print(f"suggested classes: {shown or suggested['suggestions_note']}")
    return 0


def _suggestions(pairs, note: str, legs, legs_note: str) -> dict:
    """What a search says beside its hits: suggested classes, the legs searched."""
    return {"suggested_classes": [[c, p] for c, p in pairs], "suggestions_note": note,
            "legs": list(legs), "legs_note": legs_note}


def _run_cites(args, settings: CoreSettings) -> int:
    from patentclip.drawings.imagestore import LocalImageStore
    from services.query.http.api import citations_view
    from services.query.plane.drawings import StoredDrawings

    patent = normalize_patent_number(args.patent, "patent")
    if args.server:
        citations, links = _cites_remote(args, patent)
    else:  # the image store's grant record (what the embedder or `index` stored)
        stored = StoredDrawings(LocalImageStore(settings.images_dir), None)
        grant = stored.grant(patent)
        if grant is None:
            raise NotFoundError(f"patent {patent}: no grant record in the image store "
                                f"{settings.images_dir}")
        citations, links = grant.citations, stored.citation_links(patent, grant)
    view = citations_view(citations, links)
    if args.json:
        print(json.dumps({"patent": patent, **view}, indent=2))
        return 0
    for row in view["citations"]:
        where = "in this corpus" if row["in_corpus"] else row["uspto_url"]
        what = row["patent"] or row["text"] or f"{row['country']} {row['number']}"
        print(f"{row['category'] or '-':<9} {what:<12} {row['kind']:<3} {row['date'] or '':<8} "
              f"{row['name'][:24]:<24} {where}".rstrip())
    examiner = sum(r["category"] == "examiner" for r in view["citations"])
    print(f"\n{patent} cites {len(view['citations'])} references, {examiner} by the examiner; "
          f"{sum(r['in_corpus'] for r in view['citations'])} are in this corpus")
    citing = ", ".join(f"{c['patent']} ({c['category'] or 'unstated'})"
                       for c in view["cited_by"])
    print(f"cited by: {citing or 'no grant of this corpus'}")
    return 0


def _cites_remote(args, patent: str):
    from patentclip.codec.events import CATEGORY_FROM_PB
    from patentclip.grants.model import Citation
    from services.query.plane.drawings import CitationLinks

    response = _client(args).get_patent(patent)
    citations = [Citation(c.country, c.doc_number, c.kind, c.date, c.name,
                          CATEGORY_FROM_PB.get(c.category, ""), c.text)
                 for c in response.grant.citations]
    links = CitationLinks(tuple(response.cited_in_corpus), tuple(
        (c.patent_number, CATEGORY_FROM_PB.get(c.category, ""))
        for c in response.cited_by))
    return citations, links


def _query(args):
    """The search the flags describe, validated by the core as the services validate the
    same message: every mode works locally and against a server."""
    from patentclip.search.query import query_from_message

    return query_from_message(queries.query_message(args), max_image_bytes=None)


def _search_local(args, settings: CoreSettings, filters: SearchFilters, query):
    from patentclip.search.engine import SearchEngine, SearchRequest

    request = SearchRequest(top_k=args.k, filters=filters, against=args.against or "",
                            group=not args.no_group, suggest=args.suggest_classes)
    with open_store(settings) as store:
        target = args.collection or store.live_alias
        if "model" not in given_flags(args, "core"):  # no --model: the collection's model,
            info = store.describe(target)  # as the query service does (e.g. after a rollout)
            if info.model_spec:
                settings = settings.override(model=info.model_spec,
                                             pretrained=info.pretrained)
        encoder = load_encoder(settings)
        engine = SearchEngine(encoder, store, target)
        result = engine.search(query, request)
    return (result.hits, result.model_version, result.collection,
            _suggestions(result.suggested, result.suggest_note, result.legs, result.legs_note))


def _add_connection_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument("--token-file", type=Path,
                         help="--server: file holding the bearer token (env PATENTCLIP_TOKEN "
                         "holds the token itself)")
    command.add_argument("--ca-cert", default="", help="--server: PEM CA; turns TLS on")
    command.add_argument("--client-cert", default="", help="--server: PEM client certificate "
                         "(mutual TLS)")
    command.add_argument("--client-key", default="", help="--server: PEM client key")


def _client(args):
    """A PatentSearchClient with the token and TLS files the flags name."""
    from patentclip_client import PatentSearchClient

    token = os.environ.get("PATENTCLIP_TOKEN", "")
    if args.token_file:
        try:
            token = args.token_file.read_text().strip()
        except OSError as exc:
            raise InvalidInputError(f"--token-file {args.token_file}: {exc.strerror}") from exc
    try:
        return PatentSearchClient(args.server, timeout=args.timeout, token=token,
                                  ca_cert=args.ca_cert, client_cert=args.client_cert,
                                  client_key=args.client_key)
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"--ca-cert/--client-cert/--client-key: {exc}") from exc


# The gRPC codes of ERROR_ANSWERS that mean the caller's request or token is wrong.
CALLER_MISTAKES = frozenset(answer.grpc for error, answer in ERROR_ANSWERS
                            if issubclass(error, (InvalidInputError, NotFoundError, AuthError)))


def _rpc_error(server: str, exc) -> PatentClipError:
    """A gRPC error as the CLI's error: caller mistakes are usage errors."""
    message = f"{server}: {exc.code().name}: {exc.details()}"
    if exc.code().name in CALLER_MISTAKES:
        return InvalidInputError(message)
    return ServiceError(message)


def _run_reload(args, settings: CoreSettings) -> int:
    import grpc

    with _client(args) as client:
        try:
            reply = client.reload()
        except grpc.RpcError as exc:
            raise _rpc_error(args.server, exc) from None
    state = "swapped to" if reply.swapped else "already serving"
    print(f"{args.server}: {state} {reply.collection} (model {reply.model_version})")
    return 0


def _run_token_init(args, settings: CoreSettings) -> int:
    from services.common.auth import Role, new_token, token_line

    tokens, secret = args.dir / "tokens", args.dir / f"{args.name}.token"
    if tokens.exists() and tokens.stat().st_size:
        print(f"{tokens} exists: left as is (add tokens with `patentclip token new`)")
        return 0
    args.dir.mkdir(parents=True, exist_ok=True)
    token = new_token()
    secret.touch(mode=0o600)
    secret.write_text(token + "\n")
    tokens.write_text(token_line(token, Role(args.role), args.name) + "\n")
    print(f"wrote {tokens} (PATENTCLIP_QUERY_AUTH_TOKENS_FILE) and the {args.role} token for "
          f"{args.name} to {secret} (mode 600: give it to the examiners' clients)")
    return 0


def _run_token_new(args, settings: CoreSettings) -> int:
    from services.common.auth import Role, new_token, token_line

    token = new_token()
    print(f"token (give it to {args.name}; it is not stored anywhere): {token}")
    print("add this line to the query service's tokens file (PATENTCLIP_QUERY_AUTH_TOKENS_"
          "FILE):")
    print(token_line(token, Role(args.role), args.name))
    return 0


def _search_remote(args, query):
    """The same search through the gRPC query service; status codes become exit codes."""
    import grpc

    options = {"locarno": args.locarno, "date_from": args.date_from, "date_to": args.date_to,
               "views": args.view, "group": not args.no_group, "against": args.against,
               "page_token": args.page_token, "suggest_classes": args.suggest_classes}
    with _client(args) as client:
        try:
            page = _send(client, query, args.k, options)
        except grpc.RpcError as exc:
            raise _rpc_error(args.server, exc) from None
    hits = [_hit_from_proto(h) for h in page.hits]
    return (hits, page.model_version, page.collection, page.next_page_token,
            _suggestions(page.suggested_classes, page.suggestions_note, page.legs,
                         page.legs_note))


def _send(client, query, k: int, options: dict):
    """A core Query through the one Search RPC."""
    from patentclip.search.query import query_to_message

    return client.search(k, query=query_to_message(query), **options)


class ServiceError(PatentClipError):
    """A remote service answered with an error status."""


def _hit_from_proto(h) -> Hit:
    return Hit(patent=h.patent_number, sheet=h.sheet, modality=h.matched, score=h.score,
               view=h.view_name, locarno=h.locarno, grant_date=h.grant_date, title=h.title,
               figures=tuple(h.figure_numbers), caption=h.figure_description,
               image_uri=h.image_uri, legs=tuple(h.found_by),
               region=region_from_proto(h.region) if h.HasField("region") else None)


def _run_collections(args, settings: CoreSettings) -> int:
    with open_store(settings) as store:
        live = store.live_collection()
        names = store.list_collections()
        if not names:
            print(f"no collections at {settings.milvus_uri}")
        for name in names:
            info = store.describe(name)
            marker = " (live)" if name == live else ""
            print(f"{name}{marker}: model {info.model_version}, dim {info.dim}, {info.rows} rows")
    return 0


# ----------------------------------------------------------------------------- helpers


def format_hits(hits: list[Hit]) -> str:
    """A readable fixed-width table: rank, patent, title, sheet, view, Locarno, score, the
    legs that found it and where on the sheet it matched (the figure or part, as fractions
    of the sheet: left,top-right,bottom)."""
    header = f"{'#':>3}  {'patent':<9} {'title':<40} {'sheet':>5} {'view':<12} " \
             f"{'locarno':<7} {'granted':<10} {'match':<7} {'score':>6}  found by"
    lines = [header, "-" * len(header)]
    for rank, h in enumerate(hits, start=1):
        title = h.title if len(h.title) <= 40 else h.title[:37] + "..."
        granted = iso_date(h.grant_date)
        lines.append(f"{rank:>3}  {h.patent:<9} {title:<40} {h.sheet:>5} {h.view:<12} "
                     f"{h.locarno:<7} {granted:<10} {h.modality:<7} {h.score:>6.3f}  "
                     f"{', '.join(h.legs)}{_where(h)}")
    return "\n".join(lines)


def _where(hit: Hit) -> str:
    """Where on its sheet a hit matched: "; matched FIG. 4 at 0.53,0.11-1.00,0.43"."""
    if hit.region is None:
        return ""
    r = hit.region
    figure = f" FIG. {hit.figures[0]}" if len(hit.figures) == 1 else ""
    return f"; matched{figure} at {r.left:.2f},{r.top:.2f}-{r.right:.2f},{r.bottom:.2f}"


def _set_live_if_needed(store: PatentStore, collection: str, force: bool) -> str:
    current = store.live_collection()
    if force or not current:
        store.set_alias(store.live_alias, collection)
        return f"; live alias {store.live_alias} -> {collection}"
    if current != collection:
        return (f"; live alias still points at {current} (use --set-live to switch)")
    return ""


if __name__ == "__main__":
    sys.exit(main())
