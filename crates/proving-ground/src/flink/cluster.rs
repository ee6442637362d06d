//! A standalone Flink cluster on loopback: one JobManager and N TaskManagers started with
//! the distribution's own scripts (`bin/jobmanager.sh` / `bin/taskmanager.sh`
//! `start-foreground`) against a copy of `conf/` in a temporary directory, stopped when the
//! [`Cluster`] is dropped.
//!
//! Every listening socket binds 127.0.0.1: REST and JobManager RPC on ports chosen at run
//! time, blob server, TaskManager RPC and data ports on port 0 (the OS picks).
//!
//! With [`ClusterConfig::pin_taskmanagers`], TaskManager `i` runs on one CPU core (`taskset`,
//! the `i`-th core the process may use, round robin): a TaskManager stands for one KPU and
//! a KPU is one vCPU, so two slots of one TaskManager share a core as two subtasks of one
//! KPU share its vCPU — the capacity the policy reasons about is the capacity the job has.
//! Pinned TaskManagers also run at a raised priority (`nice -n -10`, where allowed), so that
//! on a machine shared with other work the core is mostly theirs, as a KPU's vCPU is.

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_yaml::{Mapping, Value};

use super::{
    FlinkError,
    job::{Workload, parse_job_id, render_job},
    rest::RestClient,
};

/// Scheduling priority of a pinned TaskManager: its core is its KPU's vCPU, so other work on
/// a shared machine (builds, other clusters' JobManagers) yields to it, as a KPU's vCPU is
/// not shared on the service.
const TASKMANAGER_NICE: i32 = -10;
/// How long a stopped JVM gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long `flink run -d` may take (it starts a client JVM and a Python process).
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(300);

/// An installed Flink distribution (the `pyflink` package directory of `apache-flink`) and
/// the Python the `flink run -py` client needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlinkHome {
    /// The directory holding `bin/`, `lib/` and `conf/`.
    pub dir: PathBuf,
    /// The Python with `pyflink` installed (`PYFLINK_CLIENT_EXECUTABLE`).
    pub python: PathBuf,
}

impl FlinkHome {
    /// Finds the distribution: `explicit`, else `$FLINK_HOME`, else what
    /// `scripts/install-flink.sh` installs under `.flink/` of the current directory. The
    /// Python is `$PYFLINK_CLIENT_EXECUTABLE`, else the virtualenv the package lives in.
    /// Also checks that `java` runs.
    pub fn locate(explicit: Option<&Path>) -> Result<Self, FlinkError> {
        let dir = match explicit {
            Some(d) => d.to_path_buf(),
            None => match std::env::var_os("FLINK_HOME") {
                Some(d) => PathBuf::from(d),
                None => find_installed(Path::new(".flink")).ok_or_else(|| {
                    FlinkError::Home(
                        "no Flink distribution: pass --flink-home, set FLINK_HOME, or run \
                         scripts/install-flink.sh"
                            .into(),
                    )
                })?,
            },
        };
        for f in [
            "bin/jobmanager.sh",
            "bin/taskmanager.sh",
            "bin/flink",
            "conf/config.yaml",
        ] {
            if !dir.join(f).exists() {
                return Err(FlinkError::Home(format!(
                    "{} is not a Flink distribution: {f} is missing",
                    dir.display()
                )));
            }
        }
        let python = match std::env::var_os("PYFLINK_CLIENT_EXECUTABLE") {
            Some(p) => PathBuf::from(p),
            // <venv>/lib/pythonX.Y/site-packages/pyflink → <venv>/bin/python
            None => dir
                .ancestors()
                .nth(4)
                .map(|venv| venv.join("bin/python"))
                .filter(|p| p.exists())
                .unwrap_or_else(|| PathBuf::from("python3")),
        };
        let java = Command::new(java_binary())
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !java.is_ok_and(|s| s.success()) {
            return Err(FlinkError::Home(
                "java does not run: install Java 17 (scripts/install-flink.sh does)".into(),
            ));
        }
        Ok(Self { dir, python })
    }
}

