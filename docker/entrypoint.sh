#!/bin/sh
# Split NEO4J_AUTH ("user/password" or "none", the Neo4j image's convention) into the
# NEO4J_USER / NEO4J_PASSWORD that kgllm reads, then run the kgllm command (on the store named
# by KGLLM_STORE when set).
set -e
if [ -n "${NEO4J_AUTH:-}" ] && [ "${NEO4J_AUTH}" != "none" ]; then
    export NEO4J_USER="${NEO4J_USER:-${NEO4J_AUTH%%/*}}"
    export NEO4J_PASSWORD="${NEO4J_PASSWORD:-${NEO4J_AUTH#*/}}"
fi
if [ -n "${KGLLM_STORE:-}" ]; then
    set -- --store "${KGLLM_STORE}" "$@"
fi
exec kgllm "$@"
