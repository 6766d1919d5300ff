# One image with every binary of the suite; compose.yaml picks the one each container runs.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p trackd -p plan-service -p gateway-service -p mint-service -p attribution-service -p trackctl

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home --home-dir /home/tracking tracking
COPY --from=build /src/target/release/trackd /src/target/release/plan \
     /src/target/release/gateway /src/target/release/mint /src/target/release/attribution \
     /src/target/release/trackctl \
     /usr/local/bin/
USER tracking
# trackd keeps its state (secrets, a private cluster) in the working directory's .trackd, and
# listens on every interface so that the ports published from the container reach it.
WORKDIR /home/tracking
ENV TRACKING_GRPC_ADDR=0.0.0.0:50051 TRACKING_HTTP_ADDR=0.0.0.0:8080
EXPOSE 50051 8080
CMD ["trackd"]
