#!/bin/bash
# battery-twin on EC2: the device key and CSR are made here; the certificate comes back through SSM.
#   battery-twin-bootstrap csr    make key + CSR (once), post the CSR to SSM (run by cloud-init)
#   battery-twin-bootstrap cert   if Terraform has issued the certificate: write it, write the agent config,
#                                 start the service and stop polling (run every minute by a timer)
# Settings come from /etc/battery-twin/bootstrap.env (written by cloud-init from Terraform's values;
# $BOOTSTRAP_ENV names another file, which the tests use).
set -euo pipefail
export PATH="$PATH:/snap/bin" # the AWS CLI comes as a snap on Ubuntu
# shellcheck disable=SC1090
. "${BOOTSTRAP_ENV:-/etc/battery-twin/bootstrap.env}"

CERT_DIR=${CERT_DIR:-/etc/battery-twin/certs}
CONFIG=${CONFIG:-/etc/battery-twin/config.toml} # the unit runs: battery-twin run --config /etc/battery-twin/config.toml
SERVICE=${SERVICE:-battery-twin.service}
SERVICE_USER=${SERVICE_USER:-battery-twin}

bt() {
  local b
  for b in /opt/battery-twin/venv/bin/battery-twin /opt/battery-twin/.venv/bin/battery-twin \
           /opt/battery-twin/bin/battery-twin "$(command -v battery-twin || true)"; do
    if [ -n "$b" ] && [ -x "$b" ]; then "$b" "$@"; return; fi
  done
  echo "battery-twin-bootstrap: battery-twin is not installed (systemd/install.sh did not run?)" >&2
  return 1
}

own() {  # as systemd/install.sh leaves it: certs 0700 and the key 0600, owned by the service user
  if id "$SERVICE_USER" >/dev/null 2>&1; then
    chown -R "$SERVICE_USER:" "$CERT_DIR"
  fi
  chmod 0700 "$CERT_DIR"
}

case "${1:-}" in
  csr)
    install -d -m 0700 "$CERT_DIR"
    if [ ! -s "$CERT_DIR/$RIG.key.pem" ]; then
      bt provision csr --rig "$RIG" --dir "$CERT_DIR"
    fi
    own
    aws ssm put-parameter --region "$REGION" --name "$CSR_PARAM" --type SecureString --key-id "$KMS_KEY_ID" \
      --overwrite --value "file://$CERT_DIR/$RIG.csr.pem" >/dev/null
    echo "battery-twin-bootstrap: CSR posted to $CSR_PARAM; run terraform apply again to issue the certificate"
    ;;
  cert)
    pem=$(aws ssm get-parameter --region "$REGION" --name "$CERT_PARAM" --with-decryption \
            --query Parameter.Value --output text 2>/dev/null || true)
    case "$pem" in
      *"BEGIN CERTIFICATE"*) ;;
      *) echo "battery-twin-bootstrap: no certificate in $CERT_PARAM yet (run terraform apply again)"; exit 0 ;;
    esac
    printf '%s\n' "$pem" > "$CERT_DIR/$RIG.cert.pem"
    args=(provision config --rig "$RIG" --endpoint "$ENDPOINT" --dir "$CERT_DIR" --topic-prefix "$TOPIC_PREFIX"
          --out "$CONFIG" --force)
    if [ -n "${BASIC_INGEST_RULE:-}" ]; then args+=(--basic-ingest-rule "$BASIC_INGEST_RULE"); fi
    bt "${args[@]}"
    own
    systemctl enable "$SERVICE"
    systemctl restart "$SERVICE"
    systemctl disable --now battery-twin-cert.timer
    echo "battery-twin-bootstrap: certificate installed, $SERVICE started"
    ;;
  *)
    echo "usage: battery-twin-bootstrap csr|cert" >&2
    exit 2
    ;;
esac
