//! The emulator's state, shared by its request handlers and the control API: the virtual
//! clock, the fleet (the model or the Flink backend), the armed faults and the call log.

use std::{
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use jiff::{SignedDuration, Timestamp};

use super::{
    Backend,
    calllog::{self, CallFilter, CallLog, CallRecord},
    faults::{self, Effects, FaultError, FaultSpec, Faults, RequestScope},
};
use crate::sim::{ApplicationView, Scenario, ServiceError};

/// Maps real time to virtual time.
#[derive(Debug)]
pub struct Clock {
    origin_real: Instant,
    origin_virtual: Timestamp,
    period: Option<Duration>,
    manual: Mutex<Duration>,
}

impl Clock {
    /// A clock at `start` now, moving one virtual minute per `period` of real time.
    pub fn new(start: Timestamp, period: Option<Duration>) -> Self {
        Self {
            origin_real: Instant::now(),
            origin_virtual: start,
            period: period.filter(|p| !p.is_zero()),
            manual: Mutex::new(Duration::ZERO),
        }
    }

    /// The virtual now.
    pub fn now(&self) -> Timestamp {
        let scaled = match self.period {
            None => Duration::ZERO,
            Some(p) => {
                // One virtual minute (60e9 ns) per period of real time.
                let nanos = self.origin_real.elapsed().as_nanos() * 60_000_000_000 / p.as_nanos().max(1);
                Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            }
        };
        let total = scaled.saturating_add(*lock(&self.manual));
        self.origin_virtual
            .checked_add(SignedDuration::try_from(total).unwrap_or(SignedDuration::MAX))
            .unwrap_or(Timestamp::MAX)
    }

    /// Moves virtual time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut manual = lock(&self.manual);
        *manual = manual.saturating_add(by);
    }

    /// Real time per virtual minute (`None`: frozen).
    pub fn period(&self) -> Option<Duration> {
        self.period
    }
}

/// Locks a mutex, recovering the data if a panicking request poisoned it: every critical
/// section leaves the state consistent, so a poisoned lock is still usable.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) fleet: Mutex<Box<dyn Backend>>,
    pub(super) clock: Clock,
    pub(super) faults: Mutex<Faults>,
    pub(super) calls: Mutex<CallLog>,
    pub(super) requests: AtomicU64,
    pub(super) nonce: u64,
}

/// A handle on a running emulator's state, shared with its request handlers.
#[derive(Clone, Debug)]
pub struct EmulatorState(pub(super) Arc<Inner>);

impl EmulatorState {
    pub fn new(fleet: Box<dyn Backend>, clock: Clock) -> Self {
        let nonce = Timestamp::now().as_nanosecond().unsigned_abs() as u64;
        Self(Arc::new(Inner {
            fleet: Mutex::new(fleet),
            clock,
            faults: Mutex::new(Faults::default()),
            calls: Mutex::new(CallLog::default()),
            requests: AtomicU64::new(0),
            nonce,
        }))
    }

    /// The virtual now.
    pub fn virtual_now(&self) -> Timestamp {
        self.0.clock.now()
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.0.clock
    }

    /// Moves virtual time forward by `by` (the fleet steps on the next request).
    pub fn advance(&self, by: Duration) {
        self.0.clock.advance(by);
    }

    /// Runs `f` on the backend (the model's [`Fleet`](crate::sim::Fleet) or the Flink backend), advanced to
    /// the virtual now.
    pub fn with_fleet<R>(&self, f: impl FnOnce(&mut dyn Backend) -> R) -> R {
        let mut fleet = lock(&self.0.fleet);
        fleet.advance_to(self.0.clock.now());
        f(fleet.as_mut())
    }

    /// Adds an application running `scenario`, named by it or by `name`.
    pub fn add_scenario(
        &self,
        scenario: &Scenario,
        name: Option<&str>,
    ) -> Result<ApplicationView, ServiceError> {
        self.with_fleet(|f| f.add_scenario(scenario, name))
    }

    /// Arms a fault; returns its id.
    pub fn arm_fault(&self, spec: FaultSpec) -> Result<u64, FaultError> {
        lock(&self.0.faults).arm(spec)
    }

    /// Clears one fault; false when there is none with that id.
    pub fn clear_fault(&self, id: u64) -> bool {
        lock(&self.0.faults).clear(id)
    }

    /// Clears every fault.
    pub fn clear_faults(&self) {
        lock(&self.0.faults).clear_all();
    }

    /// The armed faults.
    pub fn faults(&self) -> Vec<faults::Fault> {
        lock(&self.0.faults).list().to_vec()
    }

    /// The calls received that the filter accepts, oldest first.
    pub fn calls(&self, filter: &CallFilter) -> Vec<CallRecord> {
        lock(&self.0.calls).query(filter)
    }

    /// Counts over the calls received that the filter accepts.
    pub fn call_summary(&self, filter: &CallFilter) -> calllog::CallSummary {
        lock(&self.0.calls).summary(filter)
    }

    /// Forgets the calls received so far.
    pub fn reset_calls(&self) {
        lock(&self.0.calls).reset();
    }

    pub(super) fn apply_faults(&self, scope: &RequestScope<'_>) -> Effects {
        let now = self.virtual_now();
        lock(&self.0.faults).apply(scope, now)
    }

    /// Sets the KPU quota per application.
    pub fn set_kpu_quota(&self, kpus: u32) -> Result<(), ServiceError> {
        self.with_fleet(|f| f.set_kpu_quota(kpus))
    }

    /// Deletes an application, as `DeleteApplication` would.
    pub fn delete_application(&self, name: &str) -> Result<(), ServiceError> {
        self.with_fleet(|f| f.delete_application(name))
    }

    pub(super) fn record(&self, record: CallRecord) {
        lock(&self.0.calls).record(record);
    }

    /// A request id shaped like AWS's (a UUID), unique per emulator.
    pub(super) fn request_id(&self) -> String {
        let n = self.0.requests.fetch_add(1, Ordering::Relaxed);
        let a = self.0.nonce ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (a >> 32) as u32,
            (a >> 16) as u16,
            a as u16 & 0x0fff,
            (n >> 48) as u16 & 0x0fff,
            n & 0xffff_ffff_ffff
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::Fleet;

    #[test]
    fn the_clock_maps_a_period_of_real_time_to_a_virtual_minute() {
        let start = Timestamp::from_second(1_767_571_200).unwrap();
        let clock = Clock::new(start, Some(Duration::from_millis(10)));
        std::thread::sleep(Duration::from_millis(20));
        // At least two virtual minutes have passed; the upper bound is not asserted (timing).
        assert!(clock.now() >= start + SignedDuration::from_secs(120));
    }

    #[test]
    fn a_frozen_clock_moves_only_when_advanced() {
        let start = Timestamp::from_second(1_767_571_200).unwrap();
        let clock = Clock::new(start, None);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_secs(600));
        assert_eq!(clock.now(), start + SignedDuration::from_secs(600));
        assert_eq!(Clock::new(start, Some(Duration::ZERO)).period(), None);
    }

    #[test]
    fn request_ids_are_unique_and_uuid_shaped() {
        let state = EmulatorState::new(
            Box::new(Fleet::new(0, Timestamp::UNIX_EPOCH)),
            Clock::new(Timestamp::UNIX_EPOCH, None),
        );
        let a = state.request_id();
        let b = state.request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }
}
