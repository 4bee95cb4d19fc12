#!/usr/bin/env bash
# `make demo`: generate a synthetic weekly bundle, index it with the tiny model into
# Milvus Lite, and run text and drawing queries. Everything lands in data/demo/.
set -euo pipefail
PY=${PY:-.venv/bin/python}
DEMO=data/demo
export PATENTCLIP_MILVUS_URI=$DEMO/patents.db
export PATENTCLIP_IMAGES_DIR=$DEMO/images
export PATENTCLIP_MODEL=local-dir:$DEMO/models/patentclip-tiny
pc() { echo; echo "\$ patentclip $*"; "$PY" -m services.cli "$@"; }

start=$SECONDS
rm -rf "$DEMO"
pc generate --out $DEMO/bundles --date 2021-01-05 --patents 60 --seed 7
pc model init-tiny --out $DEMO/models/patentclip-tiny
pc index $DEMO/bundles/I20210105.tar
pc collections
pc search --text "front perspective view of a bottle showing our new design" --k 5
pc search --text "lamp shade" --locarno 26 --k 5 --against caption
query=$(ls $DEMO/images/D0900003/*-D00002.TIF)
pc search --image "$query" --k 5
pc search --image "$query" --k 3 --json
cat <<MSG

Demo finished in $((SECONDS - start)) s.
  model:    $PATENTCLIP_MODEL (tiny, random weights: drawing->drawing and text->caption
            matches are meaningful; text->drawing needs a trained PatentCLIP checkpoint)
  vectors:  $PATENTCLIP_MILVUS_URI (Milvus Lite)    images: $PATENTCLIP_IMAGES_DIR
Try: PATENTCLIP_MILVUS_URI=$PATENTCLIP_MILVUS_URI PATENTCLIP_MODEL=$PATENTCLIP_MODEL \\
     $PY -m services.cli search --text "storage box" --k 5
MSG
