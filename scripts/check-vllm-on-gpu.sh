#!/usr/bin/env bash
# The real thing, on a machine with an NVIDIA GPU, nvidia-smi and vLLM (`vllm` on PATH, with
# sleep mode: vLLM >= 0.7.3) — never run in CI (specs use the scripted vllm and a fake
# nvidia-smi). It starts a Trainyard service on PGlite in a temporary folder and:
#   1. trains a tiny task (MODEL on examples/tiny-dataset.jsonl) to have an adapter to serve;
#   2. deploys it (deployments.create { taskId }, onTrainingDemand sleep) and waits for SERVING;
#   3. chats with the endpoint, asking for the adapter's name (the task id);
#   4. submits a training task on the same GPU: the deployment is put to sleep (/sleep?level=1),
#      its memory seen released by nvidia-smi, the task trains;
#   5. waits for the deployment to be woken (SERVING) and chats again;
#   6. stops it and deploys the same task merged (deployments.create { taskId, merge: true }: the
#      adapter merged into the base weights by trainers/merge_adapter.py, with MERGE_PYTHON, a
#      Python that has torch; the base from the Hugging Face cache vLLM filled in step 2), chats;
# printing each step, nvidia-smi's memory, and the deployment's events. Exit 0 when every step
# happened; docs/DEPLOYMENTS.md records the last real run.
#
#   scripts/check-vllm-on-gpu.sh [MODEL]      (default Qwen/Qwen2.5-0.5B-Instruct)
#   PORT=8099 TIMEOUT_S=1800 MERGE_PYTHON=/usr/bin/python3 scripts/check-vllm-on-gpu.sh
set -euo pipefail

MODEL=${1:-Qwen/Qwen2.5-0.5B-Instruct}
PORT=${PORT:-8099}
TIMEOUT_S=${TIMEOUT_S:-1800}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
URL="http://127.0.0.1:$PORT"

for tool in nvidia-smi vllm curl node; do
  command -v "$tool" >/dev/null || { echo "check-vllm-on-gpu: $tool is not on PATH; this script needs a GPU host with vLLM" >&2; exit 2; }
done
nvidia-smi --query-gpu=index,name,memory.total,memory.used --format=csv,noheader >/dev/null ||
  { echo "check-vllm-on-gpu: nvidia-smi finds no GPU" >&2; exit 2; }

DATA=$(mktemp -d -t trainyard-vllm-check-XXXXXX)
LOG="$DATA/service.log"
cleanup() {
  if [ -n "${DEP:-}" ]; then trpc_post deployments.stop "{\"id\":\"$DEP\"}" >/dev/null 2>&1 || true; sleep 5; fi
  [ -n "${SERVICE_PID:-}" ] && kill "$SERVICE_PID" 2>/dev/null || true
  echo "service log: $LOG"
}
trap cleanup EXIT

