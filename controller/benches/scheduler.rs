//! The scheduler benchmark (a bench target, so `cargo test` never runs it):
//!
//! ```sh
//! cargo bench -p zonefleet-controller --bench scheduler
//! ```
//!
//! 10,000 hosts in 250 racks (mixed sizes), 100,000 zones (mixed sizes, 20% in
//! rack-spread groups of 20, a quarter of those soft): decisions per second on one
//! core and p99 decision time, peak memory (`VmHWM`), then placements committed
//! through an in-process 3-member cluster in batches of `BATCH`.

use std::time::{Duration, Instant};

use zonefleet_controller::api::operator::command;
use zonefleet_controller::scheduler::{self, Context};
use zonefleet_controller::state::{check, FleetState};
use zonefleet_harness::cluster::{test_raft_config, Cluster};
use zonefleet_harness::fixtures::{create, host, register_host, spread};
use zonefleet_proto::cli::percentile;
use zonefleet_proto::pb;
use zonefleet_proto::pb::command_result::Result as R;
use zonefleet_proto::pb::fleet_command::Kind;

const HOSTS: usize = 10_000;
const RACKS: usize = 250;
const ZONES: usize = 100_000;
const GROUP_SIZE: usize = 20;
const BATCH: usize = 100;
const CLIENTS: usize = 8;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<T: Copy>(&mut self, of: &[T]) -> T {
        of[(self.next() % of.len() as u64) as usize]
    }
}

fn hosts() -> Vec<pb::Host> {
    let mut rng = Rng(7);
    (0..HOSTS)
        .map(|i| {
            let size = (rng.next() % 4) as usize;
            pb::Host {
                rack: format!("rack-{:03}", i % RACKS),
                status: pb::HostStatus::Ready as i32,
                labels: [(
                    "class".to_owned(),
                    if i % 10 == 0 { "gpu" } else { "general" }.to_owned(),
                )]
                .into(),
                ..host(
                    &format!("host-{i:05}"),
                    [64, 128, 256, 512][size] * 1024,
                    [1600, 3200, 6400, 12800][size],
                    [1000, 2000, 4000, 8000][size],
                )
            }
        })
        .collect()
}

/// The spec of zone batch `i` (a batch of one for the decision benchmark).
fn zone_spec(rng: &mut Rng, group: Option<usize>) -> pb::ZoneSpec {
    let placement = group.map(|g| {
        let mode = if g % 4 == 3 {
            pb::RuleMode::Soft
        } else {
            pb::RuleMode::Hard
        };
        pb::Placement {
            spread: Some(spread("rack", &format!("g{g}"), 2, mode)),
            ..Default::default()
        }
    });
    pb::ZoneSpec {
        image: "base@1".into(),
        max_physical_memory_mib: Some(rng.pick(&[256, 512, 1024, 2048, 4096, 8192])),
        cpu_cap: Some(rng.pick(&[0, 50, 100, 200, 400])).filter(|c| *c > 0),
        quota_gib: Some(rng.pick(&[5, 10, 20, 40])),
        placement,
        ..Default::default()
    }
}

