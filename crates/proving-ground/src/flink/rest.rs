//! A client of the Flink REST API (the JobManager's `rest.port`), for the few calls the
//! backend needs: job state, stop-with-savepoint, checkpoint statistics, vertex and
//! TaskManager metrics.
//!
//! NB: plain HTTP/1 over loopback with hyper (already in the tree through kube and the AWS
//! SDK); every request carries a timeout so a wedged JobManager cannot hang the emulator.

use std::{collections::BTreeMap, time::Duration};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::Value;

/// Timeout of one REST call.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What can go wrong talking to the REST API.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// The connection or the exchange failed (the JobManager is down or restarting).
    #[error("{method} {path}: {source}")]
    Transport {
        /// HTTP method.
        method: &'static str,
        /// Request path.
        path: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No answer within the timeout.
    #[error("{method} {path}: no answer within {REQUEST_TIMEOUT:?}")]
    Timeout {
        /// HTTP method.
        method: &'static str,
        /// Request path.
        path: String,
    },
    /// Flink answered with an error status.
    #[error("{method} {path}: HTTP {status}: {body}")]
    Status {
        /// HTTP method.
        method: &'static str,
        /// Request path.
        path: String,
        /// HTTP status.
        status: u16,
        /// Flink's error body (`{"errors": [...]}`).
        body: String,
    },
    /// The answer was not the JSON expected.
    #[error("{path}: unexpected answer: {source}")]
    Decode {
        /// Request path.
        path: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

impl RestError {
    /// Whether Flink answered 404 (unknown job, vertex, request id).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Status { status: 404, .. })
    }
}

/// The state of a Flink job (`JobStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Submitted, not yet scheduled.
    Initializing,
    /// Created.
    Created,
    /// Running (tasks may still be deploying or restoring).
    Running,
    /// Failing.
    Failing,
    /// Failed for good.
    Failed,
    /// Being cancelled.
    Cancelling,
    /// Cancelled.
    Canceled,
    /// Finished (a stop-with-savepoint ends here).
    Finished,
    /// Restarting after a failure.
    Restarting,
    /// Suspended.
    Suspended,
    /// Reconciling.
    Reconciling,
}

impl JobState {
    /// Whether the job has ended for good.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Failed | Self::Canceled | Self::Finished | Self::Suspended
        )
    }
}

/// One vertex (a chain of operators) of a job.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Vertex {
    /// Vertex id.
    pub id: String,
    /// Name (the operator chain).
    pub name: String,
    /// Parallelism it runs at.
    pub parallelism: u32,
    /// Aggregated execution state of its subtasks (`RUNNING`, `INITIALIZING`, ...).
    pub status: String,
}

/// `GET /jobs/:id`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct JobDetails {
    /// Job id.
    pub jid: String,
    /// Job name.
    pub name: String,
    /// Job state.
    pub state: JobState,
    /// Milliseconds since the job started (or ran, when ended).
    pub duration: i64,
    /// The vertices, sources first.
    pub vertices: Vec<Vertex>,
}

impl JobDetails {
    /// Whether every subtask runs, i.e. the state was restored and processing started.
    pub fn all_running(&self) -> bool {
        self.state == JobState::Running && self.vertices.iter().all(|v| v.status == "RUNNING")
    }
}

/// Checkpoint counters of a job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
pub struct CheckpointCounts {
    /// Restores (1 after a savepoint restore).
    pub restored: u64,
    /// Checkpoints triggered.
    pub total: u64,
    /// In flight.
    pub in_progress: u64,
    /// Completed.
    pub completed: u64,
    /// Failed.
    pub failed: u64,
}

/// The latest completed checkpoint.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct CompletedCheckpoint {
    /// Checkpoint id (continues across a savepoint restore).
    pub id: u64,
    /// End-to-end duration, ms.
    pub end_to_end_duration: u64,
    /// Bytes written by this checkpoint (the full state unless incremental).
    pub checkpointed_size: u64,
    /// Full state size, bytes.
    #[serde(default)]
    pub state_size: u64,
    /// Whether this was a savepoint.
    #[serde(default)]
    pub is_savepoint: bool,
}

