//! `zonefleet-bench`: zonefleet's controllers next to etcd on loopback, and the
//! leader-kill measurement. Run it with `bench/run` (see docs/controller.md).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use zonefleet_bench::etcd::{EtcdCluster, EtcdWriter};
use zonefleet_bench::load::run_load;
use zonefleet_bench::stats::{comparison_table, percentile_ms, RunResult};
use zonefleet_bench::zf::{command_size, leader_kills, ZfCluster, ZfWriter};

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "zonefleet-bench", about)]
struct Args {
    /// Concurrent clients, one run per value.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    clients: Vec<usize>,
    /// Measured seconds per run (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Leader kills (0: none).
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// Writers during the leader kills.
    #[arg(long, default_value_t = 16)]
    kill_clients: usize,
    /// The controller binary (default: `zonefleet-controller` next to this one).
    #[arg(long)]
    controller: Option<PathBuf>,
    /// The etcd binary.
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd: PathBuf,
    /// Skip the etcd side.
    #[arg(long)]
    no_etcd: bool,
    /// Where the data dirs go (a temporary directory inside it, removed at the end).
    /// Must be a real disk: a tmpfs would make fsync free.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Raft timings of the controllers, `HEARTBEAT,ELECTION_MIN,ELECTION_MAX` in ms
    /// (default: the controller's defaults).
    #[arg(long, value_delimiter = ',')]
    raft_ms: Vec<u64>,
    /// zonefleet clients all talk to the leader (default: spread over the three
    /// controllers, as the etcd clients are, so two in three writes are forwarded).
    #[arg(long)]
    leader_only: bool,
    /// Keep the data dirs and the processes' logs (printed path) instead of removing them.
    #[arg(long)]
    keep: bool,
}

/// The data dir, removed on drop unless kept.
struct Kept(Option<tempfile::TempDir>, bool);

impl Kept {
    fn path(&self) -> &std::path::Path {
        self.0
            .as_ref()
            .map(|t| t.path())
            .unwrap_or(std::path::Path::new("."))
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        if let (Some(t), true) = (self.0.take(), self.1) {
            eprintln!("kept {}", t.keep().display());
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let controller = match &args.controller {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("zonefleet-controller"),
    };
    // Absolute: the controllers run in their data dir.
    let controller = std::fs::canonicalize(&controller).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e} (cargo build --release -p zonefleet-controller)",
            controller.display()
        )
    })?;
    let tmp = match &args.dir {
        Some(d) => tempfile::Builder::new()
            .prefix("zonefleet-bench")
            .tempdir_in(d)?,
        None => tempfile::Builder::new()
            .prefix("zonefleet-bench")
            .tempdir()?,
    };
    let tmp = Kept(Some(tmp), args.keep);
    let raft = match args.raft_ms.as_slice() {
        [h, min, max] => format!(
            "[raft]\nheartbeat_ms = {h}\nelection_timeout_min_ms = {min}\nelection_timeout_max_ms = {max}\n"
        ),
        [] => String::new(),
        other => anyhow::bail!("--raft-ms: 3 values, not {other:?}"),
    };
    let warmup = Duration::from_secs(1);
    let window = Duration::from_secs(args.seconds);
    let value_size = command_size()?;
    println!(
        "zonefleet: one-zone create (a {value_size}-byte Raft command); etcd: put of a {value_size}-byte value to a new key"
    );
    println!(
        "data under {} ({} s per run after 1 s warm-up)",
        tmp.path().display(),
        args.seconds
    );

    let mut zf_results = Vec::new();
    {
        let mut cluster = ZfCluster::start(&tmp.path().join("zonefleet"), &controller, &raft)?;
        let leader = cluster.leader(Duration::from_secs(30)).await?;
        for &clients in &args.clients {
            let mut writers = Vec::new();
            for i in 0..clients {
                let target = if args.leader_only { leader } else { i };
                writers.push(ZfWriter(cluster.client(target).await?));
            }
            let r = run_load(writers, warmup, window).await;
            cluster.check_running()?;
            eprintln!(
                "zonefleet {:>4} clients: {:.0} ops/s p50 {:.2} ms p99 {:.2} ms ({} errors)",
                r.clients, r.ops_per_sec, r.p50_ms, r.p99_ms, r.errors
            );
            zf_results.push(r);
        }
    }

    let mut kill_report = None;
    if args.kills > 0 {
        // A fresh cluster, so the kills do not start behind a large state.
        let mut cluster = ZfCluster::start(&tmp.path().join("zonefleet-kill"), &controller, &raft)?;
        cluster.leader(Duration::from_secs(30)).await?;
        eprintln!(
            "leader kills: {} kills under {} writers",
            args.kills, args.kill_clients
        );
        kill_report = Some(leader_kills(&mut cluster, args.kill_clients, args.kills).await?);
    }

    let mut etcd_results: Vec<RunResult> = Vec::new();
    if !args.no_etcd {
        let mut cluster = EtcdCluster::start(&tmp.path().join("etcd"), &args.etcd).await?;
        for &clients in &args.clients {
            let mut writers = Vec::new();
            for i in 0..clients {
                let endpoint = &cluster.endpoints[i % 3];
                writers.push(
                    EtcdWriter::connect(endpoint, &format!("bench/{clients}/{i}"), value_size)
                        .await?,
                );
            }
            let r = run_load(writers, warmup, window).await;
            cluster.check_running()?;
            eprintln!(
                "etcd      {:>4} clients: {:.0} ops/s p50 {:.2} ms p99 {:.2} ms ({} errors)",
                r.clients, r.ops_per_sec, r.p50_ms, r.p99_ms, r.errors
            );
            etcd_results.push(r);
        }
    }

    println!();
    print!("{}", comparison_table(&zf_results, &etcd_results));
    if let Some(k) = kill_report {
        let mut p = k.pauses.clone();
        p.sort();
        println!();
        println!(
            "leader SIGKILL x{}, {} writers: write pause p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            p.len(),
            args.kill_clients,
            percentile_ms(&p, 0.50),
            percentile_ms(&p, 0.99),
            p.last()
                .map(|d| d.as_secs_f64() * 1000.0)
                .unwrap_or(f64::NAN),
        );
        println!(
            "  (pause: from the SIGKILL to the first acknowledgement of a write sent after it)"
        );
        println!(
            "  {} writes acknowledged; {} checked around the kills, {} missing",
            k.acked, k.checked, k.lost
        );
        anyhow::ensure!(k.lost == 0, "{} acknowledged writes lost", k.lost);
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zonefleet-bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        // Interrupted: `run` is dropped, and with it every child process.
        tokio::select! {
            r = run(args) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
            _ = term.recv() => Err(anyhow::anyhow!("terminated")),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zonefleet-bench: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
