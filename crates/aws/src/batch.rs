//! The metric batcher: concurrent [`MetricsSource::samples`] calls from many reconciles are
//! merged into as few `GetMetricData` calls as CloudWatch allows.
//!
//! Every request becomes the queries of its [`SignalPlan`] ([`METRICS`]`.len()` at the
//! application level; a query more per task or source stream found). A background task appends them to an
//! open call per (target, period) and sends the call as soon as it is full — 500 queries,
//! or fewer when the union of the time ranges would pass 100,800 datapoints — or, when it
//! does not fill up, `max_wait` after its first query. A burst of N requests therefore
//! costs `ceil(total queries / 500)` calls, the floor, plus at most one partial call per (target,
//! period); a steady stream costs the floor as long as it fills a call within `max_wait`
//! (5,000 budgets a minute fill one every half second). A request's queries may straddle
//! two calls; it is answered when the last of them returns.
//!
//! One call has one time range, so requests with different windows or ends share a call
//! over the union of their ranges (CloudWatch bills per metric requested, not per
//! datapoint), and each request keeps only the datapoints of its own range: the batched
//! answer is exactly the direct one.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use jiff::Timestamp;
use tokio::{
    sync::{Semaphore, mpsc, oneshot},
    time::Instant,
};
use tracing::debug;

use super::{
    ApplicationDescription, AwsClients, AwsError, CallStats, MetricsSource, Target,
    cloudwatch::{
        MAX_DATAPOINTS_PER_CALL, MAX_QUERIES_PER_CALL, METRICS, MetricDataApi, MetricDataCall, Query,
        SampleRequest, assemble, fetch_all,
    },
    history::{self, HourlyCache},
    signals::{Discovery, ListMetricsApi, SeriesSpec, SignalPlan},
};
use crate::policy::{HourlyRate, Sample};

/// How the batcher trades latency for fewer calls.
#[derive(Clone, Debug)]
pub struct BatchConfig {
    /// How long a call that is not full waits for more queries (from its first one) before
    /// it goes anyway; full calls go at once. This bounds the latency batching adds to a
    /// `samples()` call, and decides how well spread-out requests are packed: a call fills
    /// when `500 / 12` requests arrive within `max_wait`.
    pub max_wait: Duration,
    /// Send the calls that are not full once no request has arrived for this long: a lone
    /// request (a small fleet, the demo) waits this, not `max_wait`. NB: a stream sparser
    /// than one request per `idle` is then not batched; the controller's reconciles come
    /// in clusters (budgets requeue together), much denser than that. `None`: wait
    /// `max_wait` always.
    pub idle: Option<Duration>,
    /// Most queries per call (CloudWatch's limit is 500).
    pub max_queries_per_call: usize,
    /// Most `GetMetricData` calls in flight at once (CloudWatch allows 50 per second per
    /// account, shared with anything else using it).
    pub max_concurrent_calls: usize,
    /// Requests that may wait in the queue before `samples()` callers wait to enqueue.
    pub queue_capacity: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_wait: Duration::from_secs(1),
            idle: Some(Duration::from_millis(50)),
            max_queries_per_call: MAX_QUERIES_PER_CALL,
            max_concurrent_calls: 8,
            queue_capacity: 16_384,
        }
    }
}

/// The batching [`MetricsSource`]. Cloning shares the batcher; the background task stops
/// when the last clone is dropped.
#[derive(Clone)]
pub struct BatchedMetrics {
    tx: mpsc::Sender<Pending>,
    stats: Arc<CallStats>,
    /// `ListMetrics`, for [`MetricsSource::plan`] (`None`: plans read every metric with the
    /// `Application` dimension alone).
    lister: Option<Arc<dyn ListMetricsApi>>,
    discovery: Discovery,
    /// Each application's input history, read once per hour (see `history`).
    history: Arc<HourlyCache>,
}

impl std::fmt::Debug for BatchedMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchedMetrics").finish_non_exhaustive()
    }
}

impl BatchedMetrics {
    /// Starts the batcher on the current tokio runtime, calling CloudWatch through
    /// `clients`.
    pub fn spawn(clients: Arc<AwsClients>, config: BatchConfig) -> Self {
        let stats = clients.stats().clone();
        let mut metrics = Self::spawn_with(clients.clone(), stats, config);
        metrics.lister = Some(clients);
        metrics
    }