/// The latest failed checkpoint.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct FailedCheckpoint {
    /// Checkpoint id.
    pub id: u64,
    /// Why it failed.
    #[serde(default)]
    pub failure_message: Option<String>,
}

/// The savepoint or checkpoint a job was restored from.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct RestoredCheckpoint {
    /// Its checkpoint id.
    pub id: u64,
    /// Its location.
    #[serde(default)]
    pub external_path: Option<String>,
    /// Whether it was a savepoint.
    #[serde(default)]
    pub is_savepoint: bool,
}

/// `latest` of `GET /jobs/:id/checkpoints`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct LatestCheckpoints {
    /// Latest completed checkpoint.
    pub completed: Option<CompletedCheckpoint>,
    /// Latest failed checkpoint.
    pub failed: Option<FailedCheckpoint>,
    /// Restore the job started from.
    pub restored: Option<RestoredCheckpoint>,
}

/// `GET /jobs/:id/checkpoints`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct CheckpointStats {
    /// Counters.
    pub counts: CheckpointCounts,
    /// Latest checkpoints.
    #[serde(default)]
    pub latest: LatestCheckpoints,
}

/// One metric aggregated over the subtasks of a vertex.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Aggregate {
    /// Smallest subtask value.
    pub min: f64,
    /// Largest subtask value.
    pub max: f64,
    /// Mean over subtasks.
    pub avg: f64,
    /// Sum over subtasks.
    pub sum: f64,
}

/// JVM figures of one TaskManager.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TaskManagerJvm {
    /// `Status.JVM.CPU.Load`: the process's share of the machine's CPU, 0..1.
    pub cpu_load: f64,
    /// `Status.JVM.Memory.Heap.Used`, bytes.
    pub heap_used: f64,
    /// `Status.JVM.Memory.Heap.Max`, bytes.
    pub heap_max: f64,
    /// `Status.JVM.Memory.NonHeap.Used`, bytes.
    pub non_heap_used: f64,
    /// `Status.JVM.Memory.Direct.MemoryUsed`, bytes.
    pub direct_used: f64,
    /// `Status.Flink.Memory.Managed.Used` (RocksDB), bytes.
    pub managed_used: f64,
}

/// `GET /overview`.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
pub struct ClusterOverview {
    /// Registered TaskManagers.
    pub taskmanagers: u32,
    /// Slots in total.
    #[serde(rename = "slots-total")]
    pub slots_total: u32,
    /// Free slots.
    #[serde(rename = "slots-available")]
    pub slots_available: u32,
}

/// The state of an asynchronous savepoint request.
#[derive(Clone, Debug, PartialEq)]
pub enum SavepointState {
    /// Still being taken.
    InProgress,
    /// Written; the job has stopped.
    Completed {
        /// Where (a `file:` URI).
        location: String,
    },
    /// Could not be taken; the job keeps running.
    Failed {
        /// Flink's reason.
        cause: String,
    },
}

/// A REST client of one JobManager.
#[derive(Clone, Debug)]
pub struct RestClient {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl RestClient {
    /// A client of `http://127.0.0.1:<port>`.
    pub fn new(port: u16) -> Self {
        Self {
            base: format!("http://127.0.0.1:{port}"),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call(&self, method: &'static str, path: &str, body: Option<Value>) -> Result<Bytes, RestError> {
        let transport = |e: Box<dyn std::error::Error + Send + Sync>| RestError::Transport {
            method,
            path: path.to_string(),
            source: e,
        };
        let body = match body {
            Some(v) => Full::new(Bytes::from(v.to_string())),
            None => Full::new(Bytes::new()),
        };
        let req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .map_err(|e| transport(Box::new(e)))?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| transport(Box::new(e)))?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| transport(Box::new(e)))?
                .to_bytes();
            Ok::<_, RestError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| RestError::Timeout {
                method,
                path: path.to_string(),
            })??;
        if !status.is_success() {
            return Err(RestError::Status {
                method,
                path: path.to_string(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).chars().take(2000).collect(),
            });
        }
        Ok(bytes)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, RestError> {
        let bytes = self.call("GET", path, None).await?;
        serde_json::from_slice(&bytes).map_err(|source| RestError::Decode {
            path: path.to_string(),
            source,
        })
    }

