# mmo-webhooks: multi-stage build, slim non-root runtime image.
#   docker build -t mmo-webhooks .
#   docker run -p 8000:8000 -e MMO__MONGODB__URI='mongodb://db:27017/?replicaSet=rs0' \
#     -e MMO__AUTH__BEARER_TOKENS='…' mmo-webhooks

FROM rust:1.95-slim-bookworm AS builder
WORKDIR /build
COPY Cargo.toml Cargo.lock ./
COPY actors ./actors
COPY src ./src
COPY examples ./examples
COPY config ./config
# --locked: build exactly the versions pinned in Cargo.lock.
RUN cargo build --release --locked --bin mmo-webhooks

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin mmo
WORKDIR /app
COPY --from=builder /build/target/release/mmo-webhooks /usr/local/bin/mmo-webhooks
COPY config ./config
# The local journal: callbacks are fsync'd here before they are acknowledged. Mount a persistent volume,
# one per instance, so that what was not yet drained to MongoDB survives a restart.
RUN mkdir -p /app/data/journal && chown -R 10001:10001 /app/data
VOLUME ["/app/data"]
ENV MMO_CONFIG_DIR=/app/config \
    MMO__JOURNAL__DIR=/app/data/journal \
    MMO__SERVER__HOST=0.0.0.0 \
    MMO__SERVER__PORT=8000
USER 10001:10001
EXPOSE 8000
# SIGTERM lets in-flight requests finish (server.shutdown_timeout_secs), then drains the journal to MongoDB
# for up to journal.shutdown_drain_secs before the process exits 0. Give the container at least the sum.
STOPSIGNAL SIGTERM
# The runtime image has no curl: the binary probes its own /readyz.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/mmo-webhooks", "probe", "--url", "http://127.0.0.1:8000"]
ENTRYPOINT ["/usr/local/bin/mmo-webhooks"]
CMD ["serve"]
