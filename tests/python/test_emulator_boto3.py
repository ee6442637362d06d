"""The emulator's wire format, judged by an independent client: boto3.

Starts the built binary (`checkpoint-autoscaler emulator --port 0`, built by
`scripts/test.sh` with `cargo build --bins`), reads the endpoint from its first stdout line,
and drives kinesisanalyticsv2 (awsJson1_1) and CloudWatch with boto3. botocore 1.43 prefers
CloudWatch's awsJson 1.0 protocol; the CloudWatch tests run once with botocore's own choice
and once forced to Smithy RPC v2 CBOR (what the Rust SDK speaks), and check in the
emulator's call log which protocol arrived.

Virtual time is frozen (`--period 0s`) and moved through the control API, so no test
depends on wall-clock timing.
"""

import datetime
import json
import os
import pathlib
import select
import subprocess
import tempfile
import urllib.request

import boto3
import botocore
import botocore.config
import botocore.model
import pytest
from botocore.exceptions import ClientError

ROOT = pathlib.Path(__file__).resolve().parents[2]
REGION = "eu-west-1"
SCENARIO = """\
name: orders
application: {name: orders, parallelism: 4, maxParallelism: 128}
duration: 6h
load:
  phases: [{shape: steady, rate: 2000}]
"""
METRICS = [
    "lastCheckpointDuration",
    "lastCheckpointSize",
    "numberOfFailedCheckpoints",
    "cpuUtilization",
    "heapMemoryUtilization",
    "KPUs",
]


def binary():
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    path = target / "debug" / "checkpoint-autoscaler"
    if not path.exists():
        pytest.fail(f"{path} not found: build it first with `cargo build --bins`")
    return path


