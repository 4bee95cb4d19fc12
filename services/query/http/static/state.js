// The page's state: one object, owned here, read and changed by the modules.

export const PAGE_SIZE = 24;
export const TOKEN_KEY = "patentclip.token";

export const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  info: null,
  image: null,          // {b64, raw, name, bytes, previewUrl}: the first drawing
  views: [],            // further views of the design, as image, in query order
  crop: null,           // {left, top, right, bottom} as fractions of the drawing
  sheet: null,          // "more like this" on one sheet
  body: null,           // the first page's request body
  response: null,       // the page shown
  record: null,         // the search record: the query and every result seen
  page: 0,
  pageTokens: [""],     // pageTokens[n]: the page_token of page n (the server's next_page_token)
  selected: new Set(),  // Locarno classes filtered on
  compare: [],          // [{label, url}] (url: an /api/drawing path or a blob: URL)
  retrying: false,      // a not-ready header is being polled
  searchSeq: 0,         // the newest search; an older response is dropped when it lands
  searchAbort: null,    // aborts the search in flight when a newer one starts
};