    /// `GET /overview`: TaskManagers and slots.
    pub async fn overview(&self) -> Result<ClusterOverview, RestError> {
        self.get("/overview").await
    }

    /// `GET /jobs/:id`.
    pub async fn job(&self, job: &str) -> Result<JobDetails, RestError> {
        self.get(&format!("/jobs/{job}")).await
    }

    /// The most recent failure of a job, from `GET /jobs/:id/exceptions`, as one line.
    pub async fn root_exception(&self, job: &str) -> Result<Option<String>, RestError> {
        let v: Value = self
            .get(&format!("/jobs/{job}/exceptions?maxExceptions=1"))
            .await?;
        Ok(root_exception(&v))
    }

    /// `PATCH /jobs/:id?mode=cancel`.
    pub async fn cancel(&self, job: &str) -> Result<(), RestError> {
        self.call("PATCH", &format!("/jobs/{job}?mode=cancel"), None)
            .await?;
        Ok(())
    }

    /// `POST /jobs/:id/stop`: takes a savepoint into `target_dir` and stops the job (no
    /// drain: timers and windows are not flushed, so the job resumes where it stopped).
    /// Returns the request id to poll with [`RestClient::savepoint_status`].
    pub async fn stop_with_savepoint(&self, job: &str, target_dir: &str) -> Result<String, RestError> {
        #[derive(Deserialize)]
        struct Trigger {
            #[serde(rename = "request-id")]
            request_id: String,
        }
        let path = format!("/jobs/{job}/stop");
        let body = serde_json::json!({"targetDirectory": target_dir, "drain": false});
        let bytes = self.call("POST", &path, Some(body)).await?;
        let t: Trigger =
            serde_json::from_slice(&bytes).map_err(|source| RestError::Decode { path, source })?;
        Ok(t.request_id)
    }

    /// `GET /jobs/:id/savepoints/:request`.
    pub async fn savepoint_status(&self, job: &str, request: &str) -> Result<SavepointState, RestError> {
        let path = format!("/jobs/{job}/savepoints/{request}");
        let v: Value = self.get(&path).await?;
        Ok(savepoint_state(&v))
    }

    /// `GET /jobs/:id/checkpoints`.
    pub async fn checkpoints(&self, job: &str) -> Result<CheckpointStats, RestError> {
        self.get(&format!("/jobs/{job}/checkpoints")).await
    }

    /// Job-level metrics (`numRestarts`, `uptime`, `downtime`, ...), by name.
    pub async fn job_metrics(&self, job: &str, names: &[&str]) -> Result<BTreeMap<String, f64>, RestError> {
        let v: Value = self
            .get(&format!("/jobs/{job}/metrics?get={}", names.join(",")))
            .await?;
        Ok(plain_metrics(&v))
    }

    /// Metrics of one vertex aggregated over its subtasks, by name.
    pub async fn vertex_metrics(
        &self,
        job: &str,
        vertex: &str,
        names: &[&str],
    ) -> Result<BTreeMap<String, Aggregate>, RestError> {
        let v: Value = self
            .get(&format!(
                "/jobs/{job}/vertices/{vertex}/subtasks/metrics?get={}",
                names.join(",")
            ))
            .await?;
        Ok(aggregated_metrics(&v))
    }

    /// Metrics of each subtask of a vertex (`GET /jobs/:id/vertices/:vertex/metrics` with
    /// `<subtask>.<name>` ids), one map per subtask index `0..parallelism`.
    pub async fn subtask_metrics(
        &self,
        job: &str,
        vertex: &str,
        parallelism: u32,
        names: &[&str],
    ) -> Result<Vec<BTreeMap<String, f64>>, RestError> {
        let ids: Vec<String> = (0..parallelism)
            .flat_map(|i| names.iter().map(move |n| format!("{i}.{n}")))
            .collect();
        let v: Value = self
            .get(&format!(
                "/jobs/{job}/vertices/{vertex}/metrics?get={}",
                ids.join(",")
            ))
            .await?;
        let mut out = vec![BTreeMap::new(); parallelism as usize];
        for (id, value) in plain_metrics(&v) {
            if let Some((index, name)) = id.split_once('.')
                && let Ok(index) = index.parse::<usize>()
                && let Some(subtask) = out.get_mut(index)
            {
                subtask.insert(name.to_string(), value);
            }
        }
        Ok(out)
    }

