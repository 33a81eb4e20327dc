//! Images through the controllers, over the real listeners of an in-process cluster:
//! an upload is checked (size, sha256, format, the configured maximum) and reaches
//! every controller's blob store before its manifest commits; a refused upload leaves
//! nothing on any disk; agents download only the images their host's zones use, from
//! an offset; delete is refused while a zone uses the image and removes the blobs; a
//! controller that was down when an image was imported fetches its blob from a peer.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;
use uuid::Uuid;
use zonefleet_harness::bounded;
use zonefleet_harness::cluster::{test_image_options, Cluster};
use zonefleet_proto::pb;
use zonefleet_proto::pb::import_image_request::Part;
use zonefleet_proto::pb::operator_client::OperatorClient;

use support::*;

const LIMIT: Duration = Duration::from_secs(60);
/// The largest upload the test cluster takes.
const MAX: u64 = 256 * 1024;

/// Bytes that pass the format check (a gzip header), `len` long.
fn archive(len: usize, seed: u8) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0];
    out.extend((0..len - 4).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    out
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn start(name: &str, version: &str, data: &[u8]) -> pb::ImportImageStart {
    pb::ImportImageStart {
        name: name.to_owned(),
        version: version.to_owned(),
        size_bytes: data.len() as u64,
        sha256: sha(data),
        ..Default::default()
    }
}

/// Uploads `chunks` after `start` through `client`.
async fn upload(
    client: &mut OperatorClient<Channel>,
    start: pb::ImportImageStart,
    chunks: Vec<Vec<u8>>,
) -> Result<pb::ImageManifest, tonic::Status> {
    let mut messages = vec![pb::ImportImageRequest {
        part: Some(Part::Start(start)),
    }];
    messages.extend(chunks.into_iter().map(|c| pb::ImportImageRequest {
        part: Some(Part::Chunk(c)),
    }));
    client
        .import_image(tokio_stream::iter(messages))
        .await
        .map(|r| r.into_inner())
}

fn chunks(data: &[u8]) -> Vec<Vec<u8>> {
    data.chunks(64 * 1024).map(<[u8]>::to_vec).collect()
}

/// Every file under each member's `blobs/`, as `c<id>/<sub>/<name>`.
fn blob_files(cluster: &Cluster) -> Vec<String> {
    let mut out = Vec::new();
    for id in cluster.members.keys() {
        let root = cluster.data_dir(*id).join("blobs");
        for sub in ["sha256", "tmp"] {
            let dir = root.join(sub);
            for e in std::fs::read_dir(&dir).unwrap() {
                out.push(format!(
                    "c{id}/{sub}/{}",
                    e.unwrap().file_name().to_string_lossy()
                ));
            }
        }
    }
    out.sort();
    out
}

async fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn holds(dir: &Path, sha256: &str) -> bool {
    dir.join("blobs/sha256").join(sha256).exists()
}

async fn download(
    client: &mut pb::control_client::ControlClient<Channel>,
    host: Uuid,
    image: &str,
    offset: u64,
) -> Result<(Option<pb::ImageManifest>, Vec<u8>), tonic::Status> {
    let mut stream = client
        .download_image(pb::DownloadImageRequest {
            host_id: host.to_string(),
            image: image.to_owned(),
            offset,
        })
        .await?
        .into_inner();
    let mut manifest = None;
    let mut data = Vec::new();
    let mut at = offset;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        assert_eq!(chunk.offset, at, "chunks come in order");
        if manifest.is_none() {
            manifest = chunk.manifest;
        }
        at += chunk.data.len() as u64;
        data.extend(chunk.data);
    }
    Ok((manifest, data))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_checked_and_reach_every_controller_before_they_commit() {
    log();
    bounded(LIMIT, async {
        let cluster = Cluster::start_with_images(
            3,
            zonefleet_controller::blobs::ImageOptions {
                max_bytes: MAX,
                ..test_image_options()
            },
        )
        .await;
        let leader = cluster.leader().await;
        let follower = (1..=3).find(|id| *id != leader).unwrap();
        let mut op = cluster.operator(follower).await;
        let data = archive(200 * 1024, 1);
        let digest = sha(&data);

        // Refusals, each leaving nothing on any controller's disk.
        let refused = [
            // Over the configured maximum: refused at the first message.
            (
                start("big", "1", &archive(MAX as usize + 1, 2)),
                vec![],
                "max_bytes",
            ),
            // More bytes than announced.
            (
                pb::ImportImageStart {
                    size_bytes: 1000,
                    ..start("long", "1", &data)
                },
                chunks(&data),
                "longer than its announced size",
            ),
            // The stream ends early.
            (
                start("short", "1", &data),
                chunks(&data[..100 * 1024]),
                "truncated: it ended after 102400 of 204800 bytes",
            ),
            // Not the announced content.
            (
                pb::ImportImageStart {
                    sha256: "0".repeat(64),
                    ..start("sha", "1", &data)
                },
                chunks(&data),
                "the archive changed or was damaged",
            ),
            // An xz archive no host unpacks.
            (
                start(
                    "xz",
                    "1",
                    &[b"\xfd7zXZ\0".as_slice(), &[0u8; 1000]].concat(),
                ),
                vec![[b"\xfd7zXZ\0".as_slice(), &[0u8; 1000]].concat()],
                "xz compression is not supported",
            ),
            // A bad name.
            (start("-bad", "1", &data), chunks(&data), "name"),
        ];
        for (s, c, expect) in refused {
            let name = s.name.clone();
            let e = upload(&mut op, s, c).await.unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{name}: {e}");
            assert!(e.message().contains(expect), "{name}: {e}");
            assert!(
                blob_files(&cluster).is_empty(),
                "{name}: {:?}",
                blob_files(&cluster)
            );
        }
        // The first message must be the metadata.
        let e = op
            .import_image(tokio_stream::iter(vec![pb::ImportImageRequest {
                part: Some(Part::Chunk(data.clone())),
            }]))
            .await
            .unwrap_err();
        assert!(e.message().contains("first message must be `start`"), "{e}");

        // A good upload through a follower: on every controller when it answers.
        let image = upload(&mut op, start("tiny", "", &data), chunks(&data))
            .await
            .unwrap();
        assert_eq!((image.name.as_str(), image.version.as_str()), ("tiny", "0"));
        assert_eq!(image.sha256, digest);
        for id in 1..=3 {
            assert!(holds(&cluster.data_dir(id), &digest), "controller {id}");
        }
        // The same archive again: the same image, nothing uploaded.
        let again = upload(&mut op, start("tiny", "0", &data), vec![])
            .await
            .unwrap();
        assert_eq!(again.uuid, image.uuid);
        // Other content under the same name@version; the same content under another.
        let other = archive(1000, 9);
        let e = upload(&mut op, start("tiny", "0", &other), chunks(&other))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists, "{e}");
        let e = upload(&mut op, start("copy", "1", &data), chunks(&data))
            .await
            .unwrap_err();
        assert!(e.message().contains("is already image tiny@0"), "{e}");

        // Get by every kind of reference; an unknown one is NOT_FOUND.
        let mut op1 = cluster.operator(leader).await;
        for reference in [
            "tiny",
            "tiny@0",
            &format!("sha256:{}", &digest[..12]),
            &image.uuid,
        ] {
            let got = op1
                .get_image(pb::ImageRef {
                    image: reference.to_owned(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(got.uuid, image.uuid, "{reference}");
        }
        let e = op1
            .get_image(pb::ImageRef {
                image: "nothing".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e}");

        // Agents: host A runs a zone of the image, host B none.
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut agent_a = control_as(&cluster, follower, &agent_cert(&cluster, a)).await;
        let mut agent_b = control_as(&cluster, follower, &agent_cert(&cluster, b)).await;
        register(&mut agent_a, a).await;
        let e = download(&mut agent_a, a, "tiny", 0).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "no zone yet: {e}");
        let mut spec = zonefleet_harness::fixtures::spec("web");
        spec.image = "tiny".into();
        let created = op1
            .create_zones(zonefleet_harness::fixtures::create(spec, 1))
            .await
            .unwrap()
            .into_inner();
        let zone = created.zones[0].clone();
        assert_eq!(zone.host_id, a.to_string());

        let (manifest, got) = download(&mut agent_a, a, "tiny", 0).await.unwrap();
        assert_eq!(manifest.unwrap(), image);
        assert_eq!(got, data);
        // Resumed from an offset: the rest.
        let (_, tail) = download(&mut agent_a, a, &format!("sha256:{digest}"), 150_000)
            .await
            .unwrap();
        assert_eq!(tail, data[150_000..]);
        let e = download(&mut agent_a, a, "tiny", data.len() as u64 + 1)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::OutOfRange, "{e}");
        let e = download(&mut agent_a, a, "nothing", 0).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e}");
        // Host B's agent: not its zone's image, nor for host A.
        let e = download(&mut agent_b, b, "tiny", 0).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e}");
        assert!(e.message().contains("no zone assigned to host"), "{e}");
        let e = download(&mut agent_b, a, "tiny", 0).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e}");
        // An operator may not download at all.
        let mut as_operator = control_as(&cluster, follower, &cluster.operator_cert()).await;
        let e = download(&mut as_operator, a, "tiny", 0).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e}");

        // Delete: refused while the zone is there, naming it; then the blobs go.
        let e = op1
            .delete_image(pb::ImageRef {
                image: "tiny".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
        assert!(
            e.message().contains(&uuid_of(&zone)) && e.message().contains("(web)"),
            "{e}"
        );
        op1.delete_zone(pb::ZoneRef {
            zone: uuid_of(&zone),
        })
        .await
        .unwrap();
        let deleted = op1
            .delete_image(pb::ImageRef {
                image: "tiny".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(deleted.uuid, image.uuid);
        assert!(
            !holds(&cluster.data_dir(leader), &digest),
            "the deleting controller keeps it"
        );
        wait_for("every blob removed", Duration::from_secs(10), || {
            blob_files(&cluster).is_empty()
        })
        .await;
        let listed = op1
            .list_images(pb::ListImagesRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(listed.images.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_that_missed_an_upload_fetches_the_blob_from_a_peer() {
    log();
    bounded(LIMIT, async {
        let mut cluster = Cluster::start(3).await;
        let leader = cluster.leader().await;
        let down = (1..=3).find(|id| *id != leader).unwrap();
        let addr = cluster.members[&down].addr;
        drop(cluster.kill(down).await);

        // Two of three voters hold it: a majority, so it commits.
        let data = archive(3 * 1024 * 1024 + 17, 5);
        let digest = sha(&data);
        let mut op = cluster.operator(leader).await;
        let image = upload(&mut op, start("late", "1", &data), chunks(&data))
            .await
            .unwrap();
        assert!(!holds(&cluster.data_dir(down), &digest));

        cluster.restart(down, addr).await;
        let dir = cluster.data_dir(down);
        wait_for(
            "the restarted controller fetches the blob",
            Duration::from_secs(20),
            || holds(&dir, &digest),
        )
        .await;
        let held = std::fs::read(dir.join("blobs/sha256").join(&digest)).unwrap();
        assert_eq!(held.len(), data.len());
        assert_eq!(sha(&held), image.sha256);
    })
    .await;
}