fn java_binary() -> PathBuf {
    std::env::var_os("JAVA_HOME")
        .map(|h| PathBuf::from(h).join("bin/java"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("java"))
}

/// `<root>/venv/lib/python*/site-packages/pyflink`, as `scripts/install-flink.sh` lays it out.
fn find_installed(root: &Path) -> Option<PathBuf> {
    let lib = root.join("venv/lib");
    fs::read_dir(lib).ok()?.flatten().find_map(|e| {
        let p = e.path().join("site-packages/pyflink");
        p.join("bin/flink")
            .exists()
            .then(|| p.canonicalize().unwrap_or(p))
    })
}

/// The shape of a cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterConfig {
    /// TaskManagers (each one JVM).
    pub taskmanagers: u32,
    /// `taskmanager.numberOfTaskSlots`.
    pub slots_per_taskmanager: u32,
    /// `taskmanager.memory.process.size`.
    pub taskmanager_memory: String,
    /// `jobmanager.memory.process.size`.
    pub jobmanager_memory: String,
    /// Default checkpoint interval (jobs set their own).
    pub checkpoint_interval: Duration,
    /// Default checkpoint timeout (jobs set their own).
    pub checkpoint_timeout: Duration,
    /// How long to wait for the REST API and the TaskManagers' slots.
    pub startup_timeout: Duration,
    /// Runs each TaskManager on one CPU core (see the module docs); ignored where
    /// `taskset` or the allowed cores are unknown.
    pub pin_taskmanagers: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            taskmanagers: 1,
            slots_per_taskmanager: 2,
            taskmanager_memory: "1728m".into(),
            jobmanager_memory: "1280m".into(),
            checkpoint_interval: Duration::from_secs(5),
            checkpoint_timeout: Duration::from_secs(60),
            startup_timeout: Duration::from_secs(240),
            pin_taskmanagers: true,
        }
    }
}

/// A running standalone cluster; dropping it stops every JVM it started and removes its
/// directory (configuration, logs, checkpoints, savepoints).
#[derive(Debug)]
pub struct Cluster {
    home: FlinkHome,
    dir: tempfile::TempDir,
    rest: RestClient,
    config: ClusterConfig,
    jobmanager: Option<Child>,
    taskmanagers: Vec<Child>,
    jobs_written: u32,
    /// The cores TaskManagers are pinned to, round robin (empty: not pinned).
    cores: Vec<u32>,
}

impl Cluster {
    /// Starts a cluster and waits until its REST API reports every TaskManager slot.
    pub async fn start(home: &FlinkHome, config: ClusterConfig) -> Result<Self, FlinkError> {
        let dir = tempfile::Builder::new()
            .prefix("flink-cluster-")
            .tempdir()
            .map_err(|e| FlinkError::io("creating the cluster directory", e))?;
        for d in ["conf", "log", "checkpoints", "savepoints", "tmp", "pids", "jobs"] {
            fs::create_dir_all(dir.path().join(d)).map_err(|e| FlinkError::io("creating directories", e))?;
        }
        let rest_port = free_port()?;
        let rpc_port = free_port()?;
        write_conf(&home.dir.join("conf"), dir.path(), &config, rest_port, rpc_port)?;
        let mut cluster = Self {
            home: home.clone(),
            rest: RestClient::new(rest_port),
            dir,
            config,
            jobmanager: None,
            taskmanagers: Vec::new(),
            jobs_written: 0,
            cores: Vec::new(),
        };
        if cluster.config.pin_taskmanagers {
            cluster.cores = pinnable_cores();
        }
        cluster.jobmanager = Some(cluster.spawn("jobmanager.sh", "jobmanager", &[], None)?);
        let (count, slots) = (cluster.config.taskmanagers, cluster.config.slots_per_taskmanager);
        cluster.start_taskmanagers(0, count, slots)?;
        cluster.wait_for_slots(count, slots).await?;
        Ok(cluster)
    }

