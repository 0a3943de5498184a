#!/bin/sh
# podman with the settings measured to work on this kind of machine (container/containers.conf: runc, cgroupfs, no
# default ulimits), unless the caller chose a CONTAINERS_CONF of their own. Use plain podman where its defaults work.
set -eu
if [ -z "${CONTAINERS_CONF:-}" ]; then
    CONTAINERS_CONF="$(cd "$(dirname "$0")" && pwd)/containers.conf"
    export CONTAINERS_CONF
fi
exec podman "$@"
