//! Integration tests, in one binary to keep link time down: one module per area.
mod apiserver;
mod aws;
mod bench_smoke;
mod chart;
mod controller;
mod crd;
mod docs;
mod emulator;
mod faults;
mod fencing;
mod flink;
mod harness;
mod opview;
mod safety;
mod sim;
mod soak;
mod tenancy;
