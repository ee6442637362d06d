//! The AWS emulator: the [`sim::Fleet`](crate::sim::Fleet) model of Managed Service for
//! Apache Flink behind the real wire protocols on loopback, so the unmodified AWS SDKs
//! (Rust and Python) can be pointed at it with an endpoint override.
//!
//! - [`kinesis`]: `kinesisanalyticsv2` over awsJson1_1 (`POST /`, `X-Amz-Target`).
//! - [`cloudwatch`]: CloudWatch over Smithy RPC v2 CBOR
//!   (`POST /service/GraniteServiceVersion20100801/operation/<Operation>`, the Rust SDK)
//!   and over awsJson 1.0 (`POST /`, `X-Amz-Target: GraniteServiceVersion20100801.<Op>`,
//!   what botocore picks since 1.42.7).
//! - [`control`]: the JSON control API under `/_emulator/` (scenarios, faults, call log,
//!   clock), a path AWS never uses.
//! - [`auth`]: the SigV4 presence check; [`faults`]: injected faults; [`calllog`]: the
//!   record of calls received; [`error`]: the error mapping of both protocols.
//! - The emulator itself: `cli` (the `emulator` subcommand), `state` (the virtual clock and
//!   the shared state), `server` (starting and stopping it, the routes) and `handlers` (the
//!   HTTP handlers: the shared call record, `handlers::json` for awsJson1_1,
//!   `handlers::cbor` for CloudWatch's RPC v2 CBOR and awsJson 1.0 with query errors).
//!
//! Time: the fleet runs in virtual time. `period` real time is one virtual minute (one
//! metric period), so `--period 1s` shows a test a "minute" per second; before serving any
//! request the fleet is advanced to the virtual now. Without a period, virtual time moves
//! only when the control API (or [`EmulatorState::advance`]) moves it, which makes tests
//! independent of wall-clock timing.

pub mod auth;
pub mod backend;
pub mod calllog;
pub mod cbor;
mod cli;
pub mod cloudwatch;
pub mod control;
pub mod error;
pub mod faults;
mod handlers;
pub mod hangup;
pub mod kinesis;
mod server;
mod state;

use serde::{Deserialize, Serialize};

pub use self::{
    backend::Backend,
    cli::{BackendKind, EmulatorArgs, load_scenarios, run},
    server::{Emulator, EmulatorConfig, EmulatorError, router, serve, serve_backend, start_time},
    state::{Clock, EmulatorState},
};

/// Largest request body accepted (after decompression), bytes. PutMetricData's own limit
/// is 1 MB; this leaves room for 500-query GetMetricData requests.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// The two AWS services the emulator speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Service {
    /// `kinesisanalyticsv2` (Managed Service for Apache Flink).
    #[serde(rename = "kinesisanalyticsv2")]
    KinesisAnalytics,
    /// CloudWatch (`monitoring`).
    #[serde(rename = "cloudwatch")]
    CloudWatch,
}

impl Service {
    /// The name used in the call log and fault scopes.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::KinesisAnalytics => "kinesisanalyticsv2",
            Service::CloudWatch => "cloudwatch",
        }
    }
}

/// The wire protocol a request arrived in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// awsJson1_1 (kinesisanalyticsv2).
    #[serde(rename = "awsJson1_1")]
    AwsJson1_1,
    /// awsJson1_0 (CloudWatch, as botocore 1.42.7+ speaks it).
    #[serde(rename = "awsJson1_0")]
    AwsJson1_0,
    /// Smithy RPC v2 CBOR (CloudWatch, as the Rust SDK speaks it).
    #[serde(rename = "rpcv2Cbor")]
    RpcV2Cbor,
}