    pub fn spawn_with(api: Arc<dyn MetricDataApi>, stats: Arc<CallStats>, config: BatchConfig) -> Self {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let batcher = Batcher {
            api,
            stats: stats.clone(),
            max_queries: config.max_queries_per_call.clamp(1, MAX_QUERIES_PER_CALL),
            max_wait: config.max_wait,
            idle: config.idle,
            last_arrival: Instant::now(),
            permits: Arc::new(Semaphore::new(config.max_concurrent_calls.max(1))),
            open: HashMap::new(),
        };
        tokio::spawn(batcher.run(rx));
        Self {
            tx,
            stats,
            lister: None,
            discovery: Discovery::default(),
            history: Arc::default(),
        }
    }
}

#[async_trait]
impl MetricsSource for BatchedMetrics {
    async fn samples(
        &self,
        target: &Target,
        application: &str,
        window: Duration,
        period: Duration,
        end: Timestamp,
    ) -> Result<Vec<Sample>, AwsError> {
        let plan = SignalPlan::application_dimension_only(application);
        self.samples_for(target, &plan, window, period, end).await
    }

    async fn plan(&self, target: &Target, description: &ApplicationDescription) -> SignalPlan {
        match &self.lister {
            Some(lister) => self.discovery.plan(lister.as_ref(), target, description).await,
            None => SignalPlan::application_dimension_only(&description.name),
        }
    }

    async fn samples_for(
        &self,
        target: &Target,
        plan: &SignalPlan,
        window: Duration,
        period: Duration,
        end: Timestamp,
    ) -> Result<Vec<Sample>, AwsError> {
        self.stats.record_sample_request();
        let request = SampleRequest::new(&plan.application, window, period, end)?;
        self.enqueue(target, request, plan.series.clone()).await
    }

    async fn hourly_input(
        &self,
        target: &Target,
        plan: &SignalPlan,
        now: Timestamp,
    ) -> Result<Vec<HourlyRate>, AwsError> {
        if let Some(cached) = self.history.get(target, &plan.application, now) {
            return Ok(cached);
        }
        let input = history::input_plan(plan);
        if input.series.is_empty() {
            return Ok(Vec::new());
        }
        self.stats.record_sample_request();
        let request = history::request(&plan.application, now);
        let (averages, busiest) = tokio::try_join!(
            self.enqueue(target, request.clone(), input.series),
            self.enqueue(target, request, history::busiest_plan(plan).series),
        )?;
        let rates = history::hourly(&averages, &busiest);
        self.history.put(target, &plan.application, now, rates.clone());
        Ok(rates)
    }
}

