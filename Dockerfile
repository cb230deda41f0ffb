# syntax=docker/dockerfile:1
#
# The earlyhelp image: one static-ish Rust binary on distroless (glibc, CA certificates, no
# shell, no package manager), running as the distroless `nonroot` user (65532).
#
#   docker build -t earlyhelp:0.1.0 .
#   docker run --rm earlyhelp:0.1.0 --help
#
# The Helm chart (charts/earlyhelp) references it by tag (default: the chart's appVersion).

# The web console's GOV.UK Frontend, from the npm registry at the version package-lock.json pins
# (tools/console/install.sh, as in development); only its built dist/govuk goes into the image.
FROM node:22-bookworm-slim AS console
WORKDIR /src
COPY tools/console/ tools/console/
RUN bash tools/console/install.sh \
    && mkdir -p /out \
    && cp -R tools/console/node_modules/govuk-frontend/dist/govuk /out/govuk-frontend

FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# The cache mounts keep the crates.io registry and target/ between builds (BuildKit); the binary
# is copied out of target/ in the same step because the cache mount is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p earlyhelp \
    && install -D -m 0755 target/release/earlyhelp /out/earlyhelp

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="earlyhelp" \
      org.opencontainers.image.description="Early Help case management for children and families" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/earlyhelp /usr/local/bin/earlyhelp
# The console's styles, scripts, fonts and images, served at /console/assets/ by the gateway
# (gateway.console.assets_dir; the chart sets the same path).
COPY --from=console /out/govuk-frontend /usr/share/earlyhelp/govuk-frontend
ENV EH__GATEWAY__CONSOLE__ASSETS_DIR=/usr/share/earlyhelp/govuk-frontend
# Numeric, so the kubelet can verify runAsNonRoot without reading /etc/passwd.
USER 65532:65532
# 8080: HTTP (/healthz, /readyz, /metrics); 50051: gRPC (APIs, health, reflection).
EXPOSE 8080 50051
# For docker/compose; Kubernetes ignores it and uses the chart's probes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/earlyhelp", "healthcheck", "--grpc", "http://127.0.0.1:50051"]
ENTRYPOINT ["/usr/local/bin/earlyhelp"]
CMD ["run", "--target", "all"]