    /// Ids of the registered TaskManagers.
    pub async fn taskmanagers(&self) -> Result<Vec<String>, RestError> {
        let v: Value = self.get("/taskmanagers").await?;
        Ok(v.get("taskmanagers")
            .and_then(Value::as_array)
            .map(|tms| {
                tms.iter()
                    .filter_map(|t| t.get("id").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// JVM CPU load and memory of one TaskManager.
    pub async fn taskmanager_jvm(&self, tm: &str) -> Result<TaskManagerJvm, RestError> {
        let v: Value = self
            .get(&format!(
                "/taskmanagers/{tm}/metrics?get=Status.JVM.CPU.Load,Status.JVM.Memory.Heap.Used,\
                 Status.JVM.Memory.Heap.Max,Status.JVM.Memory.NonHeap.Used,\
                 Status.JVM.Memory.Direct.MemoryUsed,Status.Flink.Memory.Managed.Used"
            ))
            .await?;
        let m = plain_metrics(&v);
        let get = |k: &str| m.get(k).copied().unwrap_or(0.0);
        Ok(TaskManagerJvm {
            cpu_load: get("Status.JVM.CPU.Load"),
            heap_used: get("Status.JVM.Memory.Heap.Used"),
            heap_max: get("Status.JVM.Memory.Heap.Max"),
            non_heap_used: get("Status.JVM.Memory.NonHeap.Used"),
            direct_used: get("Status.JVM.Memory.Direct.MemoryUsed"),
            managed_used: get("Status.Flink.Memory.Managed.Used"),
        })
    }
}

/// A number Flink may send as a JSON number or a string (`"NaN"` when not yet measured).
fn number(v: &Value) -> Option<f64> {
    let n = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }?;
    n.is_finite().then_some(n)
}

/// `[{"id": name, "value": v}]` → map (unmeasured values left out).
fn plain_metrics(v: &Value) -> BTreeMap<String, f64> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let id = m.get("id")?.as_str()?;
            Some((id.to_string(), number(m.get("value")?)?))
        })
        .collect()
}

/// `[{"id": name, "min", "max", "avg", "sum"}]` → map (unmeasured values left out).
fn aggregated_metrics(v: &Value) -> BTreeMap<String, Aggregate> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let id = m.get("id")?.as_str()?;
            let f = |k: &str| m.get(k).and_then(number);
            Some((
                id.to_string(),
                Aggregate {
                    min: f("min")?,
                    max: f("max")?,
                    avg: f("avg")?,
                    sum: f("sum")?,
                },
            ))
        })
        .collect()
}

