#!/bin/sh
# The worst cases of issue 17 (linear cost, no head-of-line blocking, idle clients,
# slow bodies, large answers), measured once against a release build:
#
#   benches/worst_case.sh            # builds target/release/scimguard first
#
# Needs python3 (standard library only). Prints one line per case with its target;
# takes about a minute and a half.
set -eu
cd "$(dirname "$0")/.."
cargo build --release --locked --bin scimguard
exec python3 benches/worst_case.py target/release/scimguard