# tRPC v11 over plain HTTP (no transformer): a mutation is a POST of its input, a query a GET with ?input=.
trpc_post() { curl -sf -X POST -H 'content-type: application/json' --data "$2" "$URL/trpc/$1"; }
trpc_get() { curl -sfG --data-urlencode "input=$2" "$URL/trpc/$1"; }
field() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{let v=JSON.parse(s).result.data;for(const k of process.argv[1].split("."))v=v?.[k];console.log(typeof v==="object"?JSON.stringify(v):v)})' "$1"; }
say() { printf '\n[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
memory() { nvidia-smi --query-gpu=index,memory.used,memory.total --format=csv,noheader | sed 's/^/  nvidia-smi: /'; }
wait_for() { # wait_for WHAT COMMAND...: until COMMAND succeeds, or TIMEOUT_S
  local what=$1; shift
  local until=$(($(date +%s) + TIMEOUT_S))
  until "$@"; do
    [ "$(date +%s)" -lt "$until" ] || { echo "timed out waiting for $what" >&2; exit 1; }
    sleep 2
  done
}
task_status() { trpc_get tasks.get "{\"id\":\"$1\"}" | field status; }
dep_status() { trpc_get deployments.get "{\"id\":\"$1\"}" | field status; }
is_task() { [ "$(task_status "$1")" = "$2" ]; }
is_dep() { [ "$(dep_status "$1")" = "$2" ]; }
chat() {
  curl -s -w '\n  HTTP %{http_code}\n' -H 'content-type: application/json' \
    --data "{\"model\":\"$1\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello in five words.\"}],\"max_tokens\":32}" \
    "$URL/v1/chat/completions" | sed 's/^/  /'
}

say "starting Trainyard on $URL (data in $DATA)"
MERGE="[\"${MERGE_PYTHON:-python3}\",\"trainers/merge_adapter.py\"]"
(cd "$ROOT" && PORT=$PORT TRAINYARD_DATA_DIR="$DATA" TRAINYARD_GPU_REFRESH_MS=1000 TRAINYARD_MERGE="$MERGE" npm start >"$LOG" 2>&1) &
SERVICE_PID=$!
wait_for "the service" curl -sf "$URL/health" -o /dev/null
memory

say "1. training a small task on $MODEL to have an adapter to serve"
T1=$(trpc_post tasks.create "{\"name\":\"vllm-check adapter\",\"model\":\"$MODEL\",\"datasetPath\":\"$ROOT/examples/tiny-dataset.jsonl\",\"config\":{\"epochs\":1}}" | field id)
echo "  task $T1"
wait_for "task $T1 to complete" is_task "$T1" COMPLETED

say "2. deploying task $T1 (its adapter as a LoRA module named $T1)"
DEP=$(trpc_post deployments.create "{\"taskId\":\"$T1\",\"onTrainingDemand\":\"sleep\"}" | field id)
echo "  deployment $DEP"
wait_for "deployment $DEP to serve" is_dep "$DEP" SERVING
trpc_get deployments.get "{\"id\":\"$DEP\"}" | field endpoint | sed 's/^/  endpoint: /'
memory
trpc_get queue.get '{}' | field devices | sed 's/^/  queue.get devices: /'

say "3. chat with the adapter's name"
chat "$T1"

say "4. a training task on the same GPU: the deployment should sleep, release its memory, the task train"
T2=$(trpc_post tasks.create "{\"name\":\"vllm-check training\",\"model\":\"$MODEL\",\"datasetPath\":\"$ROOT/examples/tiny-dataset.jsonl\",\"config\":{\"epochs\":1}}" | field id)
echo "  task $T2"
wait_for "deployment $DEP to sleep" is_dep "$DEP" SLEEPING
memory
echo "  chat while asleep (our /v1 should answer 503 at once):"
chat "$T1"
wait_for "task $T2 to train" bash -c "s=\$(curl -sfG --data-urlencode 'input={\"id\":\"$T2\"}' '$URL/trpc/tasks.get'); echo \"\$s\" | grep -q '\"status\":\"\(TRAINING\|COMPLETED\)\"'"
memory
wait_for "task $T2 to complete" is_task "$T2" COMPLETED

say "5. the deployment should be woken and serve again"
wait_for "deployment $DEP to serve again" is_dep "$DEP" SERVING
memory
chat "$T1"

say "the deployment's events"
trpc_get events.list "{\"taskId\":\"$DEP\",\"limit\":100}" |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{for(const e of JSON.parse(s).result.data.events)console.log(`  ${e.recordedAt} ${e.type} ${JSON.stringify(e.data).slice(0,160)}`)})'
say "6. the same task merged into its base model, served under its name"
trpc_post deployments.stop "{\"id\":\"$DEP\"}" >/dev/null
wait_for "deployment $DEP to stop" is_dep "$DEP" STOPPED
DEP=$(trpc_post deployments.create "{\"taskId\":\"$T1\",\"merge\":true}" | field id)
echo "  deployment $DEP (merged)"
wait_for "merged deployment $DEP to serve" bash -c "s=\$(curl -sfG --data-urlencode 'input={\"id\":\"$DEP\"}' '$URL/trpc/deployments.get'); echo \"\$s\" | grep -q '\"status\":\"\(SERVING\|FAILED\)\"'"
[ "$(dep_status "$DEP")" = SERVING ] || { trpc_get deployments.get "{\"id\":\"$DEP\"}" | field error >&2; exit 1; }
memory
chat "$T1"

say "all steps happened: deploy, chat, sleep, train, wake, merge"