    /// The REST client of the JobManager.
    pub fn rest(&self) -> &RestClient {
        &self.rest
    }

    /// The cluster's working directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where savepoints go (a `file:` URI for the REST API).
    pub fn savepoint_uri(&self) -> String {
        format!("file://{}", self.dir.path().join("savepoints").display())
    }

    /// Makes the checkpoint storage of `job` refuse (or accept again) new checkpoints: its
    /// directory is moved aside and a plain file takes its place, so the JobManager cannot
    /// create `chk-N` and every checkpoint fails at once — the signature of a checkpoint
    /// storage that denies writes (or of a serializer or external call that fails at every
    /// checkpoint), whatever the resources. A plain file stops root too, where permissions
    /// would not. Savepoints go elsewhere and keep working.
    pub fn set_checkpoint_storage_failing(&self, job: &str, failing: bool) -> Result<(), FlinkError> {
        let path = self.dir.path().join("checkpoints").join(job);
        let aside = self
            .dir
            .path()
            .join("checkpoints")
            .join(format!("{job}.unwritable"));
        let io = |e| FlinkError::io("switching the checkpoint storage", e);
        if failing {
            if path.is_dir() {
                fs::rename(&path, &aside).map_err(io)?;
            }
            if !path.exists() {
                fs::write(
                    &path,
                    b"checkpoint storage made unwritable by the Flink backend\n",
                )
                .map_err(io)?;
            }
        } else {
            if path.is_file() {
                fs::remove_file(&path).map_err(io)?;
            }
            if aside.is_dir() && !path.exists() {
                fs::rename(&aside, &path).map_err(io)?;
            }
        }
        Ok(())
    }

    /// TaskManagers and slots per TaskManager now.
    pub fn layout(&self) -> (u32, u32) {
        (self.config.taskmanagers, self.config.slots_per_taskmanager)
    }

    /// The CPU cores the TaskManagers have between them: one each when pinned (shared
    /// round robin when there are more TaskManagers than cores), `None` when not pinned
    /// (each may use every core of the machine).
    pub fn taskmanager_cores(&self) -> Option<u32> {
        let cores = u32::try_from(self.cores.len()).unwrap_or(u32::MAX);
        (cores > 0).then(|| self.config.taskmanagers.min(cores))
    }

    /// Replaces the TaskManagers with `count` of `slots` slots each (no job may be running:
    /// the backend calls this between a savepoint and the restore).
    ///
    /// With the same slots per TaskManager, the running TaskManagers stay (their JVMs keep
    /// what the JIT compiled) and only the difference is started or stopped.
    pub async fn reshape(&mut self, count: u32, slots: u32) -> Result<(), FlinkError> {
        if (count, slots) == self.layout() {
            return Ok(());
        }
        let running = u32::try_from(self.taskmanagers.len()).unwrap_or(u32::MAX);
        if slots == self.config.slots_per_taskmanager && running == self.config.taskmanagers {
            if count > running {
                self.start_taskmanagers(running, count - running, slots)?;
            } else {
                for tm in self.taskmanagers.split_off(count as usize) {
                    stop_child(tm);
                }
            }
            self.config.taskmanagers = count;
            return self.wait_for_slots(count, slots).await;
        }
        for tm in std::mem::take(&mut self.taskmanagers) {
            stop_child(tm);
        }
        self.wait_for_slots(0, slots).await?;
        self.start_taskmanagers(0, count, slots)?;
        self.config.taskmanagers = count;
        self.config.slots_per_taskmanager = slots;
        self.wait_for_slots(count, slots).await
    }

