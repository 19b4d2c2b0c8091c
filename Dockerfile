# syntax=docker/dockerfile:1
#
# Shoal node image. Build:  docker build --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) -t shoal .
# Stages: chef (tool) -> planner (dependency recipe) -> builder (cached deps, then our code) -> runtime.
#
# `--target prebuilt` makes the same runtime image around a binary compiled outside, at
# SHOAL_BINARY in the build context (default dist/shoal): CI builds its image that way from the
# binary its tests already compiled (scripts/containers image), instead of compiling Rust twice.

FROM rust:1.95-bookworm AS chef
# Pinned so a new cargo-chef release cannot change how the dependency layer is cached.
ARG CARGO_CHEF_VERSION=0.1.77
RUN cargo install --locked cargo-chef --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

FROM chef AS planner
COPY . .
# The recipe only changes when a manifest or Cargo.lock does, so the cook layer below stays
# cached across ordinary source edits.
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# vendor/ holds crates patched in through [patch.crates-io]; they are not workspace members, so
# the recipe does not carry them and the dependency build needs the real sources.
COPY vendor/ vendor/
RUN cargo chef cook --release --locked -p shoal --recipe-path recipe.json
COPY . .
# The release profile keeps line tables (backtraces with file and line for a developer's
# build); in the image they would be most of its size (299 MB of a 391 MB image), so they are
# dropped here and the symbols kept: a panic's backtrace still names the functions.
RUN cargo build --release --locked -p shoal \
    && objcopy --strip-debug target/release/shoal /usr/local/bin/shoal \
    && chmod 0755 /usr/local/bin/shoal

FROM debian:bookworm-slim AS runtime-base
# curl is for the HEALTHCHECK (an HTTP check, not just an open port) and the ECS entrypoint's
# task metadata request; ca-certificates for TLS to PostgreSQL, AWS APIs and upstreams.
# Nothing else. Versions are not pinned (DL3008): Debian stable only ever ships the current
# security-patched build, so a pin would break the build at the next point release instead of
# making it reproducible; the base image tag is the pin.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*

# A fixed, high uid/gid so Kubernetes runAsUser, ECS `user` and file ownership on volumes agree.
RUN groupadd --system --gid 10001 shoal \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/shoal --no-create-home \
       --shell /usr/sbin/nologin shoal \
    && mkdir -p /var/lib/shoal \
    && chown 10001:10001 /var/lib/shoal \
    && chmod 0750 /var/lib/shoal

# Used on ECS only (the Terraform module's task definition sets it as the entryPoint): fills in
# SHOAL_CLUSTER_ADVERTISE from the task metadata endpoint, then execs shoal. POSIX sh; see the
# script's header. Everywhere else the entrypoint below stays `shoal`.
COPY --chmod=0755 deploy/ecs/shoal-ecs-entrypoint /usr/local/bin/shoal-ecs-entrypoint

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
# Where the sources live (the repository URL); empty when not given.
ARG SOURCE=""
LABEL org.opencontainers.image.title="shoal" \
      org.opencontainers.image.description="Clustered policy connector node" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}"

# In a container the published ports decide what is exposed, so listening on every interface
# is the useful default here (the binary's own default is loopback).
ENV SHOAL_DATA_DIR=/var/lib/shoal \
    SHOAL_HTTP_LISTEN=0.0.0.0:8080

# Declared so that Docker volumes and ECS Fargate bind mounts start owned by the shoal user
# instead of root (both copy the image's directory ownership into a new volume).
VOLUME ["/var/lib/shoal"]

USER 10001:10001
WORKDIR /var/lib/shoal
EXPOSE 8080 7946/tcp 7946/udp

# Liveness only: /health answers while the process runs. Readiness (/ready) is for load
# balancers, which must stop routing to a draining node that is still alive.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["curl", "-fsS", "--max-time", "2", "-o", "/dev/null", "http://127.0.0.1:8080/health"]

ENTRYPOINT ["shoal"]
CMD ["serve"]

FROM runtime-base AS prebuilt
ARG SHOAL_BINARY=dist/shoal
COPY ${SHOAL_BINARY} /usr/local/bin/shoal

FROM runtime-base AS runtime
COPY --from=builder /usr/local/bin/shoal /usr/local/bin/shoal
