# The developer's verbs. `just --list` shows them.

# Run the platform in embedded mode with the demo council.
up:
    cargo run --release -- demo

# The whole test suite: Rust tests (real PostgreSQL + NATS, started if needed) and the chart checks.
test: deps
    cargo test --workspace
    bash charts/check.sh
    bash tools/asyncapi/check.sh

# Only the Rust tests.
test-rust: deps
    cargo test --workspace

# Formatting and lints, as CI enforces them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Render, lint, validate and scan the Helm chart with Helm's own engine.
charts:
    bash charts/check.sh

# Regenerate the AsyncAPI document from the event catalogue, then validate it.
asyncapi:
    cargo run -q -- asyncapi > docs/asyncapi.yaml
    bash tools/asyncapi/check.sh

# Load harness: referrals per second and latency in both modes, beside raw baselines; then the reads.
bench: deps
    cargo run --release -p eh-tests --bin load
    cargo run --release -p eh-tests --bin reads

# Read harness: audited gRPC reads at 1 caller and 128 streams, beside the gRPC health check.
bench-reads: deps
    cargo run --release -p eh-tests --bin reads

# Start local PostgreSQL and NATS (JetStream) if they are not running.
deps:
    bash infra/scripts/start-deps.sh
