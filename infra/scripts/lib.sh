# Shared helpers for backup.sh, restore.sh and deploy.sh (sourced, not run).
# Nothing here prints a secret: keep it that way (and never `set -x` in these scripts).
# shellcheck shell=bash

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMPOSE_DIR="$INFRA_DIR/compose"
ENV_FILE="${ENV_FILE:-$COMPOSE_DIR/.env}"
DOCKER_NETWORK="${DOCKER_NETWORK:-whalli-network}"
PG_IMAGE="${PG_IMAGE:-postgres:18}"
MC_IMAGE="${MC_IMAGE:-quay.io/minio/mc:RELEASE.2025-04-03T17-07-56Z}"

log() { printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# load_env_file FILE: export the KEY=VALUE lines of a compose .env file without evaluating them
# (no expansion, no command substitution). Surrounding quotes are removed (a " # comment" may
# follow the closing one); variables already set in the environment win, as with docker compose.
load_env_file() {
  local file=$1 line key value
  [[ -f $file ]] || return 0
  while IFS= read -r line || [[ -n $line ]]; do
    line=${line%$'\r'}
    [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
    key=${BASH_REMATCH[2]}
    value=${BASH_REMATCH[3]}
    if [[ $value =~ ^\"([^\"]*)\"[[:space:]]*(#.*)?$ || $value =~ ^\'([^\']*)\'[[:space:]]*(#.*)?$ ]]; then
      value=${BASH_REMATCH[1]}
    else
      value=${value%%[[:space:]]#*}   # an unquoted value ends at " #" (inline comment)
      value=${value%"${value##*[![:space:]]}"}
    fi
    [[ -n ${!key+x} ]] && continue
    printf -v "$key" '%s' "$value"
    export "${key?}"
  done <"$file"
}

# urldecode STRING / urlencode STRING: percent-decoding and -encoding of URL parts.
urldecode() {
  local s=$1 out='' i c
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    if [[ $c == % && ${s:i+1:2} =~ ^[0-9A-Fa-f]{2}$ ]]; then
      printf -v c '%b' "\\x${s:i+1:2}"
      i=$((i + 2))
    fi
    out+=$c
  done
  printf '%s' "$out"
}

urlencode() {
  local LC_ALL=C s=$1 out='' i c
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case $c in
      [A-Za-z0-9._~-]) out+=$c ;;
      *) printf -v c '%%%02X' "'$c"; out+=$c ;;
    esac
  done
  printf '%s' "$out"
}

# split_database_url URL: sets PG_URL (the URL without its password, safe on a command line)
# and exports PGPASSWORD (decoded), which libpq reads from the environment.
# shellcheck disable=SC2034  # PG_URL is read by the scripts that source this file
split_database_url() {
  local url=$1 re='^(postgres(ql)?://)([^:/@?]*)(:([^@]*))?@(.*)$'
  if [[ $url =~ $re ]]; then
    PG_URL="${BASH_REMATCH[1]}${BASH_REMATCH[3]}@${BASH_REMATCH[6]}"
    if [[ -n ${BASH_REMATCH[4]} ]]; then
      PGPASSWORD="$(urldecode "${BASH_REMATCH[5]}")"
      export PGPASSWORD
    fi
  elif [[ $url == *@* ]]; then
    # credentials it cannot split out would go on a command line (and into a prompt)
    die "the database URL has credentials but is not postgresql://user:password@host/database"
  else
    PG_URL=$url
  fi
}

# set_mc_host ALIAS URL ACCESS_KEY SECRET_KEY: configures an mc alias through the environment
# (MC_HOST_<alias>), so the keys never appear on a command line.
set_mc_host() {
  local alias=$1 url=$2 scheme rest
  scheme=${url%%://*}
  rest=${url#*://}
  printf -v "MC_HOST_$alias" '%s://%s:%s@%s' "$scheme" "$(urlencode "$3")" "$(urlencode "$4")" "${rest%/}"
  export "MC_HOST_$alias"
}

# use_docker: 0 when pg_dump/pg_restore and mc are on PATH (or TOOLS=local), 1 to run them in
# containers (TOOLS=docker, or auto when one is missing).
use_docker() {
  case "${TOOLS:-auto}" in
    docker) return 0 ;;
    local) return 1 ;;
    auto) ! { command -v pg_dump >/dev/null && command -v pg_restore >/dev/null && command -v mc >/dev/null; } ;;
    *) die "TOOLS must be auto, docker or local" ;;
  esac
}

# run_in IMAGE DIR COMMAND [ARGS...]: run COMMAND with DIR as its working directory, either on
# this host or in a one-off container of IMAGE (DIR mounted at /work, on $DOCKER_NETWORK when it
# exists). Secrets reach the container by name (-e NAME), never as values on the command line.
run_in() {
  local image=$1 dir=$2 network=()
  shift 2
  if use_docker; then
    if docker network inspect "$DOCKER_NETWORK" >/dev/null 2>&1; then
      network=(--network "$DOCKER_NETWORK")
    fi
    docker run --rm "${network[@]}" --user "$(id -u):$(id -g)" \
      -e PGPASSWORD -e MC_HOST_whalli -e HOME=/tmp \
      -v "$dir:/work" -w /work --entrypoint "$1" "$image" "${@:2}"
  else
    (cd "$dir" && "$@")
  fi
}

# compose ARGS...: docker compose on the production file with the stack's .env.
compose() {
  local args=(-f "${COMPOSE_FILE:-$COMPOSE_DIR/docker-compose.prod.yml}")
  [[ -f $ENV_FILE ]] && args=(--env-file "$ENV_FILE" "${args[@]}")
  docker compose "${args[@]}" "$@"
}
