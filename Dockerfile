# syntax=docker/dockerfile:1
#
# kvstore container image: `docker build -t kvstore .`
#
# The builder compiles the release binary (librdkafka is bundled and linked statically). The
# runtime stage carries only what `ldd target/release/kvstore` lists (glibc, libgcc_s, zlib)
# and CA certificates: OpenSSL is compiled in as well (rdkafka's `ssl-vendored` feature).

ARG RUST_VERSION=1

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /build
# The image already has what the bundled librdkafka build needs (cc, make, perl, pkg-config,
# zlib1g-dev). The caches keep crates and build output between builds; the binary is copied
# out because a cache mount is not part of the image.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/build/target \
    cargo build --release --locked \
    && install -D -m 0755 target/release/kvstore /out/kvstore

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libgcc-s1 zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 kvstore \
    && useradd --system --uid 10001 --gid kvstore --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin kvstore
COPY --from=builder /out/kvstore /usr/local/bin/kvstore
# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
# Not a loopback address, so kvstore requires bearer tokens (KVSTORE_AUTH__TOKENS) unless
# KVSTORE_AUTH__ENABLED=false.
ENV KVSTORE_LISTEN=0.0.0.0:8080
EXPOSE 8080
# No HEALTHCHECK: liveness (/healthz) and readiness (/readyz) are the orchestrator's to probe.
ENTRYPOINT ["kvstore"]
CMD ["serve"]
