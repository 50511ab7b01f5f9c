#!/usr/bin/env bash
# Back up Whalli: the Postgres database (pg_dump, custom format) and the uploads bucket
# (mc mirror), into a date-stamped folder; then delete backups older than the retention.
#
#   infra/scripts/backup.sh [--dest DIR] [--keep-days N] [--skip-db] [--skip-storage]
#
# Settings come from the environment, else from infra/compose/.env (ENV_FILE=...):
#   WHALLI_DATABASE_URL              database to dump (Neon)
#   WHALLI_S3_BUCKET                 bucket to copy (default whalli)
#   WHALLI_S3_ACCESS_KEY/SECRET_KEY  keys that can read it (else MINIO_ROOT_USER/PASSWORD)
#   BACKUP_DIR (default /var/backups/whalli), BACKUP_KEEP_DAYS (default 7)
#   BACKUP_S3_URL                    MinIO as the tools see it (default http://minio:9000, i.e.
#                                    from a container on whalli-network)
#   TOOLS=auto|docker|local          run pg_dump and mc from PATH or in containers (PG_IMAGE,
#                                    MC_IMAGE); auto uses containers unless all are installed
# Result: $BACKUP_DIR/whalli-YYYYmmddTHHMMSSZ/{db.dump,storage/,SHA256SUMS}; a failed run leaves
# no folder behind. Cron, daily at 02:00:
#   0 2 * * * /opt/whalli/infra/scripts/backup.sh >>/var/log/whalli-backup.log 2>&1
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }

main() {
  local skip_db=0 skip_storage=0 dest="" keep=""
  while (($#)); do
    case $1 in
      --dest) dest=${2:?--dest needs a folder}; shift 2 ;;
      --keep-days) keep=${2:?--keep-days needs a number}; shift 2 ;;
      --skip-db) skip_db=1; shift ;;
      --skip-storage) skip_storage=1; shift ;;
      -h | --help) usage 0 ;;
      *) log "unknown argument: $1"; usage 2 ;;
    esac
  done
  load_env_file "$ENV_FILE"
  dest=${dest:-${BACKUP_DIR:-/var/backups/whalli}}
  keep=${keep:-${BACKUP_KEEP_DAYS:-7}}
  [[ $keep =~ ^[1-9][0-9]*$ ]] || die "--keep-days must be a whole number of days (at least 1)"

  if ((skip_db == 0)) && [[ -z ${WHALLI_DATABASE_URL:-} ]]; then
    die "WHALLI_DATABASE_URL is not set"
  fi
  if ((skip_storage == 0)) && [[ -z ${WHALLI_S3_ACCESS_KEY:-${MINIO_ROOT_USER:-}} ]]; then
    die "set WHALLI_S3_ACCESS_KEY and WHALLI_S3_SECRET_KEY (or the MinIO root credentials)"
  fi

  umask 077
  mkdir -p "$dest"
  dest=$(cd "$dest" && pwd)
  local stamp final work
  stamp=$(date -u +%Y%m%dT%H%M%SZ)
  final="$dest/whalli-$stamp"
  work="$final.partial"
  mkdir "$work"
  # Whatever fails below, no half-written backup remains to be mistaken for a good one.
  PARTIAL_DIR=$work
  trap remove_partial EXIT

  if ((skip_db == 0)); then
    backup_database "$work"
  fi
  if ((skip_storage == 0)); then
    backup_storage "$work"
  fi

  if [[ -f $work/db.dump ]]; then
    (cd "$work" && sha256sum db.dump >SHA256SUMS)
  fi
  mv "$work" "$final"
  PARTIAL_DIR=""
  log "backup complete: $final ($(du -sh "$final" | cut -f1))"

  prune "$dest" "$keep"
}

PARTIAL_DIR=""
remove_partial() {
  if [[ -n $PARTIAL_DIR && -d $PARTIAL_DIR ]]; then
    rm -rf -- "$PARTIAL_DIR"
    log "backup failed; removed $PARTIAL_DIR"
  fi
}

backup_database() {
  local work=$1
  split_database_url "$WHALLI_DATABASE_URL"
  log "dumping the database (pg_dump, custom format)"
  run_in "$PG_IMAGE" "$work" pg_dump --format=custom --compress=6 --file=db.dump --dbname="$PG_URL"
  # A dump that pg_restore cannot list is no backup.
  run_in "$PG_IMAGE" "$work" pg_restore --list db.dump >/dev/null
}

backup_storage() {
  local work=$1 bucket=${WHALLI_S3_BUCKET:-whalli}
  local key=${WHALLI_S3_ACCESS_KEY:-${MINIO_ROOT_USER:-}}
  local secret=${WHALLI_S3_SECRET_KEY:-${MINIO_ROOT_PASSWORD:-}}
  [[ -n $key && -n $secret ]] || die "set WHALLI_S3_ACCESS_KEY and WHALLI_S3_SECRET_KEY (or the MinIO root credentials)"
  set_mc_host whalli "${BACKUP_S3_URL:-http://minio:9000}" "$key" "$secret"
  mkdir -p "$work/storage"
  log "copying bucket $bucket (mc mirror)"
  run_in "$MC_IMAGE" "$work" mc mirror --quiet "whalli/$bucket" storage
  log "bucket copied: $(find "$work/storage" -type f | wc -l) object(s)"
}

prune() {
  local dest=$1 keep=$2 old
  while IFS= read -r -d '' old; do
    log "removing backup older than $keep day(s): $old"
    rm -rf -- "$old"
  done < <(find "$dest" -mindepth 1 -maxdepth 1 -type d -name 'whalli-*' -mtime +"$((keep - 1))" -print0)
}

main "$@"
