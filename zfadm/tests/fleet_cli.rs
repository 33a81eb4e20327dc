//! Runs the real `zfadm` binary against an in-process cluster: `fleet settings` shows
//! the mass-loss share (the default until set), `fleet set --mass-loss-percent` changes
//! it and only it, a value out of range is refused naming the setting and changes
//! nothing, and `fleet status` / `fleet resume` show and lift the rescheduling pause.

mod support;
use support::text;

use std::time::Duration;

use zonefleet_harness::bounded;
use zonefleet_harness::cluster::Cluster;
use zonefleet_proto::pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_settings_and_the_pause_through_the_cli() {
    bounded(Duration::from_secs(60), async {
        let cluster = Cluster::start(1).await;
        cluster.leader().await;
        let admin = support::Admin::new(&cluster);
        let json = |out: std::process::Output| -> serde_json::Value {
            assert!(out.status.success(), "{}", text(&out.stderr));
            serde_json::from_slice(&out.stdout).unwrap()
        };

        let shown = json(admin.zfadm(&["fleet", "settings", "-o", "json"]).await);
        assert_eq!(shown["mass_loss_percent"], pb::DEFAULT_MASS_LOSS_PERCENT);
        // Another setting, set beforehand, must survive the change.
        let mut op = cluster.operator(1).await;
        op.set_fleet_settings(pb::FleetSettings {
            ram_ratio_percent: Some(150),
            ..Default::default()
        })
        .await
        .unwrap();
        let set = json(
            admin
                .zfadm(&["fleet", "set", "--mass-loss-percent", "30", "-o", "json"])
                .await,
        );
        assert_eq!(set["mass_loss_percent"], 30);
        let stored = op
            .get_fleet_settings(pb::GetFleetSettingsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(stored.mass_loss_percent, Some(30));
        assert_eq!(stored.ram_ratio_percent, Some(150));

        for bad in ["0", "101"] {
            let out = admin
                .zfadm(&["fleet", "set", "--mass-loss-percent", bad])
                .await;
            assert!(!out.status.success());
            let err = text(&out.stderr);
            assert!(
                err.contains("mass_loss_percent") && err.contains(bad),
                "{err}"
            );
        }
        let kept = json(admin.zfadm(&["fleet", "settings", "-o", "json"]).await);
        assert_eq!(kept["mass_loss_percent"], 30);

        // No loss: not paused; a resume says it was resumed by an operator.
        let status = json(admin.zfadm(&["fleet", "status", "-o", "json"]).await);
        assert_eq!(status["paused"], false);
        let resumed = json(admin.zfadm(&["fleet", "resume", "-o", "json"]).await);
        assert_eq!(resumed["paused"], false);
        assert_eq!(resumed["overridden"], true);
        assert!(resumed["reason"].as_str().unwrap().contains("operator"));
    })
    .await;
}
