#!/usr/bin/env bash
# Builds slackbotd, installs the binary, and runs `slackbotd install` to put
# the systemd unit (where systemd runs), the cron line and a configuration
# skeleton in place. Extra arguments go to `slackbotd install`; with
# --dry-run nothing is built, copied or written, only shown.
# (The Debian package, scripts/package, installs the same files.)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${PREFIX:-/usr/local}
dry=no
for a in "$@"; do [ "$a" = --dry-run ] && dry=yes; done
if [ ! -d /run/systemd/system ]; then
    set -- --no-systemd "$@"
fi
if [ "$dry" = yes ]; then
    echo "dry run: would build target/release/slackbotd (cargo build --release) and install it as $prefix/bin/slackbotd"
    if [ -x target/release/slackbotd ]; then
        exec target/release/slackbotd install --bin "$prefix/bin/slackbotd" "$@"
    fi
    echo "then run: $prefix/bin/slackbotd install --bin $prefix/bin/slackbotd $*"
    exit 0
fi
cargo build --release --locked -p slackbotd
install -D -m 0755 target/release/slackbotd "$prefix/bin/slackbotd"
exec "$prefix/bin/slackbotd" install --bin "$prefix/bin/slackbotd" "$@"
