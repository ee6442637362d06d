# The controller image the Helm chart runs (`checkpoint-autoscaler run ...`): a static-ish
# Rust binary on distroless, as the non-root user 65532 the chart's securityContext expects.
#
#   docker build -t checkpoint-autoscaler:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin checkpoint-autoscaler \
    && cp target/release/checkpoint-autoscaler /checkpoint-autoscaler

# glibc and libgcc only; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /checkpoint-autoscaler /usr/local/bin/checkpoint-autoscaler
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/checkpoint-autoscaler"]
