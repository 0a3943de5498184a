#!/bin/bash
# battery-twin on EC2: the device key and CSR are made here; the certificate comes back through SSM.
#   battery-twin-bootstrap fetch  fetch battery-twin at the pinned commit or tag into /opt/battery-twin-src
#   battery-twin-bootstrap csr    make key + CSR (once), post the CSR to SSM (run by cloud-init)
#   battery-twin-bootstrap cert   if Terraform has issued the certificate: write it, write the agent config,
#                                 start the service and stop polling (run every minute by a timer)
# Settings come from /etc/battery-twin/bootstrap.json (written by cloud-init from Terraform's values; $BOOTSTRAP_CONF
# names another file, which the tests use). The file is parsed, never sourced, and every value is checked against
# the form Terraform's validation gave it, so a value cannot run as code here whatever reached the file.
set -euo pipefail
export PATH="$PATH:/snap/bin" # the AWS CLI comes as a snap on Ubuntu
CONF=${BOOTSTRAP_CONF:-/etc/battery-twin/bootstrap.json}

setting() { # setting NAME: one value of $CONF, or exit with what is wrong with it
  python3 - "$CONF" "$1" <<'EOF'
import json, re, sys
FORMS = {
    "RIG": r"[a-zA-Z0-9:_-]{1,128}",
    "REGION": r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}",
    "CSR_PARAM": r"(/[A-Za-z0-9_.-]+){1,15}",
    "CERT_PARAM": r"(/[A-Za-z0-9_.-]+){1,15}",
    "KMS_KEY_ID": r"alias/[A-Za-z0-9/_-]{1,250}",
    "ENDPOINT": r"[a-z0-9]+(-ats)?\.iot\.[a-z0-9-]+\.amazonaws\.com(\.cn)?",
    "TOPIC_PREFIX": r"(?=.{1,96}\Z)[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+){0,5}",
    "BASIC_INGEST_RULE": r"[A-Za-z0-9_]{0,128}",
    "REPO_URL": r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%+-]+)+/?",
    "REPO_REF": r"[0-9a-f]{40}|v?[0-9]+(\.[0-9]+){1,3}([-+][0-9A-Za-z.-]{1,32})?",
}
path, name = sys.argv[1], sys.argv[2]
try:
    with open(path, encoding="utf-8") as f:
        value = json.load(f)[name]
except (OSError, ValueError, KeyError, TypeError) as exc:
    sys.exit(f"battery-twin-bootstrap: {path}: no usable {name} ({exc!r})")
if not isinstance(value, str) or not re.fullmatch(FORMS[name], value, re.ASCII):
    sys.exit(f"battery-twin-bootstrap: {path}: {name} = {value!r} is not of the form {FORMS[name]}: refusing")
sys.stdout.write(value)
EOF
}

CERT_DIR=${CERT_DIR:-/etc/battery-twin/certs}
CONFIG=${CONFIG:-/etc/battery-twin/config.toml} # the unit runs: battery-twin run --config /etc/battery-twin/config.toml
SERVICE=${SERVICE:-battery-twin.service}
SERVICE_USER=${SERVICE_USER:-battery-twin}
SRC_DIR=${SRC_DIR:-/opt/battery-twin-src}

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
  fetch)
    url=$(setting REPO_URL)
    ref=$(setting REPO_REF)
    # A commit is fetched by its id; anything else only as refs/tags/<ref>, so a branch name cannot sneak in.
    if [[ $ref =~ ^[0-9a-f]{40}$ ]]; then want=$ref; else want=refs/tags/$ref; fi
    rm -rf "$SRC_DIR"
    git init -q "$SRC_DIR"
    if ! git -C "$SRC_DIR" fetch -q --depth 1 -- "$url" "$want"; then
      echo "battery-twin-bootstrap: $url has no commit or tag $ref (agent_ref must be one, not a branch)" >&2
      exit 1
    fi
    git -C "$SRC_DIR" -c advice.detachedHead=false checkout -q FETCH_HEAD
    echo "battery-twin-bootstrap: $url at $ref (commit $(git -C "$SRC_DIR" rev-parse HEAD)) in $SRC_DIR"
    ;;
  csr)
    RIG=$(setting RIG) # one per line: set -e sees only the last substitution of a line of assignments
    REGION=$(setting REGION)
    CSR_PARAM=$(setting CSR_PARAM)
    KMS_KEY_ID=$(setting KMS_KEY_ID)
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
    RIG=$(setting RIG)
    REGION=$(setting REGION)
    CERT_PARAM=$(setting CERT_PARAM)
    ENDPOINT=$(setting ENDPOINT)
    TOPIC_PREFIX=$(setting TOPIC_PREFIX)
    BASIC_INGEST_RULE=$(setting BASIC_INGEST_RULE)
    pem=$(aws ssm get-parameter --region "$REGION" --name "$CERT_PARAM" --with-decryption \
            --query Parameter.Value --output text 2>/dev/null || true)
    case "$pem" in
      *"BEGIN CERTIFICATE"*) ;;
      *) echo "battery-twin-bootstrap: no certificate in $CERT_PARAM yet (run terraform apply again)"; exit 0 ;;
    esac
    printf '%s\n' "$pem" > "$CERT_DIR/$RIG.cert.pem"
    args=(provision config --rig "$RIG" --endpoint "$ENDPOINT" --dir "$CERT_DIR" --topic-prefix "$TOPIC_PREFIX"
          --out "$CONFIG" --force)
    if [ -n "$BASIC_INGEST_RULE" ]; then args+=(--basic-ingest-rule "$BASIC_INGEST_RULE"); fi
    bt "${args[@]}"
    own
    systemctl enable "$SERVICE"
    systemctl restart "$SERVICE"
    systemctl disable --now battery-twin-cert.timer
    echo "battery-twin-bootstrap: certificate installed, $SERVICE started"
    ;;
  *)
    echo "usage: battery-twin-bootstrap fetch|csr|cert" >&2
    exit 2
    ;;
esac
