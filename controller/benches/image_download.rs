//! Image distribution throughput, controller → agent (a bench target, so `cargo test`
//! never runs it):
//!
//! ```sh
//! cargo bench -p zonefleet-controller --bench image_download            # release
//! cargo bench -p zonefleet-controller --bench image_download --profile dev
//! IMAGE_MIB=512 cargo bench -p zonefleet-controller --bench image_download
//! ```
//!
//! One in-process controller on loopback (real mTLS listener): uploads an archive of
//! `IMAGE_MIB` MiB (default 256) as an operator, places a zone of it on a host, then
//! downloads it as that host's agent (`DownloadImage`, 1 MiB chunks, every byte
//! hashed as the agent does) and prints MiB/s. Then the same file over loopback from
//! `python3 -m http.server` with `curl -o /dev/null`, for comparison (skipped when
//! either is missing).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio_stream::StreamExt;
use uuid::Uuid;
use zonefleet_harness::cluster::{cert_key, test_image_options, Cluster};
use zonefleet_harness::fixtures::{create, spec};
use zonefleet_proto::pb;
use zonefleet_proto::pb::control_client::ControlClient;
use zonefleet_proto::pb::import_image_request::Part;
use zonefleet_proto::pki::Validity;

const MIB: f64 = 1024.0 * 1024.0;

fn main() {
    let mib: usize = std::env::var("IMAGE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(mib));
}

async fn run(mib: usize) {
    let cluster = Cluster::start_with_images(
        1,
        zonefleet_controller::blobs::ImageOptions {
            max_bytes: 64 << 30,
            ..test_image_options()
        },
    )
    .await;
    cluster.leader().await;
    // Bytes that pass the format check (a gzip header) and do not compress away.
    let mut data = vec![0x1f, 0x8b, 8, 0];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < mib << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(mib << 20);
    let sha = hex::encode(Sha256::digest(&data));

    let mut op = cluster.operator(1).await;
    let mut messages = vec![pb::ImportImageRequest {
        part: Some(Part::Start(pb::ImportImageStart {
            name: "bench".into(),
            version: "1".into(),
            size_bytes: data.len() as u64,
            sha256: sha.clone(),
            ..Default::default()
        })),
    }];
    messages.extend(data.chunks(1 << 20).map(|c| pb::ImportImageRequest {
        part: Some(Part::Chunk(c.to_vec())),
    }));
    let started = Instant::now();
    op.import_image(tokio_stream::iter(messages)).await.unwrap();
    let upload = started.elapsed();

    let host = Uuid::new_v4();
    let agent = cert_key(
        &cluster
            .ca
            .issue_agent(host, &[], Validity::days(1).unwrap())
            .unwrap(),
    );
    let mut control =
        ControlClient::new(cluster.channel_as(1, &agent).await).max_decoding_message_size(16 << 20);
    control
        .register(pb::RegisterRequest {
            sysinfo: Some(pb::HostSysinfo {
                host_id: host.to_string(),
                hostname: "bench".into(),
                cpus: 4,
                memory_mib: 8192,
                kernel: "6.1.0".into(),
                cgroup_version: pb::CgroupVersion::V1 as i32,
                agent_version: "0.1.0".into(),
                ..Default::default()
            }),
            capacity: Some(pb::Capacity {
                memory_mib: 8192,
                cpu_percent: 400,
                disk_gib: 100,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let mut zone = spec("bench");
    zone.image = "bench".into();
    op.create_zones(create(zone, 1)).await.unwrap();

    let started = Instant::now();
    let mut stream = control
        .download_image(pb::DownloadImageRequest {
            host_id: host.to_string(),
            image: "bench".into(),
            offset: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut hasher = Sha256::new();
    let mut got = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        got += chunk.data.len();
        hasher.update(&chunk.data);
    }
    let download = started.elapsed();
    assert_eq!(got, data.len());
    assert_eq!(hex::encode(hasher.finalize()), sha);

    let rate = |d: Duration| data.len() as f64 / MIB / d.as_secs_f64();
    println!("image of {mib} MiB, one controller on loopback (mTLS)");
    println!(
        "  upload (zfadm → controller, checked, fsynced): {:>8.1} MiB/s",
        rate(upload)
    );
    println!(
        "  download (controller → agent, hashed):        {:>8.1} MiB/s",
        rate(download)
    );
    let blob = cluster.data_dir(1).join("blobs/sha256").join(&sha);
    match curl(&blob) {
        Some(d) => println!(
            "  curl of the same file from python3 http.server: {:>8.1} MiB/s",
            rate(d)
        ),
        None => println!("  curl or python3 missing: no comparison"),
    }
}

/// How long `curl` takes to fetch `file` from `python3 -m http.server` on loopback.
fn curl(file: &std::path::Path) -> Option<Duration> {
    let port = zonefleet_harness::loopback::free_port().ok()?;
    let mut server = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(file.parent()?)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let url = format!("http://127.0.0.1:{port}/{}", file.file_name()?.to_str()?);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut took = None;
    while Instant::now() < deadline {
        let started = Instant::now();
        let ok = Command::new("curl")
            .args(["-sf", "-o", "/dev/null", &url])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            took = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = server.kill();
    let _ = server.wait();
    took
}
