# The developer's verbs. `just --list` shows them.

# Run the platform in embedded mode with the demo council.
up:
    cargo run --release -- demo

# The whole test suite: Rust tests (real PostgreSQL + NATS, started if needed) and the chart checks.
test: deps
    cargo test --workspace
    bash charts/check.sh
    bash tools/asyncapi/check.sh
    bash tools/openapi/fuzz.sh
    bash tests/browser/run.sh

# The web console in a real browser (Playwright, Chromium, a real OpenID provider, axe-core); part of `test`.
browser:
    bash tests/browser/run.sh

# Install GOV.UK Frontend for the web console (pinned, from the npm registry).
console-assets:
    bash tools/console/install.sh

# Only the Rust tests.
test-rust: deps
    cargo test --workspace

# Formatting and lints, as CI enforces them; every [patch] of Cargo.toml must be in the crate graph.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    bash tools/check-patches.sh
    bash tools/check-patches.test.sh

# Render, lint, validate and scan the Helm chart with Helm's own engine.
charts:
    bash charts/check.sh

# Regenerate the AsyncAPI document from the event catalogue, then validate it.
asyncapi:
    cargo run -q -- asyncapi > docs/asyncapi.yaml
    bash tools/asyncapi/check.sh

# Regenerate the NATS rights table the Helm chart renders its accounts from, and infra/nats's
# example accounts (worcs and staffs); a test fails when either is stale.
nats-rights:
    cargo run -q -- nats-rights > charts/earlyhelp/files/nats-rights.json
    cargo run -q -- nats-config --tenants staffs,worcs > infra/nats/accounts.conf
    EH__BUS__NAMESPACE=eh-t1 cargo run -q -- nats-config --tenants a-b,herts > charts/tests/golden/nats-accounts-eh-t1.conf

# Regenerate the public HTTP API's OpenAPI document from the code (a test fails when it is stale).
openapi:
    cargo run -q -- openapi > docs/openapi.json

# Fuzz the public HTTP API with Schemathesis against its OpenAPI document (no 5xx, every response
# matching its schema); part of `test`.
fuzz-api:
    bash tools/openapi/fuzz.sh

# Fuzz what comes from outside (issue 15): the referral contract (bytes, structure-aware JSON, the
# gRPC message), message headers and their NATS encoding, every event payload's protobuf decoder;
# EH_FUZZ_SECS seconds per target (default 60), then executions per second. A failing input is
# written to tests/fuzz-corpus/ first. (The corpus and a short run are part of `cargo test`.)
fuzz:
    cargo test -p eh-tests --test fuzz -- --ignored --nocapture fuzz_long

# Load harness: referrals per second and latency in both modes, beside raw baselines; then the reads.
bench: deps
    cargo run --profile perf -p eh-tests --bin load
    cargo run --profile perf -p eh-tests --bin reads
    cargo run --profile perf -p eh-tests --bin matcher

# The allocation matcher's latency against 100 / 1,000 / 10,000 services, beside a coverage scan.
bench-matcher:
    cargo run --profile perf -p eh-tests --bin matcher

# Read harness: audited gRPC reads at 1 caller and 128 streams, beside the gRPC health check.
bench-reads: deps
    cargo run --profile perf -p eh-tests --bin reads

# The console's case page and the API's status read: requests/s and p99, straight and through a
# TLS-terminating proxy, beside a static file of the same server (EH_CONSOLE_BENCH_SECS, _CONC).
bench-console:
    cargo run --profile perf -p eh-tests --bin console_bench

# Fault injection, long version (issues 18 and 15): the binary as two processes under 1,000
# referrals at ~15/s: PostgreSQL stopped for 30 s, each process killed by SIGKILL twice, the NATS
# server killed and restarted, sessions cut mid-write; beside the same load without faults. Counts
# every effect and prints the figures. EH_CHAOS_N, EH_CHAOS_RATE, EH_CHAOS_OUTAGE_SECS change it.
# (The short version runs in `just test`.)
chaos: deps
    cargo test -p earlyhelp --test chaos -- --ignored --nocapture --test-threads=1

# Start local PostgreSQL and NATS (JetStream) if they are not running.
deps:
    bash infra/scripts/start-deps.sh