@pytest.fixture(scope="module")
def emulator():
    with tempfile.TemporaryDirectory() as tmp:
        scenario = pathlib.Path(tmp) / "orders.yaml"
        scenario.write_text(SCENARIO)
        proc = subprocess.Popen(
            [str(binary()), "emulator", "--port", "0", "--period", "0s", "--region", REGION,
             "--scenario", str(scenario)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            line = proc.stdout.readline().strip() if ready else ""
            if not line.startswith("http://127.0.0.1:"):
                proc.kill()
                pytest.fail(f"emulator did not print its address (got {line!r}): {proc.stderr.read()}")
            yield line
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def control(url, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + "/_emulator" + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read().decode()
        return json.loads(text) if text else None


def advance(url, minutes):
    control(url, "POST", "/clock/advance", {"seconds": minutes * 60})


def virtual_now(url):
    return datetime.datetime.fromisoformat(control(url, "GET", "/clock")["virtualNow"].replace("Z", "+00:00"))


def session():
    return boto3.session.Session(aws_access_key_id="AKIDEMULATOR", aws_secret_access_key="secret",
                                 region_name=REGION)


def config(attempts=1, **kwargs):
    return botocore.config.Config(retries={"max_attempts": attempts, "mode": "standard"},
                                  connect_timeout=5, read_timeout=10, **kwargs)


@pytest.fixture
def kda(emulator):
    return session().client("kinesisanalyticsv2", endpoint_url=emulator, config=config())


@pytest.fixture(params=["botocore-default", "smithy-rpc-v2-cbor"])
def cw(request, emulator):
    if request.param == "botocore-default":
        client = session().client("cloudwatch", endpoint_url=emulator, config=config())
        yield client
        return
    # Force the CBOR protocol for this client: move it to the front of botocore's
    # protocol preference while the client is created.
    preferred = ("smithy-rpc-v2-cbor",) + tuple(
        p for p in botocore.model.PRIORITY_ORDERED_SUPPORTED_PROTOCOLS if p != "smithy-rpc-v2-cbor")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(botocore.model, "PRIORITY_ORDERED_SUPPORTED_PROTOCOLS", preferred)
        client = session().client("cloudwatch", endpoint_url=emulator, config=config())
    assert client.meta.service_model.resolved_protocol == "smithy-rpc-v2-cbor"
    yield client


def expected_wire_protocol(client):
    return {"smithy-rpc-v2-cbor": "rpcv2Cbor", "json": "awsJson1_0"}[client.meta.service_model.resolved_protocol]


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def update_parallelism(kda, version, parallelism, per_kpu):
    return kda.update_application(
        ApplicationName="orders",
        CurrentApplicationVersionId=version,
        ApplicationConfigurationUpdate={"FlinkApplicationConfigurationUpdate": {"ParallelismConfigurationUpdate": {
            "ConfigurationTypeUpdate": "CUSTOM",
            "ParallelismUpdate": parallelism,
            "ParallelismPerKPUUpdate": per_kpu,
            "AutoScalingEnabledUpdate": False,
        }}},
        RunConfigurationUpdate={"ApplicationRestoreConfiguration": {
            "ApplicationRestoreType": "RESTORE_FROM_LATEST_SNAPSHOT"}},
    )


def parallelism(detail):
    return detail["ApplicationConfigurationDescription"]["FlinkApplicationConfigurationDescription"][
        "ParallelismConfigurationDescription"]


def test_describe_and_update_application(emulator, kda):
    detail = kda.describe_application(ApplicationName="orders")["ApplicationDetail"]
    assert detail["ApplicationARN"] == f"arn:aws:kinesisanalytics:{REGION}:123456789012:application/orders"
    assert detail["ApplicationStatus"] == "RUNNING"
    assert detail["RuntimeEnvironment"] == "FLINK-1_20"
    assert isinstance(detail["CreateTimestamp"], datetime.datetime)
    p = parallelism(detail)
    assert (p["ConfigurationType"], p["Parallelism"], p["ParallelismPerKPU"], p["CurrentParallelism"]) == (
        "CUSTOM", 4, 1, 4)

    version = detail["ApplicationVersionId"]
    updated = update_parallelism(kda, version, 8, 2)
    assert updated["ApplicationDetail"]["ApplicationVersionId"] == version + 1
    assert updated["ApplicationDetail"]["ApplicationStatus"] == "UPDATING"
    op_id = updated["OperationId"]
    info = kda.describe_application_operation(ApplicationName="orders", OperationId=op_id)[
        "ApplicationOperationInfoDetails"]
    assert (info["Operation"], info["OperationStatus"]) == ("UpdateApplication", "IN_PROGRESS")

    advance(emulator, 120)
    info = kda.describe_application_operation(ApplicationName="orders", OperationId=op_id)[
        "ApplicationOperationInfoDetails"]
    assert info["OperationStatus"] == "SUCCESSFUL"
    assert info["EndTime"] > info["StartTime"]
    assert info["ApplicationVersionChangeDetails"] == {
        "ApplicationVersionUpdatedFrom": version, "ApplicationVersionUpdatedTo": version + 1}
    detail = kda.describe_application(ApplicationName="orders")["ApplicationDetail"]
    assert detail["ApplicationStatus"] == "RUNNING"
    assert parallelism(detail)["CurrentParallelism"] == 8
    ops = kda.list_application_operations(ApplicationName="orders")["ApplicationOperationInfoList"]
    assert any(o["OperationId"] == op_id for o in ops)
    summaries = kda.list_applications(Limit=1)["ApplicationSummaries"]
    assert [s["ApplicationName"] for s in summaries] == ["orders"]


def test_kinesis_error_codes(kda):
    with pytest.raises(ClientError) as e:
        kda.describe_application(ApplicationName="missing")
    assert error_code(e) == "ResourceNotFoundException"
    assert isinstance(e.value, kda.exceptions.ResourceNotFoundException)

    version = kda.describe_application(ApplicationName="orders")["ApplicationDetail"]["ApplicationVersionId"]
    with pytest.raises(ClientError) as e:
        update_parallelism(kda, version + 7, 8, 1)
    assert error_code(e) == "ConcurrentModificationException"
    assert isinstance(e.value, kda.exceptions.ConcurrentModificationException)

    with pytest.raises(ClientError) as e:
        update_parallelism(kda, version, 300, 4)
    assert error_code(e) == "InvalidArgumentException"

    with pytest.raises(ClientError) as e:
        kda.list_applications(NextToken="not-a-token")
    assert error_code(e) == "InvalidRequestException"


def test_cloudwatch_reads_metrics(emulator, cw):
    advance(emulator, 30)
    end = virtual_now(emulator)
    start = end - datetime.timedelta(minutes=30)
    control(emulator, "DELETE", "/calls")
    queries = [{
        "Id": f"m{i}",
        "MetricStat": {
            "Metric": {"Namespace": "AWS/KinesisAnalytics", "MetricName": name,
                       "Dimensions": [{"Name": "Application", "Value": "orders"}]},
            "Period": 60,
            "Stat": "Maximum",
        },
    } for i, name in enumerate(METRICS)]
    out = cw.get_metric_data(MetricDataQueries=queries, StartTime=start, EndTime=end)
    results = out["MetricDataResults"]
    assert [r["Id"] for r in results] == [q["Id"] for q in queries]
    for r in results:
        assert r["StatusCode"] == "Complete"
        assert len(r["Timestamps"]) == len(r["Values"]) >= 25
        assert all(isinstance(t, datetime.datetime) for t in r["Timestamps"])
        assert r["Timestamps"] == sorted(r["Timestamps"], reverse=True)
        assert all(start <= t < end for t in r["Timestamps"])
    assert results[0]["Label"] == "lastCheckpointDuration"

    # Paging with MaxDatapoints.
    paged, token, pages = [], None, 0
    while True:
        kwargs = {"NextToken": token} if token else {}
        page = cw.get_metric_data(MetricDataQueries=queries[:1], StartTime=start, EndTime=end, MaxDatapoints=10,
                                  **kwargs)
        pages += 1
        paged.extend(page["MetricDataResults"][0]["Values"] if page["MetricDataResults"] else [])
        token = page.get("NextToken")
        if not token:
            break
    assert pages >= 3
    assert paged == results[0]["Values"]

    listed = cw.list_metrics(Namespace="AWS/KinesisAnalytics",
                             Dimensions=[{"Name": "Application", "Value": "orders"}])["Metrics"]
    assert set(METRICS) <= {m["MetricName"] for m in listed}

    stats = cw.get_metric_statistics(Namespace="AWS/KinesisAnalytics", MetricName="cpuUtilization",
                                     Dimensions=[{"Name": "Application", "Value": "orders"}],
                                     StartTime=start, EndTime=end, Period=300,
                                     Statistics=["Average", "Maximum"])
    assert len(stats["Datapoints"]) == 6
    assert all(d["Maximum"] >= d["Average"] and d["Unit"] == "Percent" for d in stats["Datapoints"])

    cw.put_metric_data(Namespace="Custom/Boto3", MetricData=[
        {"MetricName": "jobs", "Value": 2.0, "Timestamp": end - datetime.timedelta(minutes=1)}])
    assert [m["MetricName"] for m in cw.list_metrics(Namespace="Custom/Boto3")["Metrics"]] == ["jobs"]

    calls = control(emulator, "GET", "/calls?service=cloudwatch")["calls"]
    assert calls, "the emulator saw the CloudWatch calls"
    assert {c["protocol"] for c in calls} == {expected_wire_protocol(cw)}
    assert calls[0]["operation"] == "GetMetricData" and calls[0]["metricQueries"] == len(METRICS)


def test_cloudwatch_error_codes(emulator, cw):
    end = virtual_now(emulator)
    start = end - datetime.timedelta(minutes=30)
    query = {"MetricStat": {"Metric": {"Namespace": "AWS/KinesisAnalytics", "MetricName": "KPUs"},
                            "Period": 60, "Stat": "Average"}}
    with pytest.raises(ClientError) as e:
        cw.get_metric_data(MetricDataQueries=[dict(query, Id=f"q{i}") for i in range(501)],
                           StartTime=start, EndTime=end)
    assert error_code(e) == "InvalidParameterValue"
    assert "500" in e.value.response["Error"]["Message"]

    with pytest.raises(ClientError) as e:
        cw.get_metric_data(MetricDataQueries=[dict(query, Id="a")], StartTime=start, EndTime=end,
                           NextToken="bogus")
    assert error_code(e) == "InvalidNextToken"

    with pytest.raises(ClientError) as e:
        cw.get_metric_statistics(Namespace="AWS/KinesisAnalytics", MetricName="KPUs",
                                 StartTime=end - datetime.timedelta(days=3), EndTime=end, Period=60,
                                 Statistics=["Average"])
    assert error_code(e) == "InvalidParameterCombination"
    assert isinstance(e.value, cw.exceptions.InvalidParameterCombinationException)

    with pytest.raises(ClientError) as e:
        cw.put_metric_data(Namespace="AWS/KinesisAnalytics", MetricData=[{"MetricName": "x", "Value": 1.0}])
    assert error_code(e) == "InvalidParameterValue"
    assert isinstance(e.value, cw.exceptions.InvalidParameterValueException)


def test_unsigned_requests_are_refused(emulator):
    unsigned = config(signature_version=botocore.UNSIGNED)
    kda = session().client("kinesisanalyticsv2", endpoint_url=emulator, config=unsigned)
    with pytest.raises(ClientError) as e:
        kda.describe_application(ApplicationName="orders")
    assert error_code(e) == "MissingAuthenticationTokenException"
    cw = session().client("cloudwatch", endpoint_url=emulator, config=unsigned)
    with pytest.raises(ClientError) as e:
        cw.list_metrics()
    assert error_code(e) == "MissingAuthenticationToken"


def test_injected_throttling_is_retried(emulator):
    control(emulator, "DELETE", "/calls")
    fault = control(emulator, "POST", "/faults",
                    {"kind": "throttling", "operation": "DescribeApplication", "count": 1})
    kda = session().client("kinesisanalyticsv2", endpoint_url=emulator, config=config(attempts=3))
    assert kda.describe_application(ApplicationName="orders")["ApplicationDetail"]["ApplicationName"] == "orders"
    calls = control(emulator, "GET", "/calls?operation=DescribeApplication")["calls"]
    assert [(c["status"], c.get("errorCode")) for c in calls] == [(400, "ThrottlingException"), (200, None)]
    assert control(emulator, "GET", "/faults")["faults"] == [], f"fault {fault['id']} was used up"


def add_application(url, name):
    req = urllib.request.Request(f"{url}/_emulator/scenarios?name={name}",
                                 data=SCENARIO.replace("name: orders", f"name: {name}").encode(),
                                 method="POST", headers={"Content-Type": "application/yaml"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 201


def test_fault_kinds_as_boto3_sees_them(emulator, kda, cw):
    """NaN and missing datapoints, a busy application, a failing update, the KPU quota and
    a deleted application, through an independent client."""
    app = "faulty-" + expected_wire_protocol(cw).lower()  # once per CloudWatch protocol
    add_application(emulator, app)
    advance(emulator, 15)
    end = virtual_now(emulator)
    query = {"Id": "d", "MetricStat": {
        "Metric": {"Namespace": "AWS/KinesisAnalytics", "MetricName": "lastCheckpointDuration",
                   "Dimensions": [{"Name": "Application", "Value": app}]},
        "Period": 60, "Stat": "Maximum"}}
    start = end - datetime.timedelta(minutes=10)
    gap_from = (end - datetime.timedelta(minutes=4)).isoformat().replace("+00:00", "Z")
    nan_from = (end - datetime.timedelta(minutes=2)).isoformat().replace("+00:00", "Z")
    control(emulator, "POST", "/faults", {"kind": "metricGap", "application": app, "from": gap_from,
                                          "until": nan_from})
    control(emulator, "POST", "/faults", {"kind": "metricNaN", "application": app, "from": nan_from})
    try:
        result = cw.get_metric_data(MetricDataQueries=[query], StartTime=start, EndTime=end,
                                    ScanBy="TimestampAscending")["MetricDataResults"][0]
        values = result["Values"]
        assert len(values) == 8, result  # 10 periods, 2 left out by the gap
        assert all(isinstance(v, float) and v == v for v in values[:6]), values
        if expected_wire_protocol(cw) == "rpcv2Cbor":
            assert all(v != v for v in values[6:]), values  # CBOR carries NaN itself (NaN != NaN)
        else:
            # awsJson writes non-finite doubles as strings; botocore hands them on as such.
            assert values[6:] == ["NaN", "NaN"], values
    finally:
        control(emulator, "DELETE", "/faults")

    version = kda.describe_application(ApplicationName=app)["ApplicationDetail"]["ApplicationVersionId"]
    fault = control(emulator, "POST", "/faults",
                    {"kind": "resourceInUse", "status": "AUTOSCALING", "application": app})
    try:
        detail = kda.describe_application(ApplicationName=app)["ApplicationDetail"]
        assert detail["ApplicationStatus"] == "AUTOSCALING"
        with pytest.raises(ClientError) as e:
            kda.update_application(ApplicationName=app, CurrentApplicationVersionId=version,
                                   ApplicationConfigurationUpdate={"FlinkApplicationConfigurationUpdate": {
                                       "ParallelismConfigurationUpdate": {"ConfigurationTypeUpdate": "CUSTOM",
                                                                          "ParallelismUpdate": 6}}})
        assert error_code(e) == "ResourceInUseException"
        assert "AUTOSCALING" in e.value.response["Error"]["Message"]
    finally:
        control(emulator, "DELETE", f"/faults/{fault['id']}")

    control(emulator, "PUT", "/quotas", {"kpusPerApplication": 5})
    try:
        with pytest.raises(ClientError) as e:
            kda.update_application(ApplicationName=app, CurrentApplicationVersionId=version,
                                   ApplicationConfigurationUpdate={"FlinkApplicationConfigurationUpdate": {
                                       "ParallelismConfigurationUpdate": {"ConfigurationTypeUpdate": "CUSTOM",
                                                                          "ParallelismUpdate": 6}}})
        assert error_code(e) == "LimitExceededException"
    finally:
        control(emulator, "PUT", "/quotas", {"kpusPerApplication": 64})

    control(emulator, "POST", "/faults", {"kind": "failOperation", "message": "restore failed", "count": 1})
    op = kda.update_application(ApplicationName=app, CurrentApplicationVersionId=version,
                                ApplicationConfigurationUpdate={"FlinkApplicationConfigurationUpdate": {
                                    "ParallelismConfigurationUpdate": {"ConfigurationTypeUpdate": "CUSTOM",
                                                                       "ParallelismUpdate": 6}}})["OperationId"]
    advance(emulator, 120)
    info = kda.describe_application_operation(ApplicationName=app, OperationId=op)[
        "ApplicationOperationInfoDetails"]
    assert info["OperationStatus"] == "FAILED"
    assert info["OperationFailureDetails"]["ErrorInfo"]["ErrorString"] == "restore failed"
    detail = kda.describe_application(ApplicationName=app)["ApplicationDetail"]
    assert (detail["ApplicationStatus"], parallelism(detail)["CurrentParallelism"]) == ("RUNNING", 4), "rolled back"

    control(emulator, "DELETE", f"/applications/{app}")
    with pytest.raises(ClientError) as e:
        kda.describe_application(ApplicationName=app)
    assert error_code(e) == "ResourceNotFoundException"


def test_lost_answers_as_boto3_sees_them(emulator):
    """closeConnection and missingOperationId: an update served with its answer lost, one
    never served, and a 200 without OperationId, as an independent client sees them."""
    # One attempt in all: botocore retries a closed connection otherwise.
    once = botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"},
                                  connect_timeout=5, read_timeout=10)
    kda = session().client("kinesisanalyticsv2", endpoint_url=emulator, config=once)
    app = "lost-answers"
    add_application(emulator, app)
    control(emulator, "DELETE", "/calls")

    def update(version, parallelism=6):
        return kda.update_application(
            ApplicationName=app, CurrentApplicationVersionId=version,
            ApplicationConfigurationUpdate={"FlinkApplicationConfigurationUpdate": {
                "ParallelismConfigurationUpdate": {"ConfigurationTypeUpdate": "CUSTOM",
                                                   "ParallelismUpdate": parallelism}}})

    def version_and_status():
        detail = kda.describe_application(ApplicationName=app)["ApplicationDetail"]
        return detail["ApplicationVersionId"], detail["ApplicationStatus"]

    version, status = version_and_status()
    assert status == "RUNNING"
    control(emulator, "POST", "/faults",
            {"kind": "closeConnection", "operation": "UpdateApplication", "application": app, "count": 1})
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        update(version)
    # Served: the update took effect although no answer arrived.
    assert version_and_status() == (version + 1, "UPDATING")
    advance(emulator, 60)
    version, status = version_and_status()
    assert status == "RUNNING"

    control(emulator, "POST", "/faults",
            {"kind": "closeConnection", "served": False, "operation": "UpdateApplication", "count": 1})
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        update(version, 8)
    assert version_and_status() == (version, "RUNNING"), "never served"

    control(emulator, "POST", "/faults", {"kind": "missingOperationId", "count": 1})
    answer = update(version, 8)
    assert "OperationId" not in answer
    assert answer["ApplicationDetail"]["ApplicationVersionId"] == version + 1
    assert version_and_status() == (version + 1, "UPDATING")

    calls = control(emulator, "GET", f"/calls?operation=UpdateApplication&application={app}")["calls"]
    assert [(c["status"], c.get("errorCode")) for c in calls] == [
        (200, "ConnectionClosed"), (444, "ConnectionClosed"), (200, None)]
    assert control(emulator, "GET", "/faults")["faults"] == []


def test_snapshot_configuration_as_boto3_sees_it(emulator, kda):
    """ApplicationSnapshotConfiguration on create, ApplicationSnapshotConfigurationUpdate on
    update, the restore configuration in DescribeApplication, and ListApplicationSnapshots."""
    name = "snapshots"
    kda.create_application(
        ApplicationName=name, RuntimeEnvironment="FLINK-1_20",
        ServiceExecutionRole="arn:aws:iam::123456789012:role/flink",
        ApplicationConfiguration={
            "FlinkApplicationConfiguration": {"ParallelismConfiguration": {
                "ConfigurationType": "CUSTOM", "Parallelism": 2, "ParallelismPerKPU": 1,
                "AutoScalingEnabled": False}},
            "ApplicationSnapshotConfiguration": {"SnapshotsEnabled": False}})
    config = kda.describe_application(ApplicationName=name)["ApplicationDetail"][
        "ApplicationConfigurationDescription"]
    assert config["ApplicationSnapshotConfigurationDescription"] == {"SnapshotsEnabled": False}
    assert config["RunConfigurationDescription"]["ApplicationRestoreConfigurationDescription"] == {
        "ApplicationRestoreType": "RESTORE_FROM_LATEST_SNAPSHOT"}

    kda.start_application(ApplicationName=name)
    advance(emulator, 10)
    version = kda.describe_application(ApplicationName=name)["ApplicationDetail"]["ApplicationVersionId"]
    kda.update_application(
        ApplicationName=name, CurrentApplicationVersionId=version,
        ApplicationConfigurationUpdate={"ApplicationSnapshotConfigurationUpdate": {"SnapshotsEnabledUpdate": True}})
    detail = kda.describe_application(ApplicationName=name)["ApplicationDetail"]
    assert detail["ApplicationConfigurationDescription"]["ApplicationSnapshotConfigurationDescription"] == {
        "SnapshotsEnabled": True}
    assert kda.list_application_snapshots(ApplicationName=name)["SnapshotSummaries"] == []

    # A restart with snapshots on leaves one.
    kda.update_application(
        ApplicationName=name, CurrentApplicationVersionId=detail["ApplicationVersionId"],
        ApplicationConfigurationUpdate={"FlinkApplicationConfigurationUpdate": {
            "ParallelismConfigurationUpdate": {"ConfigurationTypeUpdate": "CUSTOM", "ParallelismUpdate": 4}}})
    advance(emulator, 30)
    snapshots = kda.list_application_snapshots(ApplicationName=name, Limit=1)
    summaries = snapshots["SnapshotSummaries"]
    assert len(summaries) == 1 and "NextToken" not in snapshots
    assert summaries[0]["SnapshotStatus"] == "READY"
    assert summaries[0]["ApplicationVersionId"] == detail["ApplicationVersionId"]
    assert isinstance(summaries[0]["SnapshotCreationTimestamp"], datetime.datetime)


def add_scenario_application(url, name, extra):
    """Adds a running application for SCENARIO with `extra` fields under `application:`."""
    text = SCENARIO.replace("name: orders", f"name: {name}").replace(
        "maxParallelism: 128}", f"maxParallelism: 128, {extra}}}")
    req = urllib.request.Request(f"{url}/_emulator/scenarios?name={name}", data=text.encode(),
                                 method="POST", headers={"Content-Type": "application/yaml"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 201


def datapoints(cw, name, dimensions, start, end):
    out = cw.get_metric_data(MetricDataQueries=[{
        "Id": "m",
        "MetricStat": {
            "Metric": {"Namespace": "AWS/KinesisAnalytics", "MetricName": name, "Dimensions": dimensions},
            "Period": 60,
            "Stat": "Maximum",
        },
    }], StartTime=start, EndTime=end)
    return out["MetricDataResults"][0]["Values"]


def test_metrics_levels_runtimes_and_sources_as_boto3_sees_them(emulator, cw):
    """What AWS publishes ("Metrics and dimensions in Managed Service for Apache Flink"): busy
    and back-pressure times only per task, never with the Application dimension alone;
    numRestarts, not fullRestarts, on Flink 2.2; the source lag per stream, or
    records_lag_max for Kafka."""
    # One set of applications per client protocol (the emulator lives for the module).
    tag = {"smithy-rpc-v2-cbor": "cbor", "json": "json"}[cw.meta.service_model.resolved_protocol]
    app, task, flink22, kafka = (f"levels-{kind}-{tag}" for kind in ("app", "task", "flink22", "kafka"))
    add_scenario_application(emulator, app, "metricsLevel: APPLICATION")
    add_scenario_application(emulator, task, "metricsLevel: TASK")
    add_scenario_application(emulator, flink22, "runtimeEnvironment: FLINK-2_2")
    add_scenario_application(emulator, kafka, "source: {kafkaTopic: orders-topic}")
    advance(emulator, 10)
    end = virtual_now(emulator)
    start = end - datetime.timedelta(minutes=10)

    def listed(name, application):
        return cw.list_metrics(Namespace="AWS/KinesisAnalytics", MetricName=name,
                               Dimensions=[{"Name": "Application", "Value": application}])["Metrics"]

    # APPLICATION level (the default): nothing for a query naming only the Application.
    app_only = [{"Name": "Application", "Value": app}]
    assert datapoints(cw, "busyTimeMsPerSecond", app_only, start, end) == []
    assert datapoints(cw, "backPressuredTimeMsPerSecond", app_only, start, end) == []
    assert listed("busyTimeMsPerSecond", app) == []
    assert len(datapoints(cw, "lastCheckpointDuration", app_only, start, end)) >= 8

    # TASK level: the same metric with a Task dimension, found with ListMetrics.
    task_only = [{"Name": "Application", "Value": task}]
    assert datapoints(cw, "busyTimeMsPerSecond", task_only, start, end) == []
    per_task = listed("busyTimeMsPerSecond", task)
    assert per_task, "ListMetrics shows busyTimeMsPerSecond per task"
    for metric in per_task:
        assert sorted(d["Name"] for d in metric["Dimensions"]) == ["Application", "Task"]
        assert len(datapoints(cw, "busyTimeMsPerSecond", metric["Dimensions"], start, end)) >= 8
    assert listed("backPressuredTimeMsPerSecond", task)

    # Flink 2.2: numRestarts, and no fullRestarts.
    assert listed("numRestarts", flink22)
    assert listed("fullRestarts", flink22) == []
    assert listed("fullRestarts", app) and listed("numRestarts", app) == []

    # The lag: per source stream for Kinesis, records_lag_max for Kafka.
    lag = listed("millisBehindLatest", app)
    assert [sorted((d["Name"], d["Value"]) for d in m["Dimensions"]) for m in lag] == [
        [("Application", app), ("Flow", "Input"), ("Id", f"{app}-input")]]
    assert datapoints(cw, "millisBehindLatest", app_only, start, end) == []
    assert listed("millisBehindLatest", kafka) == []
    assert listed("records_lag_max", kafka)


def test_monitoring_configuration_as_boto3_sees_it(emulator, kda):
    """MonitoringConfiguration on create, MonitoringConfigurationUpdate on update, and what
    DescribeApplication reports; MetricsLevel is honoured only with ConfigurationType CUSTOM."""
    role = "arn:aws:iam::123456789012:role/flink"

    def flink_config(name):
        return kda.describe_application(ApplicationName=name)["ApplicationDetail"]

    kda.create_application(
        ApplicationName="monitored", RuntimeEnvironment="FLINK-2_2", ServiceExecutionRole=role,
        ApplicationConfiguration={
            "FlinkApplicationConfiguration": {"MonitoringConfiguration": {
                "ConfigurationType": "CUSTOM", "MetricsLevel": "TASK", "LogLevel": "WARN"}},
            "ApplicationSnapshotConfiguration": {"SnapshotsEnabled": False}})
    detail = flink_config("monitored")
    config = detail["ApplicationConfigurationDescription"]
    assert detail["RuntimeEnvironment"] == "FLINK-2_2"
    assert config["FlinkApplicationConfigurationDescription"]["MonitoringConfigurationDescription"] == {
        "ConfigurationType": "CUSTOM", "MetricsLevel": "TASK", "LogLevel": "WARN"}
    assert config["ApplicationSnapshotConfigurationDescription"] == {"SnapshotsEnabled": False}

    kda.update_application(
        ApplicationName="monitored", CurrentApplicationVersionId=detail["ApplicationVersionId"],
        ApplicationConfigurationUpdate={
            "FlinkApplicationConfigurationUpdate": {"MonitoringConfigurationUpdate": {
                "MetricsLevelUpdate": "PARALLELISM"}},
            "ApplicationSnapshotConfigurationUpdate": {"SnapshotsEnabledUpdate": True}})
    detail = flink_config("monitored")
    config = detail["ApplicationConfigurationDescription"]
    assert config["FlinkApplicationConfigurationDescription"]["MonitoringConfigurationDescription"] == {
        "ConfigurationType": "CUSTOM", "MetricsLevel": "PARALLELISM", "LogLevel": "WARN"}
    assert config["ApplicationSnapshotConfigurationDescription"] == {"SnapshotsEnabled": True}

    # Back to DEFAULT: APPLICATION and INFO, whatever level the request names.
    kda.update_application(
        ApplicationName="monitored", CurrentApplicationVersionId=detail["ApplicationVersionId"],
        ApplicationConfigurationUpdate={
            "FlinkApplicationConfigurationUpdate": {"MonitoringConfigurationUpdate": {
                "ConfigurationTypeUpdate": "DEFAULT", "MetricsLevelUpdate": "TASK"}}})
    assert flink_config("monitored")["ApplicationConfigurationDescription"][
        "FlinkApplicationConfigurationDescription"]["MonitoringConfigurationDescription"] == {
        "ConfigurationType": "DEFAULT", "MetricsLevel": "APPLICATION", "LogLevel": "INFO"}

    # Created without one: the service's default.
    kda.create_application(ApplicationName="unmonitored", RuntimeEnvironment="FLINK-1_20",
                           ServiceExecutionRole=role)
    assert flink_config("unmonitored")["ApplicationConfigurationDescription"][
        "FlinkApplicationConfigurationDescription"]["MonitoringConfigurationDescription"]["MetricsLevel"] == \
        "APPLICATION"

    # Bad values are refused.
    with pytest.raises(ClientError) as bad_level:
        kda.create_application(
            ApplicationName="bad-level", RuntimeEnvironment="FLINK-1_20", ServiceExecutionRole=role,
            ApplicationConfiguration={"FlinkApplicationConfiguration": {"MonitoringConfiguration": {
                "ConfigurationType": "CUSTOM", "MetricsLevel": "SUBTASK"}}})
    assert error_code(bad_level) == "InvalidArgumentException"
    with pytest.raises(ClientError) as bad_runtime:
        kda.create_application(ApplicationName="bad-runtime", RuntimeEnvironment="FLINK-1_99",
                               ServiceExecutionRole=role)
    assert error_code(bad_runtime) == "InvalidArgumentException"