fn savepoint_state(v: &Value) -> SavepointState {
    let status = v.pointer("/status/id").and_then(Value::as_str).unwrap_or("");
    if status != "COMPLETED" {
        return SavepointState::InProgress;
    }
    if let Some(location) = v.pointer("/operation/location").and_then(Value::as_str) {
        return SavepointState::Completed {
            location: location.to_string(),
        };
    }
    let cause = v
        .pointer("/operation/failure-cause/stack-trace")
        .and_then(Value::as_str)
        .map(first_line)
        .or_else(|| {
            v.pointer("/operation/failure-cause/class")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "the savepoint failed without a reason".to_string());
    SavepointState::Failed { cause }
}

fn root_exception(v: &Value) -> Option<String> {
    let entry = v.pointer("/exceptionHistory/entries/0");
    let from_entry = entry.and_then(|e| {
        e.get("stacktrace")
            .and_then(Value::as_str)
            .map(deepest_cause)
            .or_else(|| e.get("exceptionName").and_then(Value::as_str).map(str::to_string))
    });
    from_entry.or_else(|| v.get("root-exception").and_then(Value::as_str).map(deepest_cause))
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// The innermost `Caused by:` of a Java stack trace (the actual reason), or its first line.
fn deepest_cause(trace: &str) -> String {
    trace
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("Caused by: "))
        .map(str::to_string)
        .unwrap_or_else(|| first_line(trace))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn metrics_skip_unmeasured_values_and_read_strings() {
        let v = json!([
            {"id": "busyTimeMsPerSecond", "min": "NaN", "max": "NaN", "avg": "NaN", "sum": "NaN"},
            {"id": "backPressuredTimeMsPerSecond", "min": 800.0, "max": 845.0, "avg": 822.5, "sum": 1645.0}
        ]);
        let m = aggregated_metrics(&v);
        assert!(!m.contains_key("busyTimeMsPerSecond"));
        assert_eq!(m["backPressuredTimeMsPerSecond"].max, 845.0);
        let p = plain_metrics(&json!([{"id": "uptime", "value": "66525"}, {"id": "x", "value": "NaN"}]));
        assert_eq!(p.len(), 1);
        assert_eq!(p["uptime"], 66525.0);
    }

    #[test]
    fn savepoint_states() {
        assert_eq!(
            savepoint_state(&json!({"status": {"id": "IN_PROGRESS"}})),
            SavepointState::InProgress
        );
        assert_eq!(
            savepoint_state(
                &json!({"status": {"id": "COMPLETED"}, "operation": {"location": "file:/x/sp-1"}})
            ),
            SavepointState::Completed {
                location: "file:/x/sp-1".into()
            }
        );
        let failed = savepoint_state(&json!({"status": {"id": "COMPLETED"}, "operation": {
            "failure-cause": {"class": "java.util.concurrent.CompletionException",
                              "stack-trace": "CheckpointException: Checkpoint expired\n\tat x"}}}));
        assert_eq!(
            failed,
            SavepointState::Failed {
                cause: "CheckpointException: Checkpoint expired".into()
            }
        );
    }

    #[test]
    fn root_exception_takes_the_deepest_cause() {
        let v = json!({"exceptionHistory": {"entries": [{
            "exceptionName": "org.apache.flink.runtime.JobException",
            "stacktrace": "JobException: Recovery is suppressed\n\tat a\nCaused by: java.lang.IllegalStateException: The maximum parallelism (2) is smaller than the parallelism (4)\n\tat b"
        }]}});
        assert_eq!(
            root_exception(&v).as_deref(),
            Some(
                "java.lang.IllegalStateException: The maximum parallelism (2) is smaller than the parallelism (4)"
            )
        );
        assert_eq!(
            root_exception(&json!({"exceptionHistory": {"entries": []}})),
            None
        );
    }

    #[test]
    fn job_details_and_checkpoints_decode() {
        let d: JobDetails = serde_json::from_value(json!({
            "jid": "c48", "name": "j", "state": "RUNNING", "duration": 5,
            "vertices": [{"id": "v1", "name": "Source", "parallelism": 2, "status": "RUNNING"},
                         {"id": "v2", "name": "Agg", "parallelism": 2, "status": "INITIALIZING"}]
        }))
        .unwrap();
        assert!(!d.all_running());
        let c: CheckpointStats = serde_json::from_value(json!({
            "counts": {"restored": 1, "total": 4, "in_progress": 1, "completed": 2, "failed": 1},
            "latest": {"completed": {"id": 8, "end_to_end_duration": 25080, "checkpointed_size": 22191532,
                                     "state_size": 22191532, "is_savepoint": false},
                       "failed": null, "savepoint": null,
                       "restored": {"id": 6, "external_path": "file:/sp", "is_savepoint": true}}
        }))
        .unwrap();
        assert_eq!(c.counts.completed, 2);
        assert_eq!(c.latest.completed.unwrap().checkpointed_size, 22191532);
        assert_eq!(c.latest.restored.unwrap().id, 6);
    }
}
