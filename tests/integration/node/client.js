// A non-Python examiner client: Node @grpc/grpc-js + @grpc/proto-loader loading protos/
// directly, as tooling in another language would. No call sets a deadline (grpc-js's
// default). Prints one JSON object of results; tests/integration/test_query_service.py
// checks the codes and messages, and the PNG thumbnail GetDrawing returns.
//
//   node client.js HOST:PORT PROTOS_DIR DRAWING.TIF PATENT
"use strict";
const fs = require("fs");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [target, protosDir, drawingPath, patent] = process.argv.slice(2);
const definition = protoLoader.loadSync(["patentclip/v1/search.proto", "health.proto"], {
  keepCase: true, longs: String, enums: String, defaults: true, includeDirs: [protosDir, __dirname],
});
const loaded = grpc.loadPackageDefinition(definition);
const credentials = grpc.credentials.createInsecure();
const search = new loaded.patentclip.v1.PatentSearch(target, credentials);
const health = new loaded.grpc.health.v1.Health(target, credentials);
const statusName = (code) => Object.keys(grpc.status).find((name) => grpc.status[name] === code);

function call(client, method, request) {
  return new Promise((resolve) => {
    client[method](request, (error, reply) => {
      resolve(error ? { code: statusName(error.code), details: error.details }
                    : { code: "OK", reply });
    });
  });
}

const summary = (result) => result.code !== "OK" ? result : {
  code: "OK", model_version: result.reply.model_version,
  next_page_token: result.reply.next_page_token,
  hits: result.reply.hits.map((h) => ({ patent: h.patent_number, sheet: h.sheet,
                                         view: h.view, score: h.score })),
};

async function main() {
  const out = {};
  out.text = summary(await call(search, "SearchByText",
    { text: "front perspective view of a bottle", options: { top_k: 3 } }));
  out.image = summary(await call(search, "SearchByImage",
    { image: fs.readFileSync(drawingPath), options: { top_k: 3 } }));
  out.whole = summary(await call(search, "SearchByText",
    { text: "container", options: { top_k: 4 } }));
  const first = summary(await call(search, "SearchByText",
    { text: "container", options: { top_k: 2 } }));
  out.pages = [first, summary(await call(search, "SearchByText",
    { text: "container", options: { top_k: 2, page_token: first.next_page_token } }))];
  // The one Search RPC: any query kind, as the API's Query message.
  out.search_image = summary(await call(search, "Search",
    { query: { image: fs.readFileSync(drawingPath) }, options: { top_k: 3 } }));
  out.search_similar = summary(await call(search, "Search",
    { query: { patent, sheet: 1 }, options: { top_k: 3 } }));
  out.search_both = summary(await call(search, "Search",
    { query: { text: "container", image: fs.readFileSync(drawingPath),
               crop: { left: 0, top: 0, right: 1, bottom: 1 } }, options: { top_k: 3 } }));
  out.search_nothing = await call(search, "Search", { query: {} });
  // The lexical leg alone, and several views of one design in a photo's mode.
  const words = await call(search, "Search",
    { query: { text: "shoe" }, options: { top_k: 10, against: "AGAINST_WORDS" } });
  out.words = words.code !== "OK" ? words : { code: "OK", legs: words.reply.legs,
    hits: words.reply.hits.map((h) => ({ patent: h.patent_number, found_by: h.found_by })) };
  const drawing = fs.readFileSync(drawingPath);
  const views = await call(search, "Search", { query: {
    image: drawing, mode: "photo",
    drawings: [{ image: drawing, name: "again.tif", crop: { left: 0, top: 0, right: 0.5, bottom: 1 } }] },
    options: { top_k: 3 } });
  out.views = views.code !== "OK" ? views : { code: "OK", legs: views.reply.legs,
    found_by: views.reply.hits[0].found_by };
  out.too_many = await call(search, "Search", { query: {
    drawings: Array.from({ length: 8 }, (_, i) => ({ image: drawing, name: `v${i}` })) } });
  out.bad_mode = await call(search, "Search", { query: { image: drawing, mode: "x-ray" } });
  // Suggested classes: the served tiny model has no classification head, and says so.
  const suggest = await call(search, "Search",
    { query: { text: "container" }, options: { top_k: 1, suggest_classes: 2 } });
  out.suggest = suggest.code === "OK"
    ? { code: "OK", suggested: suggest.reply.suggested_classes.length,
        note: suggest.reply.suggestions_note }
    : suggest;
  // A part of the drawing: matched against stored parts; each hit says where on its sheet.
  const part = await call(search, "Search", { query: { image: drawing,
    crop: { left: 0.3, top: 0.3, right: 0.7, bottom: 0.7 } }, options: { top_k: 3 } });
  out.part = part.code !== "OK" ? part : { code: "OK", hits: part.reply.hits.map((h) => ({
    patent: h.patent_number, sheet: h.sheet, matched: h.matched, region: h.region,
    figures: h.figure_numbers })) };
  // A grant whose figures were read from their labels: where each figure is, and its view.
  const labelled = await call(search, "GetPatent", { patent_number: "D919445" });
  out.labelled = labelled.code !== "OK" ? labelled : { code: "OK",
    sheets: labelled.reply.grant.sheets.map((s) => ({ number: s.number, mapping: s.mapping,
      figures: s.figure_numbers, regions: s.regions.map((r) => r.figure_number) })),
    views: Object.fromEntries(labelled.reply.grant.figures.map((f) => [f.number, f.view])) };
  out.typed_patent = await call(search, "GetPatent", { patent_number: patent });
  if (out.typed_patent.code === "OK") {
    const grant = out.typed_patent.reply.grant;
    out.typed_patent = {
      code: "OK", number: grant.patent_number,
      // What the grant cites, as a Node caller sees it (enums as names).
      examiner: grant.citations.filter((c) => c.category === "CITATION_CATEGORY_EXAMINER")
        .map((c) => c.doc_number),
      citations: grant.citations.length,
      in_corpus: out.typed_patent.reply.cited_in_corpus,
    };
  }
  out.health = await call(health, "Check", { service: "" });
  if (out.health.code === "OK") out.health = { code: "OK", status: out.health.reply.status };
  out.empty_text = await call(search, "SearchByText", { text: "   " });
  out.bad_date = await call(search, "SearchByText",
    { text: "lamp", options: { filters: { date_from: 20211399 } } });
  out.bad_view = await call(search, "SearchByText",
    { text: "lamp", options: { filters: { views: ["VIEW_UNSPECIFIED"] } } });
  const image = await call(search, "SearchByImage",
    { image: fs.readFileSync(drawingPath), options: { top_k: 1 } });
  if (image.code === "OK") {
    const ref = image.reply.hits[0].drawing;
    const thumbnail = await call(search, "GetDrawing", { drawing: ref, size: "DRAWING_SIZE_THUMBNAIL" });
    out.thumbnail = thumbnail.code !== "OK" ? thumbnail : {
      code: "OK", ref, png_signature: thumbnail.reply.png.subarray(0, 8).toString("hex"),
      bytes: thumbnail.reply.png.length, width: thumbnail.reply.width,
      height: thumbnail.reply.height, drawing: thumbnail.reply.drawing,
    };
    out.unknown_sheet = await call(search, "GetDrawing",
      { drawing: { patent_number: ref.patent_number, sheet: 999 } });
  }
  process.stdout.write(JSON.stringify(out));
  search.close();
  health.close();
}

main().catch((error) => { console.error(error); process.exit(1); });
