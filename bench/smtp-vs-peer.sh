#!/usr/bin/env bash
# SMTP throughput of moxd next to Postfix + Dovecot on this machine, in one run (issue 5).
# Needs root, ../shared/bench (smtp_load.py, peer-setup.sh already run), dnsmasq, and a release
# build (cargo build --release). N, SIZES ("2k 100k") and CONNS ("1 10 50") choose the runs. moxd listens on 127.0.0.1:2525 with its SPF/DKIM/DMARC/iprev
# checks on, answered by a local dnsmasq that says NXDOMAIN (with an SOA) to everything; Postfix
# on :25.
# Postfix's 250 means "queued"; its end-to-end rate into Dovecot's Maildir is the one with
# moxd's durability (250 = in the mailbox, fsync'd).
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${BENCH:-../shared/bench}
N=${N:-1000}
DIR=$(mktemp -d /tmp/moxbench.XXXXXX)
chmod 755 "$DIR"   # the role users must reach their directories below it
OUT=${OUT:-$DIR/results}
mkdir -p "$OUT"
cat > "$DIR/moxd.toml" <<TOML
[server]
hostname = "mx.bench.test"
data_dir = "$DIR/data"
run_dir = "$DIR/run"
log = "warn"
[listen]
smtp = ["127.0.0.1:2525"]
[smtp]
connections_per_ip = 500
max_errors = 100
[dns]
resolvers = ["127.0.0.1:5354"]
TOML
# Authoritative for test. and 127.in-addr.arpa, so that its NXDOMAIN answers carry an SOA
# (cacheable for 300 s, RFC 2308) as a recursive resolver's do; `--local=/#/` answers had none,
# and every message paid four uncached lookups no real resolver would make it pay.
dnsmasq --keep-in-foreground --no-resolv --no-hosts --conf-file=/dev/null --bind-interfaces \
  --listen-address=127.0.0.1 --pid-file= --port=5354 --user=root \
  --auth-server=ns.test,127.0.0.1 --auth-zone=test,127.0.0.0/8 \
  --auth-soa=1,hostmaster.test,1200,120,1209600,300 &
DNS=$!
target/release/moxd serve -c "$DIR/moxd.toml" > "$DIR/moxd.log" 2>&1 &
MOXD=$!
trap 'kill $MOXD $DNS 2>/dev/null; wait 2>/dev/null' EXIT
for _ in $(seq 100); do [ -S "$DIR/run/admin.sock" ] && break; sleep 0.2; done
sleep 1
CTL="target/release/moxctl --socket $DIR/run/admin.sock"
$CTL domain add bench.test >/dev/null
$CTL account add bench bench@bench.test >/dev/null
# Both stacks start empty: moxd in a new data directory, Dovecot with a fresh mailbox (it makes
# it at the first delivery). A Maildir and Dovecot index grown by earlier runs make
# Postfix+Dovecot slower than they are (runs before this was done overstated moxd's lead).
# Moved aside, not deleted: on a file system without a journal, ext4 makes new files pay for
# inodes freed in the last minutes.
MD=/var/vmail/bench.test/bench/Maildir
if [ -d "$MD" ]; then
  mkdir -p "$MD/../../bench-old"
  mv "$MD" "$MD/../../bench-old/Maildir.$(date +%s%N)"
fi
printf '%-6s %-5s %10s %10s %10s %7s\n' size conns "pf accept" "pf stored" moxd ratio
for size in ${SIZES:-2k 100k}; do
  for c in ${CONNS:-1 10 50}; do
    BENCH_OWN_PROCS='^(master|smtpd|cleanup|qmgr|lmtp|dovecot|trivial-rewrite)$' python3 "$BENCH/smtp_load.py" \
      --port 25 -c "$c" -n "$N" -s "$size" --to bench@bench.test \
      --verify-maildir /var/vmail/bench.test/bench/Maildir --json "$OUT/postfix-$size-c$c.json" > "$OUT/postfix-$size-c$c.txt" 2>&1 || true
    BENCH_OWN_PROCS='^(moxd.*|exe)$' python3 "$BENCH/smtp_load.py" \
      --port 2525 -c "$c" -n "$N" -s "$size" --to bench@bench.test --json "$OUT/moxd-$size-c$c.json" > "$OUT/moxd-$size-c$c.txt" 2>&1 || true
    pa=$(grep -o '[0-9.]* msg/s' "$OUT/postfix-$size-c$c.txt" | head -1 | cut -d' ' -f1)
    pe=$(grep -io 'end-to-end [0-9.]*' "$OUT/postfix-$size-c$c.txt" | head -1 | awk '{print $2}')
    m=$(grep -o '[0-9.]* msg/s' "$OUT/moxd-$size-c$c.txt" | head -1 | cut -d' ' -f1)
    printf '%-6s %-5s %10s %10s %10s %6sx\n' "$size" "$c" "$pa" "$pe" "$m" \
      "$(python3 -c "print(round(${m:-0}/${pe:-1}, 2))")"
  done
done
echo "raw results: $OUT"
