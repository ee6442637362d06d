//! What the protocol layers serve: the service behind the wire protocols. Two backends
//! implement it — the model ([`Fleet`], virtual time) and real Flink jobs
//! ([`FlinkFleet`](crate::flink::FlinkFleet), `emulator --backend flink`).
//!
//! The methods are those of `sim::Fleet` (docs/design.md, "Layers"): synchronous, called
//! under the emulator's lock after [`Backend::advance_to`] the virtual now.

use jiff::Timestamp;

use crate::{
    flink::FlinkFleet,
    sim::{
        ApplicationView, CreateApplication, Fleet, MetricId, MetricQuery, OperationView, PutDatum, Scenario,
        ServiceError, SnapshotView, UpdateApplication,
    },
};

/// The Managed Flink service and its CloudWatch metrics, as the emulator serves them.
pub trait Backend: Send + std::fmt::Debug {
    /// Moves the service to virtual time `t` (whole metric periods).
    fn advance_to(&mut self, t: Timestamp);
    /// Adds a running application for a scenario.
    fn add_scenario(
        &mut self,
        scenario: &Scenario,
        name: Option<&str>,
    ) -> Result<ApplicationView, ServiceError>;
    /// `CreateApplication`.
    fn create_application(&mut self, req: CreateApplication) -> Result<ApplicationView, ServiceError>;
    /// `ListApplications`.
    fn list_applications(&self) -> Vec<ApplicationView>;
    /// `DescribeApplication`.
    fn describe_application(&self, name: &str) -> Result<ApplicationView, ServiceError>;
    /// `UpdateApplication`: the view and the operation id.
    fn update_application(
        &mut self,
        name: &str,
        req: UpdateApplication,
    ) -> Result<(ApplicationView, String), ServiceError>;
    /// `DescribeApplicationOperation`.
    fn describe_operation(&self, name: &str, operation_id: &str) -> Result<OperationView, ServiceError>;
    /// `UpdateApplication` whose restart fails with `failure` (the `failOperation` fault):
    /// the operation ends `FAILED` and the service rolls back. Backends that cannot fail a
    /// restart on purpose refuse.
    fn update_application_failing(
        &mut self,
        name: &str,
        req: UpdateApplication,
        failure: &str,
    ) -> Result<(ApplicationView, String), ServiceError> {
        let _ = (name, req, failure);
        Err(ServiceError::UnsupportedOperation(
            "this backend cannot fail an update on purpose (failOperation needs the model backend)".into(),
        ))
    }
    /// Sets the KPU quota per application (the control API's `PUT /_emulator/quotas`):
    /// updates and creations above it are refused with `LimitExceededException`.
    fn set_kpu_quota(&mut self, kpus: u32) -> Result<(), ServiceError> {
        let _ = kpus;
        Err(ServiceError::UnsupportedOperation(
            "this backend has no KPU quota to set (use the model backend)".into(),
        ))
    }
    /// Deletes an application (the control API's `DELETE /_emulator/applications/{name}`).
    fn delete_application(&mut self, name: &str) -> Result<(), ServiceError> {
        let _ = name;
        Err(ServiceError::UnsupportedOperation(
            "this backend cannot delete applications (use the model backend)".into(),
        ))
    }
    /// `ListApplicationOperations`, newest first.
    fn list_operations(&self, name: &str) -> Result<Vec<OperationView>, ServiceError>;
    /// `ListApplicationSnapshots`, oldest first.
    fn list_snapshots(&self, name: &str) -> Result<Vec<SnapshotView>, ServiceError>;
    /// `RollbackApplication`: the view and the operation id.
    fn rollback_application(
        &mut self,
        name: &str,
        current_version_id: i64,
    ) -> Result<(ApplicationView, String), ServiceError>;
    /// `StartApplication`: the operation id.
    fn start_application(&mut self, name: &str) -> Result<String, ServiceError>;
    /// `StopApplication`: the operation id.
    fn stop_application(&mut self, name: &str, force: bool) -> Result<String, ServiceError>;
    /// `TagResource`.
    fn tag_resource(&mut self, arn: &str, tags: Vec<(String, String)>) -> Result<(), ServiceError>;
    /// `UntagResource`.
    fn untag_resource(&mut self, arn: &str, keys: &[String]) -> Result<(), ServiceError>;
    /// `ListTagsForResource`.
    fn list_tags(&self, arn: &str) -> Result<Vec<(String, String)>, ServiceError>;
    /// Datapoints of one metric aggregated to the query's period and statistic.
    fn metric_data(&self, q: &MetricQuery) -> Vec<(Timestamp, f64)>;
    /// The unit a metric is published with.
    fn metric_unit(&self, id: &MetricId) -> Option<String>;
    /// `ListMetrics`.
    fn list_metrics(
        &self,
        namespace: Option<&str>,
        metric_name: Option<&str>,
        dims: &[(String, String)],
    ) -> Vec<MetricId>;
    /// `PutMetricData`.
    fn put_metric_data(&mut self, namespace: &str, data: Vec<PutDatum>) -> Result<(), ServiceError>;
    /// The model, when this backend is the model (for callers reading its internals).
    fn as_model(&self) -> Option<&Fleet> {
        None
    }
    /// The Flink backend, when this is it (for its control routes: workload changes).
    fn as_flink(&mut self) -> Option<&mut FlinkFleet> {
        None
    }
}