fn vm_hwm_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn decisions() {
    let mut state = FleetState::default();
    let setup = Instant::now();
    for h in hosts() {
        state.apply(&register_host(h));
    }
    println!(
        "setup: {HOSTS} hosts in {RACKS} racks registered in {:.2?}",
        setup.elapsed()
    );
    let mut rng = Rng(42);
    let mut times = Vec::with_capacity(ZONES);
    let mut refused = 0;
    let mut grouped = 0;
    let mut decide_total = Duration::ZERO;
    let mut apply_total = Duration::ZERO;
    let mut check_total = Duration::ZERO;
    for i in 0..ZONES {
        // 20% of zones are in spread groups of GROUP_SIZE.
        let group = (i % 5 == 0).then_some(i / (5 * GROUP_SIZE));
        grouped += usize::from(group.is_some());
        let mut spec = zone_spec(&mut rng, group);
        let uuid = format!("00000000-0000-4000-8000-{i:012}");
        spec.uuid = Some(uuid.clone());
        let t = Instant::now();
        let ctx = Context {
            zones: &state.zones,
            networks: &state.networks,
            images: &state.images,
        };
        // One command's decision: its spec parsed, then decided.
        let choice = scheduler::Parsed::of(&spec).and_then(|parsed| {
            scheduler::decide(&state.derived.view, &ctx, &spec, &parsed, None, 0)
        });
        let took = t.elapsed();
        decide_total += took;
        times.push(took);
        refused += usize::from(choice.is_err());
        let create = command(Kind::CreateZones(pb::CreateZonesCommand {
            spec: Some(spec),
            uuids: vec![uuid],
            idempotency_key: String::new(),
        }));
        // The content checks every replica runs first (also inside apply below).
        let t = Instant::now();
        let checked = create.kind.as_ref().map(check::command);
        check_total += t.elapsed();
        assert!(matches!(checked, Some(Ok(()))), "{checked:?}");
        let t = Instant::now();
        let result = state.apply(&create);
        apply_total += t.elapsed();
        assert!(matches!(result.result, Some(R::Zones(_))));
    }
    times.sort();
    println!(
        "decisions: {ZONES} zones ({grouped} in spread groups), {refused} refused; \
         {:.0} decisions/s on one core; p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        ZONES as f64 / decide_total.as_secs_f64(),
        percentile(&times, 0.5).unwrap_or_default(),
        percentile(&times, 0.99).unwrap_or_default(),
        times[times.len() - 1],
    );
    println!(
        "apply (check + decide + store, single-zone creates): {:.0} creates/s; \
         the content checks alone: {:.1?} per command ({:.0}% of apply)",
        ZONES as f64 / apply_total.as_secs_f64(),
        check_total / ZONES as u32,
        100.0 * check_total.as_secs_f64() / apply_total.as_secs_f64()
    );
    let t = Instant::now();
    let mut replica = state.clone();
    replica.rebuild_derived();
    println!(
        "rebuilding the scheduler's view of {HOSTS} hosts and {ZONES} zones: {:.2?}",
        t.elapsed()
    );
    println!(
        "peak memory (VmHWM) after the decision benchmark: {:.0} MiB",
        vm_hwm_mib()
    );
}

async fn committed() {
    let raft = openraft::Config {
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(1_000_000),
        ..test_raft_config()
    };
    let cluster = Cluster::start_with(3, raft).await;
    let leader = cluster.leader().await;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for chunk in hosts().chunks(HOSTS / 32) {
        let node = cluster.node(leader).clone();
        let chunk = chunk.to_vec();
        tasks.push(tokio::spawn(async move {
            for h in chunk {
                node.write(register_host(h)).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    println!("cluster: {HOSTS} hosts registered in {:.2?}", t.elapsed());
    let batches = ZONES / BATCH;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let mut client = cluster.operator(1 + (c as u64 % 3)).await;
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(1000 + c as u64);
            let mut placed = 0;
            let mut latencies = Vec::new();
            for b in (c..batches).step_by(CLIENTS) {
                // 20% of batches are a spread group.
                let group = (b % 5 == 0).then_some(b);
                let spec = zone_spec(&mut rng, group);
                let start = Instant::now();
                let response = client
                    .create_zones(create(spec, BATCH as u32))
                    .await
                    .unwrap()
                    .into_inner();
                latencies.push(start.elapsed());
                placed += response
                    .zones
                    .iter()
                    .filter(|z| !z.host_id.is_empty())
                    .count();
            }
            (placed, latencies)
        }));
    }
    let mut placed = 0;
    let mut latencies = Vec::new();
    for task in tasks {
        let (p, l) = task.await.unwrap();
        placed += p;
        latencies.extend(l);
    }
    let elapsed = t.elapsed();
    latencies.sort();
    println!(
        "cluster: {ZONES} zones in {batches} creates of {BATCH} from {CLIENTS} clients over 3 \
         controllers: {placed} placed in {elapsed:.2?}: {:.0} committed placements/s; \
         create p50 {:.1?}, p99 {:.1?}",
        placed as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5).unwrap_or_default(),
        percentile(&latencies, 0.99).unwrap_or_default(),
    );
    println!("peak memory (VmHWM) after the cluster benchmark (3 controllers in this process): {:.0} MiB", vm_hwm_mib());
}

fn main() {
    decisions();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(committed());
}
