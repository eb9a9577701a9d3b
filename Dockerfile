# syntax=docker/dockerfile:1
# Dockerfile — the Switchyard images, built from one Rust build:
#   runtime (the default target): switchyard-gateway, switchyard-control-plane,
#     switchyard-executor-manager (docker-compose.yml picks one per container with
#     `command:`);
#   executor: the same binaries plus Node.js and the pinned agent CLIs
#     (`@openai/codex`, `@anthropic-ai/claude-code`, `opencode-ai`, at the versions
#     scripts/install-providers.sh pins), for `switchyard-executor`.
#
# Build: docker build -t switchyard .                      # runtime
#        docker build --target executor -t switchyard-executor .
# No credential is ever part of an image: the executor reads the provider credentials
# from a file mounted at run time (docker-compose.yml, `provider-env`).

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

# Node.js for the agent CLIs (the npm packages need Node 20 or later; Debian 12's own
# nodejs is 18). Only its files are copied into the executor image below.
FROM node:22-bookworm-slim AS node

FROM debian:bookworm-slim AS runtime
# curl: the compose healthchecks call each service's /readyz with it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl git tini \
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

FROM runtime AS executor
USER root
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
# The same script and pins as a developer machine: it installs into
# /opt/switchyard/.local/providers (it works relative to its own directory) and checks
# that every CLI answers `--version`. It also installs bubblewrap for codex's sandbox
# when the distribution's package is new enough (Debian 12's is not: codex then uses
# the copy it bundles).
WORKDIR /opt/switchyard
COPY scripts/install-providers.sh scripts/install-providers.sh
RUN apt-get update \
    && bash scripts/install-providers.sh \
    && rm -rf /var/lib/apt/lists/* /root/.npm
ENV PATH=/opt/switchyard/.local/providers/node_modules/.bin:$PATH
# The agent CLIs run as this user, never as the executor's (executor.provider_user =
# auto picks it when the executor runs as root): an agent runs whatever commands its
# model asks for, and must not read the executor's credentials file, its configuration
# or its environment (NATS password). It owns only the run's workspace and CLI state.
RUN useradd --system --uid 10002 --user-group --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin switchyard-provider
WORKDIR /var/lib/switchyard
# Root, so that it can start the CLIs as switchyard-provider and read the mounted
# credentials file whatever its owner on the host (a compose secret keeps the host
# file's owner and mode, 0600 from scripts/bootstrap-local-provider-env.sh).
USER root
CMD ["switchyard-executor"]