    /// Submits the job of `workload` at `parallelism`, restoring `savepoint` if given;
    /// returns the Flink job id once `flink run -d` has handed it to the JobManager.
    pub async fn submit(
        &mut self,
        name: &str,
        workload: &Workload,
        parallelism: u32,
        savepoint: Option<&str>,
    ) -> Result<String, FlinkError> {
        self.jobs_written += 1;
        let file = self.dir.path().join(format!("jobs/job-{}.py", self.jobs_written));
        fs::write(&file, render_job(name, workload))
            .map_err(|e| FlinkError::io("writing the job file", e))?;
        let mut cmd = tokio::process::Command::new(self.home.dir.join("bin/flink"));
        cmd.arg("run").arg("-d").arg("-p").arg(parallelism.to_string());
        if let Some(sp) = savepoint {
            cmd.arg("-s").arg(sp);
        }
        cmd.arg("-py").arg(&file);
        self.flink_env_async(&mut cmd);
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        let output = tokio::time::timeout(SUBMIT_TIMEOUT, cmd.output())
            .await
            .map_err(|_| FlinkError::Timeout {
                what: "flink run".into(),
                after: SUBMIT_TIMEOUT,
            })?
            .map_err(|e| FlinkError::io("running bin/flink", e))?;
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        match parse_job_id(&text) {
            Some(id) if output.status.success() => Ok(id),
            _ => Err(FlinkError::Submit(submit_failure(&text))),
        }
    }

