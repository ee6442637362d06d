//! Test support for checkpoint-autoscaler, shared by the integration tests, the benchmarks
//! and `demo`: the rig of the controller against the emulator ([`rig`]), the controller's
//! fakes ([`fixtures`]) and the inputs of property tests ([`strategies`]).

/// The controller's fakes of the AWS side and its mocked API server.
pub use checkpoint_autoscaler_controller::fixtures;

pub mod rig;
pub mod strategies;
