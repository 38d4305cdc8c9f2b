#!/usr/bin/env bash
# Builds slackbotd, installs the binary, and runs `slackbotd install` to put
# the systemd unit (where systemd runs), the cron line and a configuration
# skeleton in place. Extra arguments go to `slackbotd install` (e.g. --dry-run).
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${PREFIX:-/usr/local}
cargo build --release --locked -p slackbotd
install -D -m 0755 target/release/slackbotd "$prefix/bin/slackbotd"
if [ ! -d /run/systemd/system ]; then
    set -- --no-systemd "$@"
fi
exec "$prefix/bin/slackbotd" install --bin "$prefix/bin/slackbotd" "$@"
