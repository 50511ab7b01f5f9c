#!/usr/bin/env bash
# Restore a backup made by backup.sh: the database (pg_restore) and/or the bucket (mc mirror).
#
#   infra/scripts/restore.sh BACKUP_FOLDER [--db] [--storage] [--exact] [--yes]
#
#   --db / --storage  restore only that part (default: every part the folder holds)
#   --exact           also delete objects that are not in the backup (mc mirror --remove)
#   --yes             do not ask for confirmation
#
# The database is restored with --clean --if-exists in one transaction: objects in the dump are
# dropped and recreated, and a failure leaves the database as it was. Stop the writers first:
#   docker compose -f infra/compose/docker-compose.prod.yml stop api worker
# and start them again afterwards. Settings are those of backup.sh; RESTORE_DATABASE_URL, when
# set, names another database to restore into (e.g. a Neon branch, to test a backup).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }

main() {
  local folder="" want_db=0 want_storage=0 exact=0 yes=0
  while (($#)); do
    case $1 in
      --db) want_db=1; shift ;;
      --storage) want_storage=1; shift ;;
      --exact) exact=1; shift ;;
      --yes) yes=1; shift ;;
      -h | --help) usage 0 ;;
      -*) log "unknown option: $1"; usage 2 ;;
      *) [[ -z $folder ]] || usage 2; folder=$1; shift ;;
    esac
  done
  [[ -n $folder ]] || usage 2
  [[ -d $folder ]] || die "no such backup folder: $folder"
  folder=$(cd "$folder" && pwd)
  [[ $folder != *.partial ]] || die "$folder is an incomplete backup"
  if ((want_db == 0 && want_storage == 0)); then
    [[ -f $folder/db.dump ]] && want_db=1
    [[ -d $folder/storage ]] && want_storage=1
  fi
  ((want_db == 0)) || [[ -f $folder/db.dump ]] || die "$folder holds no db.dump"
  ((want_storage == 0)) || [[ -d $folder/storage ]] || die "$folder holds no storage/ copy"
  ((want_db + want_storage > 0)) || die "$folder holds nothing to restore"
  load_env_file "$ENV_FILE"

  local db_url=${RESTORE_DATABASE_URL:-${WHALLI_DATABASE_URL:-}} bucket=${WHALLI_S3_BUCKET:-whalli}
  if ((want_db)); then
    [[ -n $db_url ]] || die "WHALLI_DATABASE_URL (or RESTORE_DATABASE_URL) is not set"
    if [[ -f $folder/SHA256SUMS ]]; then
      (cd "$folder" && sha256sum --quiet -c SHA256SUMS) || die "checksum mismatch in $folder"
    fi
    split_database_url "$db_url"
  fi

  if ((yes == 0)); then
    local what=()
    ((want_db)) && what+=("the database ${PG_URL%%\?*}")
    ((want_storage)) && what+=("bucket $bucket$( ((exact)) && echo ' (objects not in the backup are deleted)')")
    printf 'This overwrites:\n' >&2
    printf '  %s\n' "${what[@]}" >&2
    printf 'with %s.\nType "restore" to go on: ' "$folder" >&2
    local answer
    read -r answer || true
    [[ $answer == restore ]] || die "cancelled"
  fi

  if ((want_db)); then
    log "restoring the database from $folder/db.dump"
    run_in "$PG_IMAGE" "$folder" pg_restore --clean --if-exists --no-owner --no-privileges \
      --single-transaction --exit-on-error --dbname="$PG_URL" db.dump
    log "database restored"
  fi

  if ((want_storage)); then
    local key=${WHALLI_S3_ACCESS_KEY:-${MINIO_ROOT_USER:-}}
    local secret=${WHALLI_S3_SECRET_KEY:-${MINIO_ROOT_PASSWORD:-}}
    [[ -n $key && -n $secret ]] || die "set WHALLI_S3_ACCESS_KEY and WHALLI_S3_SECRET_KEY (or the MinIO root credentials)"
    set_mc_host whalli "${BACKUP_S3_URL:-http://minio:9000}" "$key" "$secret"
    local flags=(--overwrite --quiet)
    ((exact)) && flags+=(--remove)
    log "restoring bucket $bucket from $folder/storage"
    run_in "$MC_IMAGE" "$folder" mc mirror "${flags[@]}" storage "whalli/$bucket"
    log "bucket restored"
  fi
}

main "$@"
