#!/bin/sh
# One-shot MinIO set-up, run by the `minio-init` compose service (image minio/mc) on every
# `docker compose up`; idempotent.
#   - creates the bucket WHALLI_S3_BUCKET, private;
#   - when the application's keys differ from the root credentials (production), creates that
#     user with a policy limited to the bucket, so the API and workers never hold root keys.
# Needs MINIO_ROOT_USER, MINIO_ROOT_PASSWORD, WHALLI_S3_BUCKET; optionally WHALLI_S3_ACCESS_KEY
# and WHALLI_S3_SECRET_KEY. MINIO_URL defaults to http://minio:9000. Prints no secret.
set -eu

: "${MINIO_ROOT_USER:?MINIO_ROOT_USER is required}"
: "${MINIO_ROOT_PASSWORD:?MINIO_ROOT_PASSWORD is required}"
: "${WHALLI_S3_BUCKET:?WHALLI_S3_BUCKET is required}"
MINIO_URL="${MINIO_URL:-http://minio:9000}"
APP_KEY="${WHALLI_S3_ACCESS_KEY:-$MINIO_ROOT_USER}"
POLICY=whalli-app

mc alias set local "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "local/$WHALLI_S3_BUCKET"
mc anonymous set none "local/$WHALLI_S3_BUCKET" >/dev/null

if [ "$APP_KEY" = "$MINIO_ROOT_USER" ]; then
  echo "minio-init: bucket $WHALLI_S3_BUCKET ready (application uses the root credentials)"
  exit 0
fi
: "${WHALLI_S3_SECRET_KEY:?WHALLI_S3_SECRET_KEY is required when WHALLI_S3_ACCESS_KEY is set}"

policy_file="$(mktemp)"
trap 'rm -f "$policy_file"' EXIT
cat >"$policy_file" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
      "Resource": ["arn:aws:s3:::${WHALLI_S3_BUCKET}"]
    },
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                 "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
      "Resource": ["arn:aws:s3:::${WHALLI_S3_BUCKET}/*"]
    }
  ]
}
JSON
mc admin policy create local "$POLICY" "$policy_file" >/dev/null
# `user add` on an existing user only resets its secret key, which keeps rotation simple.
mc admin user add local "$APP_KEY" "$WHALLI_S3_SECRET_KEY" >/dev/null
case "$(mc admin user info local "$APP_KEY")" in
  *"$POLICY"*) ;;
  *) mc admin policy attach local "$POLICY" --user "$APP_KEY" >/dev/null ;;
esac
echo "minio-init: bucket $WHALLI_S3_BUCKET ready; application user limited to it by policy $POLICY"
