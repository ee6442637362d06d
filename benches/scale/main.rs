//! Cost at scale: `cargo bench --bench scale [-- --budgets 100,1000,5000 --cycles 3
//! --concurrency 64 --modes direct,batched,batched-idle-none]`.
//!
//! Each (budgets, metrics path) pair runs in a fresh child process of this binary, so that
//! the peak memory of one does not hide in another's; the parent prints the table. See
//! harness.rs for what is measured and how.

use std::{
    path::Path,
    process::{Command, ExitCode},
};

/// The scale harness, shared with tests/integration/bench_smoke.rs.
#[allow(dead_code)]
mod harness;

use harness::{MetricsPath, ScaleConfig, ScaleReport};

/// The child's result line prefix on stdout.
const RESULT: &str = "SCALE-REPORT ";

struct Options {
    budgets: Vec<usize>,
    cycles: usize,
    concurrency: usize,
    modes: Vec<MetricsPath>,
    child: bool,
}

fn parse() -> Result<Options, String> {
    let mut options = Options {
        budgets: vec![100, 1000, 5000],
        cycles: 3,
        concurrency: 64,
        modes: MetricsPath::ALL.to_vec(),
        child: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--budgets" => {
                options.budgets = value("--budgets")?
                    .split(',')
                    .map(|n| n.trim().parse().map_err(|e| format!("--budgets {n}: {e}")))
                    .collect::<Result<_, _>>()?;
            }
            "--cycles" => {
                options.cycles = value("--cycles")?.parse().map_err(|e| format!("--cycles: {e}"))?
            }
            "--concurrency" => {
                options.concurrency = value("--concurrency")?
                    .parse()
                    .map_err(|e| format!("--concurrency: {e}"))?;
            }
            "--modes" => {
                options.modes = value("--modes")?
                    .split(',')
                    .map(|m| MetricsPath::from_name(m.trim()).ok_or(format!("unknown mode {m}")))
                    .collect::<Result<_, _>>()?;
            }
            "--child" => options.child = true,
            // `cargo bench` passes `--bench`; filters and other harness flags do not apply.
            _ => {}
        }
    }
    Ok(options)
}

fn scenarios_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/scenarios"))
}

/// Runs one measurement in this process and prints it as one JSON line.
fn child(options: &Options) -> Result<(), String> {
    let (Some(budgets), Some(mode)) = (options.budgets.first(), options.modes.first()) else {
        return Err("a child needs one --budgets and one --modes".into());
    };
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let config = ScaleConfig {
        budgets: *budgets,
        cycles: options.cycles,
        concurrency: options.concurrency,
        mode: mode.mode(),
        label: mode.name().into(),
        scenarios: harness::load_scenarios(scenarios_dir()).map_err(|e| e.to_string())?,
        dir: dir.path().to_path_buf(),
    };
    let report = harness::run_scale(&config).map_err(|e| e.to_string())?;
    let json = serde_json::to_string(&report).map_err(|e| e.to_string())?;
    println!("{RESULT}{json}");
    Ok(())
}

fn parent(options: &Options) -> Result<Vec<ScaleReport>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding this benchmark: {e}"))?;
    let mut reports = Vec::new();
    for budgets in &options.budgets {
        for mode in &options.modes {
            eprintln!("scale: {budgets} budgets, {} ...", mode.name());
            let output = Command::new(&exe)
                .args([
                    "--child",
                    "--budgets",
                    &budgets.to_string(),
                    "--modes",
                    mode.name(),
                ])
                .args(["--cycles", &options.cycles.to_string()])
                .args(["--concurrency", &options.concurrency.to_string()])
                .output()
                .map_err(|e| format!("running {}: {e}", exe.display()))?;
            let stdout = String::from_utf8_lossy(&output.stdout);
            let Some(line) = stdout.lines().find_map(|l| l.strip_prefix(RESULT)) else {
                return Err(format!(
                    "{budgets} budgets, {}: no report ({}): {}",
                    mode.name(),
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                ));
            };
            let report: ScaleReport = serde_json::from_str(line).map_err(|e| e.to_string())?;
            if let Some(error) = &report.first_error {
                eprintln!("  {} reconcile errors; first: {error}", report.errors);
            }
            eprintln!(
                "  {:.1} s, GetMetricData per cycle {:?} (floor {:?}), emulator saw {:?}",
                report.wall_secs,
                report.get_metric_data_per_cycle,
                report.floor_per_cycle,
                report.emulator_calls
            );
            reports.push(report);
        }
    }
    Ok(reports)
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and minutes of benchmarking do not belong in the test run (the smoke test does).
    if !std::env::args().any(|a| a == "--bench" || a == "--child") {
        println!(
            "scale: skipped outside `cargo bench --bench scale`; its core is tested by \
             tests/integration/bench_smoke.rs"
        );
        return ExitCode::SUCCESS;
    }
    let options = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("scale: {e}");
            return ExitCode::from(2);
        }
    };
    if options.child {
        return match child(&options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("scale (child): {e}");
                ExitCode::FAILURE
            }
        };
    }
    match parent(&options) {
        Ok(reports) => {
            println!(
                "\nCost at scale: {} cycle(s) of one reconcile per budget (one emulated minute each, \
                 --interval 1m), at most {} at once; /bh = per budget-hour.\n",
                options.cycles, options.concurrency
            );
            print!("{}", harness::render_table(&reports));
            println!(
                "\nfloor = ceil(12 queries x sample requests / 500) GetMetricData calls per cycle. \
                 ListTagsForResource is cached 5 minutes per application, so a run of a few cycles \
                 front-loads it (steady state: 12 per budget-hour)."
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("scale: {e}");
            ExitCode::FAILURE
        }
    }
}
