//! The decision engine: a pure function of (budget, observation, history, now).
//!
//! NB: no I/O, no clock reads, no randomness, no async, no SDK or kube types.

mod types;

pub use types::*;