impl BatchedMetrics {
    /// Queues `request` for the series `series` and waits for its samples.
    async fn enqueue(
        &self,
        target: &Target,
        request: SampleRequest,
        series: Vec<SeriesSpec>,
    ) -> Result<Vec<Sample>, AwsError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || AwsError::Other("GetMetricData: the metric batcher has stopped".into());
        self.tx
            .send(Pending {
                target: target.clone(),
                request,
                series,
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// A request waiting in the queue.
struct Pending {
    target: Target,
    request: SampleRequest,
    /// The series to read (the plan's).
    series: Vec<SeriesSpec>,
    reply: oneshot::Sender<Result<Vec<Sample>, AwsError>>,
}

/// A request being answered, shared by the calls that carry its queries.
struct InFlight {
    request: SampleRequest,
    state: Mutex<Progress>,
}

struct Progress {
    /// Queries not yet handed to a call.
    unsent: usize,
    /// Calls carrying some of its queries that have not returned.
    calls: usize,
    /// Datapoints per metric (indexed like [`METRICS`]).
    series: Vec<Option<Vec<(i64, f64)>>>,
    error: Option<AwsError>,
    reply: Option<oneshot::Sender<Result<Vec<Sample>, AwsError>>>,
}

impl InFlight {
    /// Answers the request if nothing of it is outstanding any more.
    fn finish_if_done(&self, progress: &mut Progress) {
        if progress.unsent > 0 || progress.calls > 0 {
            return;
        }
        let Some(reply) = progress.reply.take() else {
            return;
        };
        let result = match progress.error.take() {
            Some(err) => Err(err),
            None => {
                let series: Vec<Option<&[(i64, f64)]>> =
                    progress.series.iter().map(|s| s.as_deref()).collect();
                Ok(assemble(&self.request, &series))
            }
        };
        // NB: the caller may have given up (its reconcile was cancelled); nothing to do then.
        let _ = reply.send(result);
    }
}

/// A call being filled.
struct OpenCall {
    /// When it goes out even if not full: `max_wait` after its first query.
    deadline: Instant,
    start: i64,
    end: i64,
    period: i64,
    queries: Vec<(Query, Arc<InFlight>)>,
}

impl OpenCall {
    fn new(period: i64, deadline: Instant) -> Self {
        Self {
            deadline,
            start: i64::MAX,
            end: i64::MIN,
            period,
            queries: Vec::new(),
        }
    }

    /// Whether one more query over `[start, end)` still fits the call's limits.
    fn fits(&self, start: i64, end: i64, max_queries: usize) -> bool {
        if self.queries.is_empty() {
            return true;
        }
        let periods = ((self.end.max(end) - self.start.min(start)) / self.period).max(1) as usize;
        self.queries.len() < max_queries && (self.queries.len() + 1) * periods <= MAX_DATAPOINTS_PER_CALL
    }
}

struct Batcher {
    api: Arc<dyn MetricDataApi>,
    stats: Arc<CallStats>,
    max_queries: usize,
    max_wait: Duration,
    idle: Option<Duration>,
    /// When the last request arrived.
    last_arrival: Instant,
    permits: Arc<Semaphore>,
    open: HashMap<(Target, i64), OpenCall>,
}

impl Batcher {
    async fn run(mut self, mut rx: mpsc::Receiver<Pending>) {
        loop {
            let quiet_at = self.idle.map(|idle| self.last_arrival + idle);
            let next_deadline = self
                .open
                .values()
                .map(|call| quiet_at.map_or(call.deadline, |q| q.min(call.deadline)))
                .min();
            tokio::select! {
                biased;
                next = rx.recv() => match next {
                    Some(pending) => {
                        self.last_arrival = Instant::now();
                        self.add(pending);
                        // NB: under a flood `recv` always wins the biased select; calls past
                        // their deadline still go.
                        self.send_expired(None);
                    }
                    None => {
                        // Every handle is gone: send what is open and stop.
                        let open: Vec<_> = self.open.drain().collect();
                        for ((target, _), call) in open {
                            self.send(target, call);
                        }
                        return;
                    }
                },
                _ = sleep_until_some(next_deadline) => self.send_expired(quiet_at),
            }
        }
    }

    /// Sends the open calls whose wait ran out, or all of them once `quiet_at` has passed.
    fn send_expired(&mut self, quiet_at: Option<Instant>) {
        let now = Instant::now();
        let quiet = quiet_at.is_some_and(|q| q <= now);
        let expired: Vec<_> = self
            .open
            .iter()
            .filter(|(_, call)| quiet || call.deadline <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in expired {
            if let Some(call) = self.open.remove(&key) {
                self.stats.record_partial_batch();
                self.send(key.0, call);
            }
        }
    }

    /// Appends a request's queries to the open call of its (target, period), sending the
    /// call whenever it is full.
    fn add(&mut self, pending: Pending) {
        let Pending {
            target,
            request,
            series,
            reply,
        } = pending;
        let key = (target, request.period);
        let start = request.fetch_start();
        let end = request.end;
        let in_flight = Arc::new(InFlight {
            request,
            state: Mutex::new(Progress {
                unsent: series.len(),
                calls: 0,
                series: vec![None; METRICS.len()],
                error: None,
                reply: Some(reply),
            }),
        });
        if series.is_empty() {
            let mut progress = lock(&in_flight.state);
            in_flight.finish_if_done(&mut progress);
            return;
        }
        for spec in &series {
            let full = self
                .open
                .get(&key)
                .is_some_and(|call| !call.fits(start, end, self.max_queries));
            if full && let Some(call) = self.open.remove(&key) {
                self.send(key.0.clone(), call);
            }
            let deadline = Instant::now() + self.max_wait;
            let call = self
                .open
                .entry(key.clone())
                .or_insert_with(|| OpenCall::new(key.1, deadline));
            call.start = call.start.min(start);
            call.end = call.end.max(end);
            let query = Query::of(
                format!("q{}", call.queries.len()),
                &in_flight.request.application,
                spec,
            );
            call.queries.push((query, in_flight.clone()));
            // A call that has just reached the per-request limit goes now: waiting for the
            // next arrival (or a deadline) would only delay the burst's last full call.
            if call.queries.len() >= self.max_queries
                && let Some(call) = self.open.remove(&key)
            {
                self.send(key.0.clone(), call);
            }
        }
    }

    /// Hands `call` to a task that sends it and fans the answer out.
    fn send(&self, target: Target, call: OpenCall) {
        if call.queries.is_empty() {
            return;
        }
        // Account for the call in each of its requests before it can return.
        let mut owners: Vec<Arc<InFlight>> = Vec::new();
        for (_, owner) in &call.queries {
            let mut progress = lock(&owner.state);
            progress.unsent -= 1;
            if !owners.iter().any(|o| Arc::ptr_eq(o, owner)) {
                progress.calls += 1;
                owners.push(owner.clone());
            }
        }
        let api = self.api.clone();
        let permits = self.permits.clone();
        tokio::spawn(async move {
            let (queries, owners_of): (Vec<Query>, Vec<Arc<InFlight>>) = call.queries.into_iter().unzip();
            let request = MetricDataCall {
                start: call.start,
                end: call.end,
                period: call.period,
                queries,
            };
            let answer = match permits.acquire_owned().await {
                Ok(_permit) => fetch_all(api.as_ref(), &target, &request).await,
                Err(_) => Err(AwsError::Other(
                    "GetMetricData: the metric batcher has stopped".into(),
                )),
            };
            debug!(
                queries = request.queries.len(),
                ok = answer.is_ok(),
                "GetMetricData batch returned"
            );
            match &answer {
                Ok(series) => {
                    for (query, owner) in request.queries.iter().zip(&owners_of) {
                        let Some(found) = series.get(&query.id) else {
                            continue;
                        };
                        let mut progress = lock(&owner.state);
                        if let Some(err) = &found.error {
                            progress.error.get_or_insert_with(|| err.clone());
                            continue;
                        }
                        let (from, to) = (owner.request.fetch_start(), owner.request.end);
                        let points = progress.series[query.metric].get_or_insert_with(Vec::new);
                        points.extend(found.points.iter().filter(|(t, _)| (from..to).contains(t)));
                    }
                }
                Err(err) => {
                    for owner in &owners {
                        lock(&owner.state).error.get_or_insert_with(|| err.clone());
                    }
                }
            }
            for owner in &owners {
                let mut progress = lock(&owner.state);
                progress.calls -= 1;
                owner.finish_if_done(&mut progress);
            }
        });
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn lock(state: &Mutex<Progress>) -> std::sync::MutexGuard<'_, Progress> {
    // NB: nothing panics while holding the lock; recover the data rather than propagate.
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AwsOperation, cloudwatch::Page, cloudwatch::Series};

    /// A CloudWatch stand-in: every query of application `app-N` and metric `m` has the
    /// value `N * 100 + m + t / 60 % 7` at every period, except the running counts, which
    /// grow by `m` a period. Records each page's queries and range.
    #[derive(Default)]
    struct Fake {
        pages: Mutex<Vec<(Target, MetricDataCall)>>,
        fail_app: Option<String>,
        per_page: Option<usize>,
    }

    fn value(app: &str, metric: usize, t: i64) -> f64 {
        let n: f64 = app.trim_start_matches("app-").parse().unwrap();
        if METRICS[metric].running_count {
            (t / 60) as f64 * metric as f64
        } else {
            n * 100.0 + metric as f64 + ((t / 60) % 7) as f64
        }
    }

    #[async_trait]
    impl MetricDataApi for Fake {
        async fn get_metric_data_page(
            &self,
            target: &Target,
            call: &MetricDataCall,
            next_token: Option<&str>,
        ) -> Result<Page, AwsError> {
            self.pages.lock().unwrap().push((target.clone(), call.clone()));
            if let Some(bad) = &self.fail_app
                && call.queries.iter().any(|q| &q.application == bad)
            {
                return Err(AwsError::Throttled(
                    "GetMetricData: Throttling: Rate exceeded".into(),
                ));
            }
            let mut all: Vec<Series> = call
                .queries
                .iter()
                .map(|q| Series {
                    id: q.id.clone(),
                    points: (call.start..call.end)
                        .step_by(call.period as usize)
                        .map(|t| (t, value(&q.application, q.metric, t)))
                        .collect(),
                    error: None,
                })
                .collect();
            let Some(per_page) = self.per_page else {
                return Ok(Page {
                    series: all,
                    next_token: None,
                });
            };
            let from: usize = next_token.map(|t| t.parse().unwrap()).unwrap_or(0);
            let rest = all.split_off(from.min(all.len()));
            let page: Vec<Series> = rest.into_iter().take(per_page).collect();
            let next = from + page.len();
            Ok(Page {
                series: page,
                next_token: (next < call.queries.len()).then(|| next.to_string()),
            })
        }
    }

    const END: i64 = 1_700_000_040 + 3600;

    fn end() -> Timestamp {
        Timestamp::from_second(END).unwrap()
    }

    async fn burst(
        metrics: &BatchedMetrics,
        requests: Vec<(Target, String, Duration, Timestamp)>,
    ) -> Vec<Result<Vec<Sample>, AwsError>> {
        let tasks: Vec<_> = requests
            .into_iter()
            .map(|(target, app, window, end)| {
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    metrics
                        .samples(&target, &app, window, Duration::from_secs(60), end)
                        .await
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    fn expected(app: &str, window: Duration, end: Timestamp) -> Vec<Sample> {
        let request = SampleRequest::new(app, window, Duration::from_secs(60), end).unwrap();
        let points: Vec<Vec<(i64, f64)>> = (0..METRICS.len())
            .map(|m| {
                (request.fetch_start()..request.end)
                    .step_by(60)
                    .map(|t| (t, value(app, m, t)))
                    .collect()
            })
            .collect();
        let series: Vec<Option<&[(i64, f64)]>> = points.iter().map(|p| Some(p.as_slice())).collect();
        assemble(&request, &series)
    }

    fn spawn(fake: &Arc<Fake>, config: BatchConfig) -> (BatchedMetrics, Arc<CallStats>) {
        let stats = Arc::new(CallStats::new());
        let counting: Arc<dyn MetricDataApi> = Arc::new(Counting {
            inner: fake.clone(),
            stats: stats.clone(),
        });
        (BatchedMetrics::spawn_with(counting, stats.clone(), config), stats)
    }

    /// Counts pages in `CallStats` like the SDK implementation does.
    struct Counting {
        inner: Arc<Fake>,
        stats: Arc<CallStats>,
    }

    #[async_trait]
    impl MetricDataApi for Counting {
        async fn get_metric_data_page(
            &self,
            target: &Target,
            call: &MetricDataCall,
            next_token: Option<&str>,
        ) -> Result<Page, AwsError> {
            self.stats.record_call(AwsOperation::GetMetricData);
            self.stats.record_metrics_requested(call.queries.len() as u64);
            self.inner.get_metric_data_page(target, call, next_token).await
        }
    }

    fn config() -> BatchConfig {
        BatchConfig {
            // Virtual time (start_paused): calls go once every task is waiting.
            max_wait: Duration::from_millis(50),
            idle: None,
            ..BatchConfig::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_costs_the_floor_of_calls_and_fans_out_exactly() {
        for budgets in [1usize, 41, 42, 100, 250] {
            let fake = Arc::new(Fake::default());
            let (metrics, stats) = spawn(&fake, config());
            let target = Target::new("eu-west-1");
            let window = Duration::from_secs(600);
            let requests = (0..budgets)
                .map(|i| (target.clone(), format!("app-{i}"), window, end()))
                .collect();
            let results = burst(&metrics, requests).await;
            let queries = budgets * METRICS.len();
            let floor = queries.div_ceil(MAX_QUERIES_PER_CALL);
            let pages = fake.pages.lock().unwrap().clone();
            assert_eq!(pages.len(), floor, "{budgets} budgets");
            assert!(pages.iter().all(|(_, c)| c.queries.len() <= MAX_QUERIES_PER_CALL));
            assert_eq!(pages.iter().map(|(_, c)| c.queries.len()).sum::<usize>(), queries);
            for (_, call) in &pages {
                let ids: std::collections::HashSet<_> = call.queries.iter().map(|q| &q.id).collect();
                assert_eq!(ids.len(), call.queries.len(), "ids unique within a call");
            }
            for (i, result) in results.into_iter().enumerate() {
                let samples = result.unwrap();
                assert_eq!(samples, expected(&format!("app-{i}"), window, end()), "app-{i}");
                assert_eq!(samples.len(), 10);
            }
            let snap = stats.snapshot();
            assert_eq!(snap.calls_of(AwsOperation::GetMetricData), floor as u64);
            assert_eq!(snap.metrics_requested, queries as u64);
            assert_eq!(snap.sample_requests, budgets as u64);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn different_windows_and_ends_share_calls_and_keep_their_own_ranges() {
        let fake = Arc::new(Fake::default());
        let (metrics, _) = spawn(&fake, config());
        let target = Target::new("eu-west-1");
        let cases: Vec<(String, Duration, Timestamp)> = (0..30)
            .map(|i| {
                let window = Duration::from_secs(60 * (5 + (i % 4) * 5));
                let end = Timestamp::from_second(END + (i as i64 % 3) * 60 + 13).unwrap();
                (format!("app-{i}"), window, end)
            })
            .collect();
        let requests = cases
            .iter()
            .map(|(app, window, end)| (target.clone(), app.clone(), *window, *end))
            .collect();
        let results = burst(&metrics, requests).await;
        assert_eq!(
            fake.pages.lock().unwrap().len(),
            (30 * METRICS.len()).div_ceil(500)
        );
        for ((app, window, end), result) in cases.iter().zip(results) {
            assert_eq!(result.unwrap(), expected(app, *window, *end), "{app}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn targets_are_never_mixed_in_one_call() {
        let fake = Arc::new(Fake::default());
        let (metrics, _) = spawn(&fake, config());
        let a = Target::new("eu-west-1");
        let b = Target::with_role("eu-west-1", "arn:aws:iam::111122223333:role/other");
        let requests = (0..20usize)
            .map(|i| {
                let target = if i.is_multiple_of(2) { a.clone() } else { b.clone() };
                (target, format!("app-{i}"), Duration::from_secs(600), end())
            })
            .collect();
        let results = burst(&metrics, requests).await;
        assert!(results.iter().all(Result::is_ok));
        let pages = fake.pages.lock().unwrap().clone();
        assert_eq!(pages.len(), 2);
        for (target, call) in pages {
            for q in call.queries {
                let i: usize = q.application.trim_start_matches("app-").parse().unwrap();
                assert_eq!(target == a, i.is_multiple_of(2));
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn long_windows_respect_the_datapoint_limit() {
        let fake = Arc::new(Fake::default());
        let (metrics, _) = spawn(&fake, config());
        let target = Target::new("eu-west-1");
        let day = Duration::from_secs(24 * 3600);
        let requests = (0..20)
            .map(|i| (target.clone(), format!("app-{i}"), day, end()))
            .collect();
        let results = burst(&metrics, requests).await;
        assert!(results.iter().all(Result::is_ok));
        let pages = fake.pages.lock().unwrap().clone();
        // 1441 periods (the window and one before): at most 69 queries per call.
        let per_call = MAX_DATAPOINTS_PER_CALL / 1441;
        assert!(
            pages
                .iter()
                .all(|(_, c)| c.max_datapoints() <= MAX_DATAPOINTS_PER_CALL)
        );
        assert_eq!(pages.len(), (20 * METRICS.len()).div_ceil(per_call));
    }

    #[tokio::test(start_paused = true)]
    async fn pages_are_followed_inside_a_batch() {
        let fake = Arc::new(Fake {
            per_page: Some(100),
            ..Fake::default()
        });
        let (metrics, stats) = spawn(&fake, config());
        let target = Target::new("eu-west-1");
        let requests = (0..50)
            .map(|i| {
                (
                    target.clone(),
                    format!("app-{i}"),
                    Duration::from_secs(600),
                    end(),
                )
            })
            .collect();
        let results = burst(&metrics, requests).await;
        for (i, result) in results.into_iter().enumerate() {
            assert_eq!(
                result.unwrap(),
                expected(&format!("app-{i}"), Duration::from_secs(600), end())
            );
        }
        // 600 queries: a call of 500 (5 pages) and one of 100 (1 page).
        assert_eq!(stats.snapshot().calls_of(AwsOperation::GetMetricData), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_call_fails_only_the_requests_it_carried() {
        let fake = Arc::new(Fake {
            fail_app: Some("app-0".into()),
            ..Fake::default()
        });
        let (metrics, _) = spawn(
            &fake,
            BatchConfig {
                max_queries_per_call: 24,
                ..config()
            },
        );
        let target = Target::new("eu-west-1");
        let requests = (0..4)
            .map(|i| {
                (
                    target.clone(),
                    format!("app-{i}"),
                    Duration::from_secs(600),
                    end(),
                )
            })
            .collect();
        let results = burst(&metrics, requests).await;
        // Calls of 24 queries: apps 0 and 1 share the failing call.
        assert_eq!(results[0].as_ref().unwrap_err().reason(), "Throttled");
        assert_eq!(results[1].as_ref().unwrap_err().reason(), "Throttled");
        assert!(results[2].is_ok());
        assert!(results[3].is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn requests_straddling_calls_are_answered_once_both_return() {
        let fake = Arc::new(Fake::default());
        let (metrics, _) = spawn(
            &fake,
            BatchConfig {
                max_queries_per_call: 7,
                ..config()
            },
        );
        let target = Target::new("eu-west-1");
        let requests = (0..5)
            .map(|i| {
                (
                    target.clone(),
                    format!("app-{i}"),
                    Duration::from_secs(600),
                    end(),
                )
            })
            .collect();
        let results = burst(&metrics, requests).await;
        assert_eq!(fake.pages.lock().unwrap().len(), (5 * 12usize).div_ceil(7));
        for (i, result) in results.into_iter().enumerate() {
            assert_eq!(
                result.unwrap(),
                expected(&format!("app-{i}"), Duration::from_secs(600), end())
            );
        }
    }

    /// Requests arriving one every `gap` (virtual time) for `n` requests: GetMetricData pages.
    async fn stream(n: usize, gap: Duration, max_wait: Duration, idle: Option<Duration>) -> usize {
        let fake = Arc::new(Fake::default());
        let (metrics, _) = spawn(
            &fake,
            BatchConfig {
                max_wait,
                idle,
                ..BatchConfig::default()
            },
        );
        let mut tasks = Vec::new();
        for i in 0..n {
            let metrics = metrics.clone();
            tasks.push(tokio::spawn(async move {
                metrics
                    .samples(
                        &Target::new("eu-west-1"),
                        &format!("app-{i}"),
                        Duration::from_secs(600),
                        Duration::from_secs(60),
                        end(),
                    )
                    .await
            }));
            tokio::time::sleep(gap).await;
        }
        for (i, t) in tasks.into_iter().enumerate() {
            let samples = t.await.unwrap().unwrap();
            assert_eq!(
                samples,
                expected(&format!("app-{i}"), Duration::from_secs(600), end())
            );
        }
        fake.pages.lock().unwrap().len()
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_stream_fills_calls_within_the_wait() {
        // 100 requests a second = 1,200 queries a second: a call fills in ~0.42 s.
        let floor = (200 * METRICS.len()).div_ceil(MAX_QUERIES_PER_CALL);
        let ms = Duration::from_millis;
        let defaults = BatchConfig::default();
        assert_eq!(stream(200, ms(10), defaults.max_wait, defaults.idle).await, floor);
        // A wait shorter than the fill time sends calls a quarter full.
        let short = stream(200, ms(10), ms(100), None).await;
        assert_eq!(short, 20, "one call per 100 ms of a 2 s stream");
        // A stream sparser than the idle time is not batched at all; without it, it is.
        assert_eq!(stream(20, ms(60), defaults.max_wait, defaults.idle).await, 20);
        assert_eq!(stream(20, ms(60), defaults.max_wait, None).await, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_request_waits_only_the_idle_time() {
        let fake = Arc::new(Fake::default());
        let (metrics, _) = spawn(&fake, BatchConfig::default());
        let started = Instant::now();
        metrics
            .samples(
                &Target::new("eu-west-1"),
                "app-1",
                Duration::from_secs(600),
                Duration::from_secs(60),
                end(),
            )
            .await
            .unwrap();
        assert_eq!(started.elapsed(), Duration::from_millis(50));
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_fills_up_goes_at_once() {
        let fake = Arc::new(Fake::default());
        // One request's queries fill a call exactly: it must not wait for `max_wait`.
        let config = BatchConfig {
            max_wait: Duration::from_secs(1),
            idle: None,
            max_queries_per_call: METRICS.len(),
            ..BatchConfig::default()
        };
        let (metrics, stats) = spawn(&fake, config);
        let started = Instant::now();
        metrics
            .samples(
                &Target::new("eu-west-1"),
                "app-1",
                Duration::from_secs(600),
                Duration::from_secs(60),
                end(),
            )
            .await
            .unwrap();
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(stats.snapshot().calls_of(AwsOperation::GetMetricData), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_does_not_fill_goes_after_the_wait() {
        let fake = Arc::new(Fake::default());
        let (metrics, stats) = spawn(&fake, config());
        let target = Target::new("eu-west-1");
        let first = metrics
            .samples(
                &target,
                "app-1",
                Duration::from_secs(600),
                Duration::from_secs(60),
                end(),
            )
            .await
            .unwrap();
        assert_eq!(first, expected("app-1", Duration::from_secs(600), end()));
        let second = metrics
            .samples(
                &target,
                "app-2",
                Duration::from_secs(600),
                Duration::from_secs(60),
                end(),
            )
            .await
            .unwrap();
        assert_eq!(second, expected("app-2", Duration::from_secs(600), end()));
        assert_eq!(fake.pages.lock().unwrap().len(), 2);
        assert_eq!(stats.snapshot().partial_batches, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn invalid_requests_fail_without_a_call() {
        let fake = Arc::new(Fake::default());
        let (metrics, _) = spawn(&fake, config());
        let err = metrics
            .samples(
                &Target::new("eu-west-1"),
                "app-1",
                Duration::ZERO,
                Duration::from_secs(60),
                end(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "InvalidArgument");
        assert!(fake.pages.lock().unwrap().is_empty());
    }

    /// Plans of different sizes (tasks and source streams found at the TASK level, the
    /// application level alone) share calls: the call count is the floor of the total
    /// queries over 500, and each request still gets its own answer.
    #[tokio::test(start_paused = true)]
    async fn plans_with_tasks_and_streams_cost_the_floor_of_calls() {
        use crate::signals::{Discovered, MetricsLevel, SignalPlan};
        let fake = Arc::new(Fake::default());
        let (metrics, stats) = spawn(&fake, config());
        let dims = |app: &str, key: &str, n: usize| -> Vec<Vec<(String, String)>> {
            (0..n)
                .map(|i| {
                    vec![
                        ("Application".to_string(), app.to_string()),
                        (key.to_string(), format!("{key}-{i}")),
                    ]
                })
                .collect()
        };
        let plans: Vec<SignalPlan> = (0..50)
            .map(|i| {
                let app = format!("app-{i}");
                if i < 30 {
                    let found = Discovered {
                        busy: dims(&app, "Task", 4),
                        back_pressure: dims(&app, "Task", 4),
                        kinesis_lag: dims(&app, "Id", 2),
                        ..Discovered::default()
                    };
                    SignalPlan::new(&app, Some(MetricsLevel::Task), Some("FLINK-1_20"), found)
                } else {
                    SignalPlan::new(
                        &app,
                        Some(MetricsLevel::Application),
                        Some("FLINK-1_20"),
                        Discovered::default(),
                    )
                }
            })
            .collect();
        let total: usize = plans.iter().map(|p| p.series.len()).sum();
        assert_eq!(total, 30 * (9 + 4 + 4 + 2) + 20 * 9);
        let target = Target::new("eu-west-1");
        let tasks: Vec<_> = plans
            .iter()
            .cloned()
            .map(|plan| {
                let metrics = metrics.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    metrics
                        .samples_for(
                            &target,
                            &plan,
                            Duration::from_secs(600),
                            Duration::from_secs(60),
                            end(),
                        )
                        .await
                })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            let samples = task.await.unwrap().unwrap();
            assert_eq!(samples.len(), 10, "app-{i}");
            let want = expected(&format!("app-{i}"), Duration::from_secs(600), end());
            for (got, want) in samples.iter().zip(&want) {
                assert_eq!(got.cpu_utilization, want.cpu_utilization);
                if i < 30 {
                    assert_eq!(got.busy_time_ms_per_second, want.busy_time_ms_per_second);
                    assert_eq!(got.millis_behind_latest, want.millis_behind_latest);
                } else {
                    assert_eq!(got.busy_time_ms_per_second, None, "not published at APPLICATION");
                }
            }
        }
        let snapshot = stats.snapshot();
        assert_eq!(
            snapshot.calls_of(AwsOperation::GetMetricData),
            total.div_ceil(MAX_QUERIES_PER_CALL) as u64
        );
        let asked: usize = fake
            .pages
            .lock()
            .unwrap()
            .iter()
            .map(|(_, c)| c.queries.len())
            .sum();
        assert_eq!(asked, total);
    }
}