/// Forwards every trait method to the inherent method of the same name.
macro_rules! forward_backend {
    ($ty:ty, $unit:expr) => {
        fn advance_to(&mut self, t: Timestamp) {
            <$ty>::advance_to(self, t)
        }
        fn add_scenario(
            &mut self,
            scenario: &Scenario,
            name: Option<&str>,
        ) -> Result<ApplicationView, ServiceError> {
            <$ty>::add_scenario(self, scenario, name)
        }
        fn create_application(&mut self, req: CreateApplication) -> Result<ApplicationView, ServiceError> {
            <$ty>::create_application(self, req)
        }
        fn list_applications(&self) -> Vec<ApplicationView> {
            <$ty>::list_applications(self)
        }
        fn describe_application(&self, name: &str) -> Result<ApplicationView, ServiceError> {
            <$ty>::describe_application(self, name)
        }
        fn update_application(
            &mut self,
            name: &str,
            req: UpdateApplication,
        ) -> Result<(ApplicationView, String), ServiceError> {
            <$ty>::update_application(self, name, req)
        }
        fn describe_operation(&self, name: &str, operation_id: &str) -> Result<OperationView, ServiceError> {
            <$ty>::describe_operation(self, name, operation_id)
        }
        fn list_operations(&self, name: &str) -> Result<Vec<OperationView>, ServiceError> {
            <$ty>::list_operations(self, name)
        }
        fn list_snapshots(&self, name: &str) -> Result<Vec<SnapshotView>, ServiceError> {
            <$ty>::list_snapshots(self, name)
        }
        fn rollback_application(
            &mut self,
            name: &str,
            current_version_id: i64,
        ) -> Result<(ApplicationView, String), ServiceError> {
            <$ty>::rollback_application(self, name, current_version_id)
        }
        fn start_application(&mut self, name: &str) -> Result<String, ServiceError> {
            <$ty>::start_application(self, name)
        }
        fn stop_application(&mut self, name: &str, force: bool) -> Result<String, ServiceError> {
            <$ty>::stop_application(self, name, force)
        }
        fn tag_resource(&mut self, arn: &str, tags: Vec<(String, String)>) -> Result<(), ServiceError> {
            <$ty>::tag_resource(self, arn, tags)
        }
        fn untag_resource(&mut self, arn: &str, keys: &[String]) -> Result<(), ServiceError> {
            <$ty>::untag_resource(self, arn, keys)
        }
        fn list_tags(&self, arn: &str) -> Result<Vec<(String, String)>, ServiceError> {
            <$ty>::list_tags(self, arn)
        }
        fn metric_data(&self, q: &MetricQuery) -> Vec<(Timestamp, f64)> {
            <$ty>::metric_data(self, q)
        }
        fn metric_unit(&self, id: &MetricId) -> Option<String> {
            let unit: fn(&$ty, &MetricId) -> Option<String> = $unit;
            unit(self, id)
        }
        fn list_metrics(
            &self,
            namespace: Option<&str>,
            metric_name: Option<&str>,
            dims: &[(String, String)],
        ) -> Vec<MetricId> {
            <$ty>::list_metrics(self, namespace, metric_name, dims)
        }
        fn put_metric_data(&mut self, namespace: &str, data: Vec<PutDatum>) -> Result<(), ServiceError> {
            <$ty>::put_metric_data(self, namespace, data)
        }
    };
}

impl Backend for Fleet {
    forward_backend!(Fleet, |f, id| f.metric_unit(id).map(str::to_string));

    fn update_application_failing(
        &mut self,
        name: &str,
        req: UpdateApplication,
        failure: &str,
    ) -> Result<(ApplicationView, String), ServiceError> {
        Fleet::update_application_failing(self, name, req, failure)
    }

    fn delete_application(&mut self, name: &str) -> Result<(), ServiceError> {
        Fleet::delete_application(self, name)
    }

    fn set_kpu_quota(&mut self, kpus: u32) -> Result<(), ServiceError> {
        Fleet::set_kpu_quota(self, kpus);
        Ok(())
    }

    fn as_model(&self) -> Option<&Fleet> {
        Some(self)
    }
}

impl Backend for FlinkFleet {
    forward_backend!(FlinkFleet, |f, id| f.metric_unit(id));

    fn as_flink(&mut self) -> Option<&mut FlinkFleet> {
        Some(self)
    }
}
