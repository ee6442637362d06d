# The controller image the Helm chart runs (`checkpoint-autoscaler run ...`): a static-ish
# Rust binary on distroless, as the non-root user 65532 the chart's securityContext expects.
#
#   docker build -t checkpoint-autoscaler:0.1.0 .
#
# By default the binary is the controller alone (`run`, `crd`, `validate`, `recommend`):
# built without the default feature `proving-ground`, it carries neither the model, the AWS
# emulator, the Flink backend nor their crates. The chart's `emulator.enabled` (test clusters
# only) runs `checkpoint-autoscaler emulator` from the same image, so build that one with
#
#   docker build --build-arg FEATURES=proving-ground -t checkpoint-autoscaler:0.1.0-emulator .
FROM rust:1.95-bookworm AS build
ARG FEATURES=""
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin checkpoint-autoscaler --no-default-features \
        ${FEATURES:+--features "$FEATURES"} \
    && cp target/release/checkpoint-autoscaler /checkpoint-autoscaler

# glibc and libgcc only; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /checkpoint-autoscaler /usr/local/bin/checkpoint-autoscaler
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/checkpoint-autoscaler"]
