# syntax=docker/dockerfile:1
# Dockerfile — one image with the four Switchyard services:
#   switchyard-gateway, switchyard-control-plane, switchyard-executor-manager,
#   switchyard-executor (docker-compose.yml picks one per container with `command:`).
#
# Build: docker build -t switchyard .
# The executor runs provider CLIs (codex, claude, opencode); this image ships none of them
# (only the built-in `scripted` provider works out of the box). Extend it with Node.js and
# the npm packages you need (`@openai/codex`, `@anthropic-ai/claude-code`, `opencode-ai`).

FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# Use the image's toolchain (same 1.95 release) instead of letting rustup fetch the one
# rust-toolchain.toml pins, with its extra components.
RUN rm -f rust-toolchain.toml
ENV CARGO_TERM_COLOR=never \
    SQLX_OFFLINE=true
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        --bin switchyard-gateway \
        --bin switchyard-control-plane \
        --bin switchyard-executor-manager \
        --bin switchyard-executor \
    && mkdir -p /out \
    && cp target/release/switchyard-gateway \
          target/release/switchyard-control-plane \
          target/release/switchyard-executor-manager \
          target/release/switchyard-executor \
          /out/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates git tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 switchyard \
    && mkdir -p /var/lib/switchyard \
    && chown switchyard:switchyard /var/lib/switchyard
COPY --from=builder /out/ /usr/local/bin/
COPY nats/ /etc/switchyard/nats/
COPY migrations/ /etc/switchyard/migrations/
USER switchyard
WORKDIR /var/lib/switchyard
ENV RUST_LOG=info
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["switchyard-gateway"]
