//! The proving ground of checkpoint-autoscaler: what the controller is tried against
//! without an AWS account.
//!
//! - [`sim`]: a virtual-time model of Managed Service for Apache Flink (scenarios, the
//!   service, its metrics), `simulate` and the policies it compares.
//! - [`emulator`]: the model (or real Flink) behind the kinesisanalyticsv2 and CloudWatch
//!   wire protocols, for the real AWS SDK clients.
//! - [`flink`]: the emulator's real-Flink backend: jobs on loopback Flink clusters.
//!
//! It reaches the product only through the pure policy, the API types and the AWS adapters
//! (`simulate` observes through the controller's own CloudWatch code); the controller
//! cannot reach it, nor it the controller.

pub mod emulator;
pub mod flink;
pub mod sim;

use checkpoint_autoscaler_api::crd;
use checkpoint_autoscaler_aws as aws;
use checkpoint_autoscaler_policy as policy;
