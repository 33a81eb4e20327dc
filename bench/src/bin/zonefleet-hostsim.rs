//! `zonefleet-hostsim`: what many hosts cost the controllers' leader. For each fleet
//! size, a fresh 3-member cluster of release controllers on loopback; that many
//! simulated hosts enroll (one join token each), register, heartbeat at the interval
//! the controllers give and watch their assignments, with the agent's own code; then
//! the leader's CPU (share of one core) and RSS are measured over a window, and every
//! host must still be `ready`. Run it with `bench/hostsim` (see docs/controller.md).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use zonefleet_bench::hostsim::{self, Counters};
use zonefleet_bench::zf::ZfCluster;
use zonefleet_proto::pb;

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "zonefleet-hostsim", about)]
struct Args {
    /// Fleet sizes, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    hosts: Vec<usize>,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Enrollments in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// The controller binary (default: `zonefleet-controller` next to this one).
    #[arg(long)]
    controller: Option<PathBuf>,
    /// Hosts started per second once enrolled (a fleet powering up is spread over
    /// time; every host at once is a reconnect storm, measured apart).
    #[arg(long, default_value_t = 250)]
    start_rate: usize,
    /// Every host lists the leader first (its heartbeats are not forwarded).
    #[arg(long)]
    leader_first: bool,
    /// Where the data dirs go (a temporary directory inside it, removed at the end).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// The controllers' config for the run: enrollment is rate-limited per peer address,
/// and every simulated host enrolls from 127.0.0.1.
const CONTROLLER_EXTRA: &str = "[enroll]\nburst = 1000000\nper_second = 1000000\n";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    raise_nofile()?;
    let controller = match &args.controller {
        // Absolute: the controllers run in their data dir.
        Some(p) => std::path::absolute(p)?,
        None => std::env::current_exe()?
            .parent()
            .context("no binary dir")?
            .join("zonefleet-controller"),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    println!("hosts   enroll/s  leader CPU (cores)  leader RSS (MiB)  follower CPU  simulator CPU  ready");
    for &n in &args.hosts {
        let scratch = match &args.dir {
            Some(d) => tempfile::tempdir_in(d)?,
            None => tempfile::tempdir()?,
        };
        let line = runtime.block_on(run(n, &args, &controller, scratch.path()))?;
        println!("{line}");
    }
    Ok(())
}

async fn run(
    n: usize,
    args: &Args,
    controller: &std::path::Path,
    dir: &std::path::Path,
) -> anyhow::Result<String> {
    let mut cluster = ZfCluster::start(dir, controller, CONTROLLER_EXTRA)?;
    let leader = cluster.leader(Duration::from_secs(30)).await?;
    // As configured agents: every host lists the controllers in the same order, so
    // they all talk to the first (a follower two runs in three: it forwards their
    // heartbeats), unless --leader-first.
    let mut controllers = cluster.addrs.clone();
    if args.leader_first {
        controllers.swap(0, leader);
    }
    let started = Instant::now();
    let hosts = hostsim::enroll_hosts(
        &cluster,
        &controllers,
        &hostsim::hosts_dir(dir),
        n,
        args.concurrency,
    )
    .await?;
    let enroll_rate = n as f64 / started.elapsed().as_secs_f64();

    let sysinfo = zonefleet_agent::sysinfo::collect(dir)?;
    let counters = Arc::new(Counters::default());
    let ramp = Duration::from_secs_f64((n as f64 / args.start_rate.max(1) as f64).max(1.0));
    let running = hostsim::run_hosts(hosts, &sysinfo, counters.clone(), ramp);
    let deadline = Instant::now() + ramp + Duration::from_secs(120);
    while counters.registered.load(Ordering::Relaxed) < n as u64 {
        cluster.check_running()?;
        if Instant::now() > deadline {
            bail!(
                "{} of {n} hosts registered within {:?} (started over {ramp:?})",
                counters.registered.load(Ordering::Relaxed),
                ramp + Duration::from_secs(120)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Settle: every host through a few heartbeats.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let leader_now = cluster.leader(Duration::from_secs(10)).await?;
    if leader_now != leader {
        bail!(
            "the leader changed from {} to {} under load",
            leader + 1,
            leader_now + 1
        );
    }
    let pid = cluster.pid(leader).context("the leader is not running")?;
    let follower = cluster
        .pid((leader + 1) % 3)
        .context("a follower is not running")?;
    let window = Duration::from_secs(args.seconds);
    let me = std::process::id();
    let (leader_cpu, follower_cpu, sim_cpu) = tokio::join!(
        hostsim::measure(pid, window),
        hostsim::measure(follower, window),
        hostsim::measure(me, window)
    );
    let ((leader_cores, leader_rss), (follower_cores, _), (sim_cores, _)) =
        (leader_cpu?, follower_cpu?, sim_cpu?);

    let mut client = cluster.client(leader).await?;
    let listed = client
        .list_hosts(pb::ListHostsRequest::default())
        .await?
        .into_inner()
        .hosts;
    let ready = listed
        .iter()
        .filter(|h| h.status == pb::HostStatus::Ready as i32)
        .count();
    drop(running);
    Ok(format!(
        "{n:<7} {enroll_rate:<9.0} {leader_cores:<19.2} {:<17.0} {follower_cores:<13.2} {sim_cores:<14.2} {ready}/{n}",
        leader_rss as f64 / 1024.0
    ))
}

/// Lets this process (and the controllers it starts) hold a descriptor per host.
fn raise_nofile() -> anyhow::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        bail!("getrlimit: {}", std::io::Error::last_os_error());
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        bail!("setrlimit: {}", std::io::Error::last_os_error());
    }
    Ok(())
}
