# Multi-stage build: compile in the Rust image, run in a slim Debian image as
# a non-root user. Build with:  docker build -t stompbridge .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# No .git in the build context: name the commit explicitly if wanted.
ARG STOMPBRIDGE_COMMIT=unknown
ENV STOMPBRIDGE_COMMIT=${STOMPBRIDGE_COMMIT}
RUN cargo build --release --locked --bin stompbridge

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin stompbridge
COPY --from=build /src/target/release/stompbridge /usr/local/bin/stompbridge
# A configuration to start with; mount your own over /etc/stompbridge. Set
# server.listen and admin.listen to 0.0.0.0 inside a container.
COPY config.example.yaml /etc/stompbridge/config.yaml
USER stompbridge
EXPOSE 1337 9464
# The probe uses the admin listener from inside the container.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/stompbridge", "probe", "http://127.0.0.1:9464/readyz"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/stompbridge"]
CMD ["run", "--config", "/etc/stompbridge/config.yaml", "--log-format", "json"]
