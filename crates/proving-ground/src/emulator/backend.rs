//! What the protocol layers serve: the service behind the wire protocols — the one
//! [`Service`] over either runtime: the model ([`Fleet`], virtual time) or real Flink jobs
//! ([`FlinkFleet`], `emulator --backend flink`).
//!
//! The methods are those of [`Service`] (docs/design.md, "Layers"): synchronous, called
//! under the emulator's lock after [`Backend::advance_to`] the virtual now.

use jiff::Timestamp;

use crate::{
    flink::{FlinkFleet, backend::FlinkRuntime},
    sim::{
        ApplicationView, CreateApplication, Fleet, MetricId, MetricQuery, OperationView, PutDatum, Runtime,
        Scenario, Service, ServiceError, SnapshotView, UpdateApplication, fleet::Model,
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
    /// the operation ends `FAILED` and the service rolls back.
    fn update_application_failing(
        &mut self,
        name: &str,
        req: UpdateApplication,
        failure: &str,
    ) -> Result<(ApplicationView, String), ServiceError>;
    /// Sets the KPU quota per application (the control API's `PUT /_emulator/quotas`):
    /// updates and creations above it are refused with `LimitExceededException`.
    fn set_kpu_quota(&mut self, kpus: u32) -> Result<(), ServiceError>;
    /// Deletes an application (the control API's `DELETE /_emulator/applications/{name}`).
    fn delete_application(&mut self, name: &str) -> Result<(), ServiceError>;
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
    fn as_model(&self) -> Option<&Fleet>;
    /// The Flink backend, when this is it (for its control routes: workload changes).
    fn as_flink(&mut self) -> Option<&mut FlinkFleet>;
}

/// Which runtime a service runs on, for the callers that reach past the service into it.
pub trait Which: Runtime + Sized {
    /// The service, when its runtime is the model.
    fn model(service: &Service<Self>) -> Option<&Fleet>;
    /// The service, when its runtime is real Flink.
    fn flink(service: &mut Service<Self>) -> Option<&mut FlinkFleet>;
}

impl Which for Model {
    fn model(service: &Fleet) -> Option<&Fleet> {
        Some(service)
    }

    fn flink(_: &mut Fleet) -> Option<&mut FlinkFleet> {
        None
    }
}

impl Which for FlinkRuntime {
    fn model(_: &FlinkFleet) -> Option<&Fleet> {
        None
    }

    fn flink(service: &mut FlinkFleet) -> Option<&mut FlinkFleet> {
        Some(service)
    }
}

impl<R> Backend for Service<R>
where
    R: Which + Send + std::fmt::Debug,
    R::Job: Send + std::fmt::Debug,
{
    fn advance_to(&mut self, t: Timestamp) {
        Service::advance_to(self, t)
    }
    fn add_scenario(
        &mut self,
        scenario: &Scenario,
        name: Option<&str>,
    ) -> Result<ApplicationView, ServiceError> {
        Service::add_scenario(self, scenario, name)
    }
    fn create_application(&mut self, req: CreateApplication) -> Result<ApplicationView, ServiceError> {
        Service::create_application(self, req)
    }
    fn list_applications(&self) -> Vec<ApplicationView> {
        Service::list_applications(self)
    }
    fn describe_application(&self, name: &str) -> Result<ApplicationView, ServiceError> {
        Service::describe_application(self, name)
    }
    fn update_application(
        &mut self,
        name: &str,
        req: UpdateApplication,
    ) -> Result<(ApplicationView, String), ServiceError> {
        Service::update_application(self, name, req)
    }
    fn describe_operation(&self, name: &str, operation_id: &str) -> Result<OperationView, ServiceError> {
        Service::describe_operation(self, name, operation_id)
    }
    fn update_application_failing(
        &mut self,
        name: &str,
        req: UpdateApplication,
        failure: &str,
    ) -> Result<(ApplicationView, String), ServiceError> {
        Service::update_application_failing(self, name, req, failure)
    }
    fn set_kpu_quota(&mut self, kpus: u32) -> Result<(), ServiceError> {
        Service::set_kpu_quota(self, kpus);
        Ok(())
    }
    fn delete_application(&mut self, name: &str) -> Result<(), ServiceError> {
        Service::delete_application(self, name)
    }
    fn list_operations(&self, name: &str) -> Result<Vec<OperationView>, ServiceError> {
        Service::list_operations(self, name)
    }
    fn list_snapshots(&self, name: &str) -> Result<Vec<SnapshotView>, ServiceError> {
        Service::list_snapshots(self, name)
    }
    fn rollback_application(
        &mut self,
        name: &str,
        current_version_id: i64,
    ) -> Result<(ApplicationView, String), ServiceError> {
        Service::rollback_application(self, name, current_version_id)
    }
    fn start_application(&mut self, name: &str) -> Result<String, ServiceError> {
        Service::start_application(self, name)
    }
    fn stop_application(&mut self, name: &str, force: bool) -> Result<String, ServiceError> {
        Service::stop_application(self, name, force)
    }
    fn tag_resource(&mut self, arn: &str, tags: Vec<(String, String)>) -> Result<(), ServiceError> {
        Service::tag_resource(self, arn, tags)
    }
    fn untag_resource(&mut self, arn: &str, keys: &[String]) -> Result<(), ServiceError> {
        Service::untag_resource(self, arn, keys)
    }
    fn list_tags(&self, arn: &str) -> Result<Vec<(String, String)>, ServiceError> {
        Service::list_tags(self, arn)
    }
    fn metric_data(&self, q: &MetricQuery) -> Vec<(Timestamp, f64)> {
        Service::metric_data(self, q)
    }
    fn metric_unit(&self, id: &MetricId) -> Option<String> {
        Service::metric_unit(self, id).map(str::to_string)
    }
    fn list_metrics(
        &self,
        namespace: Option<&str>,
        metric_name: Option<&str>,
        dims: &[(String, String)],
    ) -> Vec<MetricId> {
        Service::list_metrics(self, namespace, metric_name, dims)
    }
    fn put_metric_data(&mut self, namespace: &str, data: Vec<PutDatum>) -> Result<(), ServiceError> {
        Service::put_metric_data(self, namespace, data)
    }
    fn as_model(&self) -> Option<&Fleet> {
        R::model(self)
    }
    fn as_flink(&mut self) -> Option<&mut FlinkFleet> {
        R::flink(self)
    }
}