    /// The last lines of the JobManager's log (for error reports).
    pub fn jobmanager_log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(self.dir.path().join("log/jobmanager.out")).unwrap_or_default();
        tail(&text, lines)
    }

    fn flink_env(&self, cmd: &mut Command) {
        let d = self.dir.path();
        cmd.env("FLINK_CONF_DIR", d.join("conf"))
            .env("FLINK_LOG_DIR", d.join("log"))
            .env("FLINK_PID_DIR", d.join("pids"))
            .env("PYFLINK_CLIENT_EXECUTABLE", &self.home.python);
    }

    fn flink_env_async(&self, cmd: &mut tokio::process::Command) {
        let d = self.dir.path();
        cmd.env("FLINK_CONF_DIR", d.join("conf"))
            .env("FLINK_LOG_DIR", d.join("log"))
            .env("FLINK_PID_DIR", d.join("pids"))
            .env("PYFLINK_CLIENT_EXECUTABLE", &self.home.python);
    }

    /// Starts `bin/<script> start-foreground <args>`, on `core` alone when given.
    fn spawn(
        &self,
        script: &str,
        log: &str,
        args: &[String],
        core: Option<u32>,
    ) -> Result<Child, FlinkError> {
        let out = fs::File::create(self.dir.path().join(format!("log/{log}.out")))
            .map_err(|e| FlinkError::io("creating a log file", e))?;
        let err = out
            .try_clone()
            .map_err(|e| FlinkError::io("creating a log file", e))?;
        let script = self.home.dir.join("bin").join(script);
        let mut cmd = match core {
            // `taskset` execs `nice`, which execs the script, which execs the JVM: the
            // affinity, the priority and the pid that is stopped later carry over.
            // NB: `nice` runs the script at the normal priority (with a warning in the log)
            // where raising it is not allowed.
            Some(core) => {
                let mut c = Command::new("taskset");
                c.arg("-c")
                    .arg(core.to_string())
                    .arg("nice")
                    .arg("-n")
                    .arg(TASKMANAGER_NICE.to_string())
                    .arg(&script);
                c
            }
            None => Command::new(&script),
        };
        cmd.arg("start-foreground").args(args);
        self.flink_env(&mut cmd);
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        cmd.spawn()
            .map_err(|e| FlinkError::io("starting a Flink process", e))
    }

    /// Starts TaskManagers `first..first + count` (the index names the log and picks the core).
    fn start_taskmanagers(&mut self, first: u32, count: u32, slots: u32) -> Result<(), FlinkError> {
        for i in first..first + count {
            let core = (!self.cores.is_empty()).then(|| self.cores[i as usize % self.cores.len()]);
            let tm = self.spawn(
                "taskmanager.sh",
                &format!("taskmanager-{i}"),
                &[format!("-Dtaskmanager.numberOfTaskSlots={slots}")],
                core,
            )?;
            self.taskmanagers.push(tm);
        }
        Ok(())
    }

    /// Waits until the REST API lists exactly `count` TaskManagers (with `count * slots`
    /// slots), failing early when a JVM exits.
    async fn wait_for_slots(&mut self, count: u32, slots: u32) -> Result<(), FlinkError> {
        let deadline = Instant::now() + self.config.startup_timeout;
        loop {
            self.check_alive()?;
            if let Ok(o) = self.rest.overview().await
                && o.taskmanagers == count
                && o.slots_total == count * slots
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(FlinkError::Timeout {
                    what: format!("{count} TaskManager(s) of {slots} slots to register"),
                    after: self.config.startup_timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn check_alive(&mut self) -> Result<(), FlinkError> {
        let log_tail = self.jobmanager_log_tail(20);
        let dead = |c: &mut Child| matches!(c.try_wait(), Ok(Some(_)));
        if self.jobmanager.as_mut().is_some_and(dead) || self.taskmanagers.iter_mut().any(dead) {
            return Err(FlinkError::ProcessExited(log_tail));
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for tm in std::mem::take(&mut self.taskmanagers) {
            stop_child(tm);
        }
        if let Some(jm) = self.jobmanager.take() {
            stop_child(jm);
        }
    }
}

/// SIGTERM (the JVM's shutdown hooks run), then SIGKILL after [`STOP_GRACE`].
fn stop_child(mut child: Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    // NB: std offers only SIGKILL; `kill -TERM` lets the JVM shut down cleanly.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The cores this process may run on (`Cpus_allowed_list` of `/proc/self/status`), when
/// `taskset` can pin a process to one of them; empty otherwise (then nothing is pinned).
fn pinnable_cores() -> Vec<u32> {
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return Vec::new();
    };
    let cores = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|list| parse_cpu_list(list.trim()))
        .unwrap_or_default();
    let Some(first) = cores.first() else {
        return Vec::new();
    };
    let works = Command::new("taskset")
        .arg("-c")
        .arg(first.to_string())
        .arg("true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works { cores } else { Vec::new() }
}

/// `0-3,6,8-9` → `[0, 1, 2, 3, 6, 8, 9]`; anything unparsable → empty.
fn parse_cpu_list(list: &str) -> Vec<u32> {
    let mut cores = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let range = match part.split_once('-') {
            Some((a, b)) => a.parse::<u32>().ok().zip(b.parse::<u32>().ok()),
            None => part.parse::<u32>().ok().map(|c| (c, c)),
        };
        match range {
            Some((a, b)) if a <= b && b - a < 4096 => cores.extend(a..=b),
            _ => return Vec::new(),
        }
    }
    cores
}

/// A port free on 127.0.0.1 now (the OS picks it; the listener is closed at once).
fn free_port() -> Result<u16, FlinkError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| FlinkError::io("choosing a free port", e))
}

/// The reason in the output of a failed `flink run`: the innermost `Caused by:` of the
/// JobManager's exception (the Python driver's own wrapper exceptions say nothing), else
/// the output's last lines.
fn submit_failure(output: &str) -> String {
    output
        .lines()
        .rev()
        .filter_map(|l| l.trim().strip_prefix("Caused by: "))
        .find(|l| !l.contains("Python process exits") && !l.contains("py4j."))
        .map(str::to_string)
        .unwrap_or_else(|| tail(output, 30))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Copies the distribution's `conf/` into `<dir>/conf` and sets loopback addresses, ports,
/// RocksDB, checkpoint and savepoint directories, slots and memory in its `config.yaml`.
fn write_conf(
    source: &Path,
    dir: &Path,
    config: &ClusterConfig,
    rest_port: u16,
    rpc_port: u16,
) -> Result<(), FlinkError> {
    let conf = dir.join("conf");
    for entry in fs::read_dir(source).map_err(|e| FlinkError::io("reading conf/", e))? {
        let entry = entry.map_err(|e| FlinkError::io("reading conf/", e))?;
        if entry.path().is_file() {
            fs::copy(entry.path(), conf.join(entry.file_name()))
                .map_err(|e| FlinkError::io("copying conf/", e))?;
        }
    }
    let path = conf.join("config.yaml");
    let text = fs::read_to_string(&path).map_err(|e| FlinkError::io("reading config.yaml", e))?;
    let mut yaml: Value = serde_yaml::from_str(&text).map_err(|e| FlinkError::Config(e.to_string()))?;
    let uri = |d: &str| format!("file://{}", dir.join(d).display());
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let settings: Vec<(&str, String)> = vec![
        ("jobmanager.rpc.address", "127.0.0.1".into()),
        ("jobmanager.rpc.port", rpc_port.to_string()),
        ("jobmanager.bind-host", "127.0.0.1".into()),
        ("jobmanager.memory.process.size", config.jobmanager_memory.clone()),
        ("rest.address", "127.0.0.1".into()),
        ("rest.bind-address", "127.0.0.1".into()),
        ("rest.port", rest_port.to_string()),
        ("blob.server.port", "0".into()),
        ("taskmanager.host", "127.0.0.1".into()),
        ("taskmanager.bind-host", "127.0.0.1".into()),
        ("taskmanager.rpc.port", "0".into()),
        ("taskmanager.data.port", "0".into()),
        (
            "taskmanager.numberOfTaskSlots",
            config.slots_per_taskmanager.to_string(),
        ),
        (
            "taskmanager.memory.process.size",
            config.taskmanager_memory.clone(),
        ),
        // Larger network buffers hold more data in flight for barriers to wait behind:
        // back-pressure then shows up in checkpoint durations, as on a loaded KPU.
        ("taskmanager.memory.segment-size", "1mb".into()),
        ("metrics.internal.query-service.port", "0".into()),
        ("state.backend.type", "rocksdb".into()),
        ("execution.checkpointing.dir", uri("checkpoints")),
        ("execution.checkpointing.savepoint-dir", uri("savepoints")),
        ("execution.checkpointing.interval", ms(config.checkpoint_interval)),
        ("execution.checkpointing.timeout", ms(config.checkpoint_timeout)),
        // A failing job ends up FAILED quickly instead of restarting forever.
        ("restart-strategy.type", "fixed-delay".into()),
        ("restart-strategy.fixed-delay.attempts", "2".into()),
        ("restart-strategy.fixed-delay.delay", "2s".into()),
        // A TaskManager started before the JobManager is up retries after 1 s, not 10 s.
        ("cluster.registration.error-delay", "1000".into()),
        ("io.tmp.dirs", dir.join("tmp").display().to_string()),
        ("web.tmpdir", dir.join("tmp").display().to_string()),
    ];
    for (key, value) in settings {
        set_key(&mut yaml, key, value)?;
    }
    let text = serde_yaml::to_string(&yaml).map_err(|e| FlinkError::Config(e.to_string()))?;
    fs::write(&path, text).map_err(|e| FlinkError::io("writing config.yaml", e))
}

/// Sets a dotted Flink key in the nested YAML layout `config.yaml` uses; a flat key of the
/// same name at any level is removed so that only one value remains.
fn set_key(root: &mut Value, key: &str, value: String) -> Result<(), FlinkError> {
    let parts: Vec<&str> = key.split('.').collect();
    let mut node = root;
    for (i, part) in parts.iter().enumerate() {
        let map = match node {
            Value::Mapping(m) => m,
            Value::Null => {
                *node = Value::Mapping(Mapping::new());
                match node {
                    Value::Mapping(m) => m,
                    _ => unreachable!("just assigned a mapping"),
                }
            }
            _ => {
                return Err(FlinkError::Config(format!(
                    "config.yaml: cannot set {key}: {} is not a mapping",
                    parts[..i].join(".")
                )));
            }
        };
        map.remove(Value::String(parts[i..].join(".")));
        if i + 1 == parts.len() {
            map.insert(Value::String((*part).to_string()), Value::String(value));
            return Ok(());
        }
        node = map
            .entry(Value::String((*part).to_string()))
            .or_insert(Value::Mapping(Mapping::new()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submit_failure_names_the_jobmanagers_reason() {
        let out = "Traceback (most recent call last):\n\
                   Caused by: org.apache.flink.runtime.client.JobInitializationException: Could not start the JobMaster.\n\
                   Caused by: java.lang.IllegalArgumentException: max parallelism 2 < parallelism 3\n\
                   \tat org.apache.flink.X\n\
                   org.apache.flink.client.program.ProgramAbortException: boom\n\
                   Caused by: java.lang.RuntimeException: Python process exits with code: 1\n";
        assert_eq!(
            submit_failure(out),
            "java.lang.IllegalArgumentException: max parallelism 2 < parallelism 3"
        );
        assert_eq!(submit_failure("a\nb\nc"), "a\nb\nc");
    }

    #[test]
    fn cpu_lists_parse_as_the_kernel_writes_them() {
        assert_eq!(parse_cpu_list("0-1"), vec![0, 1]);
        assert_eq!(parse_cpu_list("0-2,6,8-9"), vec![0, 1, 2, 6, 8, 9]);
        assert_eq!(parse_cpu_list("3"), vec![3]);
        assert!(parse_cpu_list("2-1").is_empty());
        assert!(parse_cpu_list("x").is_empty());
        assert!(parse_cpu_list("").is_empty());
    }

    #[test]
    fn set_key_nests_and_replaces_flat_duplicates() {
        let mut v: Value = serde_yaml::from_str(
            "jobmanager:\n  rpc:\n    address: localhost\n    port: 6123\nrest.port: 8081\n",
        )
        .unwrap();
        set_key(&mut v, "jobmanager.rpc.port", "4000".into()).unwrap();
        set_key(&mut v, "rest.port", "5000".into()).unwrap();
        set_key(&mut v, "state.backend.type", "rocksdb".into()).unwrap();
        assert_eq!(v["jobmanager"]["rpc"]["port"], Value::String("4000".into()));
        assert_eq!(
            v["jobmanager"]["rpc"]["address"],
            Value::String("localhost".into())
        );
        assert_eq!(v["rest"]["port"], Value::String("5000".into()));
        assert!(v.get("rest.port").is_none());
        assert_eq!(v["state"]["backend"]["type"], Value::String("rocksdb".into()));
        let mut scalar: Value = serde_yaml::from_str("rest: 1\n").unwrap();
        assert!(set_key(&mut scalar, "rest.port", "1".into()).is_err());
    }

    #[test]
    fn conf_binds_everything_to_loopback() {
        let src = tempfile::tempdir().unwrap();
        fs::write(
            src.path().join("config.yaml"),
            "jobmanager:\n  bind-host: localhost\nrest:\n  address: localhost\n",
        )
        .unwrap();
        fs::write(src.path().join("log4j.properties"), "x=1\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("conf")).unwrap();
        write_conf(src.path(), dir.path(), &ClusterConfig::default(), 1234, 5678).unwrap();
        let v: Value =
            serde_yaml::from_str(&fs::read_to_string(dir.path().join("conf/config.yaml")).unwrap()).unwrap();
        assert_eq!(v["jobmanager"]["bind-host"], Value::String("127.0.0.1".into()));
        assert_eq!(v["rest"]["bind-address"], Value::String("127.0.0.1".into()));
        assert_eq!(v["rest"]["port"], Value::String("1234".into()));
        assert_eq!(v["jobmanager"]["rpc"]["port"], Value::String("5678".into()));
        assert_eq!(v["taskmanager"]["bind-host"], Value::String("127.0.0.1".into()));
        assert_eq!(v["state"]["backend"]["type"], Value::String("rocksdb".into()));
        assert_eq!(
            v["taskmanager"]["memory"]["segment-size"],
            Value::String("1mb".into())
        );
        assert!(dir.path().join("conf/log4j.properties").exists());
    }
}
