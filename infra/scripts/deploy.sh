#!/usr/bin/env bash
# Rolling deploy of Whalli on one Docker host (infra/compose/docker-compose.prod.yml).
#
#   infra/scripts/deploy.sh [--pull] [--replicas N] [--timeout SECONDS]
#
#   1. build the image from this checkout (or --pull WHALLI_IMAGE:WHALLI_TAG from a registry);
#   2. bring Traefik, Redis, MinIO, Prometheus and Grafana to their configured state;
#   3. apply database migrations once (`docker compose run migrate`), while the old release
#      still serves: migrations must stay compatible with it (add first, drop a release later);
#   4. start N new API containers beside the N running ones (scale to 2N, old ones untouched);
#   5. wait until each new container is healthy and answers 200 on /api/health/ready;
#   6. stop the old API containers (Traefik already routes to the new ones), then recreate
#      the workers on the new image.
# If a new container fails or is not ready within the timeout (default 180 s), the new ones are
# removed and the old ones keep serving; the script exits 1. Ctrl-C does the same.
# N defaults to the number of API containers running (API_REPLICAS, default 2, when none are).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }

NEW_IDS=()
ROLLED_OUT=0

main() {
  local pull=0 replicas="" timeout=180
  while (($#)); do
    case $1 in
      --pull) pull=1; shift ;;
      --replicas) replicas=${2:?--replicas needs a number}; shift 2 ;;
      --timeout) timeout=${2:?--timeout needs seconds}; shift 2 ;;
      -h | --help) usage 0 ;;
      *) log "unknown argument: $1"; usage 2 ;;
    esac
  done
  [[ -z $replicas || $replicas =~ ^[1-9][0-9]*$ ]] || die "--replicas must be at least 1"
  [[ $timeout =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a number of seconds"
  docker compose version >/dev/null 2>&1 || die "docker compose (v2) is required"
  [[ -f $ENV_FILE ]] || die "missing $ENV_FILE (copy infra/compose/.env.example and fill it in)"
  take_lock
  compose config --quiet

  if ((pull)); then
    log "pulling the image"
    compose pull api
  else
    log "building the image"
    compose build --pull api
  fi

  log "updating supporting services"
  compose up -d traefik redis minio minio-init prometheus grafana

  log "applying database migrations"
  compose run --rm -T --no-deps migrate

  roll_api "$replicas" "$timeout"
  update_workers
  log "deploy complete"
}

take_lock() {
  command -v flock >/dev/null || return 0
  exec 9>"${TMPDIR:-/tmp}/whalli-deploy.lock"
  flock -n 9 || die "another deploy is running"
}

roll_api() {
  local replicas=$1 timeout=$2 old=() current=() id
  # Stopped API containers would count towards the scale; drop them first.
  compose rm -f api >/dev/null
  mapfile -t old < <(compose ps -q api)
  replicas=${replicas:-${#old[@]}}
  ((replicas > 0)) || replicas=${API_REPLICAS:-2}

  trap rollback EXIT
  if ((${#old[@]} == 0)); then
    log "no API container is running: starting $replicas"
    compose up -d --no-deps --scale "api=$replicas" api
  else
    log "starting $replicas new API container(s) beside ${#old[@]} running"
    compose up -d --no-deps --no-recreate --scale "api=$((${#old[@]} + replicas))" api
  fi
  mapfile -t current < <(compose ps -q api)
  for id in "${current[@]}"; do
    [[ " ${old[*]} " == *" $id "* ]] || NEW_IDS+=("$id")
  done
  ((${#NEW_IDS[@]} > 0)) || die "no new API container was started"

  wait_ready "$timeout" "${NEW_IDS[@]}"
  ROLLED_OUT=1
  trap - EXIT

  if ((${#old[@]} > 0)); then
    # Traefik follows container health events; give it a moment to route to the new ones.
    sleep "${SETTLE_SECONDS:-5}"
    log "stopping ${#old[@]} old API container(s)"
    docker stop --time 45 "${old[@]}" >/dev/null
    docker rm "${old[@]}" >/dev/null
  fi
}

# wait_ready TIMEOUT ID...: returns when every container is healthy (the image's liveness check)
# and answers 200 on /api/health/ready; dies when one exits, turns unhealthy, or time runs out.
wait_ready() {
  local timeout=$1 deadline pending=() still=() id state
  shift
  pending=("$@")
  deadline=$((SECONDS + timeout))
  log "waiting up to ${timeout}s for ${#pending[@]} new container(s) to be ready"
  while ((${#pending[@]} > 0)); do
    still=()
    for id in "${pending[@]}"; do
      state=$(docker inspect -f '{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id")
      case $state in
        running/healthy | running/none)
          if docker exec "$id" whalli-healthcheck /api/health/ready >/dev/null 2>&1; then
            log "ready: $(container_name "$id")"
          else
            still+=("$id")
          fi
          ;;
        running/starting) still+=("$id") ;;
        *) die "$(container_name "$id") is $state" ;;
      esac
    done
    pending=("${still[@]+"${still[@]}"}")
    ((${#pending[@]} == 0)) && break
    ((SECONDS < deadline)) || die "not ready after ${timeout}s: $(for id in "${pending[@]}"; do container_name "$id"; done | xargs)"
    sleep 3
  done
}

container_name() { docker inspect -f '{{.Name}}' "$1" | sed 's|^/||'; }

# On failure or interruption before the switch: remove the new containers, keep the old ones.
rollback() {
  local status=$? id
  ((ROLLED_OUT == 0 && ${#NEW_IDS[@]} > 0)) || return "$status"
  log "rolling back: removing the new API container(s); the running release keeps serving"
  for id in "${NEW_IDS[@]}"; do
    log "last log lines of $(container_name "$id"):"
    docker logs --tail 20 "$id" 2>&1 | sed 's/^/    /' >&2 || true
  done
  docker stop --time 10 "${NEW_IDS[@]}" >/dev/null 2>&1 || true
  docker rm -f "${NEW_IDS[@]}" >/dev/null 2>&1 || true
  exit 1
}

update_workers() {
  local count
  count=$(compose ps -q worker | wc -l)
  log "recreating the worker(s) on the new image"
  if ((count > 0)); then
    compose up -d --no-deps --scale "worker=$count" worker
  else
    compose up -d --no-deps worker
  fi
}

trap 'exit 130' INT TERM
main "$@"
