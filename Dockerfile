# syntax=docker/dockerfile:1
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# jemalloc (the global allocator) is built from source and needs make; gcc is in the image.
RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY config ./config
COPY src ./src
COPY openapi ./openapi
COPY tests ./tests
RUN cargo build --release --locked --bin resultd

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home resultd
COPY --from=build /src/target/release/resultd /usr/local/bin/resultd
USER resultd
ENV RESULTD_LISTEN=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["resultd", "healthcheck"]
ENTRYPOINT ["resultd"]
CMD ["serve"]
