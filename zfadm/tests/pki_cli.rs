//! Runs the real `zfadm` binary: `pki init`, `pki issue`, refusals, `--help`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use rustls::pki_types::UnixTime;
use rustls::server::danger::ClientCertVerifier;
use uuid::Uuid;
use zonefleet_proto::auth::{Role, RoleKind};
use zonefleet_proto::pki::{identity_from_cert_der, FleetCa, OperatorRole};
use zonefleet_proto::tls::{load_certs, server_config, CertKey, FleetClientVerifier, FleetTrust};

fn zfadm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zfadm"))
        .args(args)
        .output()
        .expect("run zfadm")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every file under `dir` (by path relative to it) with its contents and mode.
fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_dir() {
            for (inner, file) in snapshot(&entry.path()) {
                files.insert(format!("{name}/{inner}"), file);
            }
            continue;
        }
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        files.insert(name, (std::fs::read(entry.path()).unwrap(), mode));
    }
    files
}

/// How long a certificate file's leaf lives, from its notBefore to its notAfter.
fn lifetime_of(path: &Path) -> time::Duration {
    let certs = load_certs(path).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&certs[0]).unwrap();
    let validity = cert.validity();
    validity.not_after.to_datetime() - validity.not_before.to_datetime()
}

fn identity_of(path: &Path) -> String {
    let certs = load_certs(path).unwrap();
    identity_from_cert_der(&certs[0]).unwrap().to_string()
}

fn init(out: &Path, extra: &[&str]) -> Output {
    let out = out.to_str().unwrap();
    let mut args = vec![
        "pki",
        "init",
        "--cluster",
        "prod",
        "--out",
        out,
        "--controller",
        "c1=127.0.0.1:7000",
        "--controller",
        "c2=ctl2.example.net:7000",
    ];
    args.extend_from_slice(extra);
    zfadm(&args)
}

#[test]
fn init_writes_the_ca_controllers_and_operator() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let run = init(&dir, &[]);
    let stdout = text(&run.stdout);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(!stdout.contains("PRIVATE KEY"), "{stdout}");

    let files = snapshot(&dir);
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "ca.crt",
            "controller-c1.crt",
            "controller-c1.key",
            "controller-c2.crt",
            "controller-c2.key",
            "offline/root-ca.key",
            "operator-admin.crt",
            "operator-admin.key",
            "signing-ca.crt",
            "signing-ca.key",
        ]
    );
    // The root key is apart, and init says what to do with it.
    assert!(stdout.contains("move it off this machine"), "{stdout}");
    let root_key = &files["offline/root-ca.key"].0;
    for (name, (contents, _)) in &files {
        if name != "offline/root-ca.key" {
            assert_ne!(contents, root_key, "{name} holds the root key");
        }
    }
    assert_eq!(
        std::fs::metadata(dir.join("offline"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    for (name, (contents, mode)) in &files {
        if name.ends_with(".key") {
            assert_eq!(*mode, 0o600, "{name}");
            assert!(text(contents).contains("PRIVATE KEY"), "{name}");
            assert!(!stdout.contains(&text(contents)), "{name} printed");
        } else {
            assert_eq!(*mode & 0o077, 0o044, "{name}");
        }
        assert!(
            stdout.contains(name.as_str()),
            "{name} not reported: {stdout}"
        );
        // Each leaf presents itself with the signing CA after it.
        if name.starts_with("controller-") && name.ends_with(".crt")
            || name.starts_with("operator-") && name.ends_with(".crt")
        {
            let presented = [&files["signing-ca.crt"].0[..], &files["ca.crt"].0[..]].concat();
            assert!(text(contents).ends_with(&text(&presented)), "{name}");
        }
    }
    // Leaves live the default 90 days (and the backdating), not years.
    for name in ["controller-c1.crt", "operator-admin.crt"] {
        let life = lifetime_of(&dir.join(name));
        assert_eq!(
            life,
            time::Duration::days(90) + time::Duration::minutes(5),
            "{name}"
        );
    }
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );

    assert_eq!(
        identity_of(&dir.join("controller-c1.crt")),
        "zonefleet://prod/controller/c1"
    );
    assert_eq!(
        identity_of(&dir.join("controller-c2.crt")),
        "zonefleet://prod/controller/c2"
    );
    assert_eq!(
        identity_of(&dir.join("operator-admin.crt")),
        "zonefleet://prod/operator/admin"
    );

    // The printed fingerprint is the root's; the signing CA loads under it, and the
    // root from its offline key.
    let ca = FleetCa::load_dir(&dir).unwrap();
    assert_eq!(ca.cluster(), "prod");
    assert!(!ca.is_root());
    assert!(
        stdout.contains(&format!("CA fingerprint: {}", ca.fingerprint())),
        "{stdout}"
    );
    let root = FleetCa::load_root(&dir.join("ca.crt"), &dir.join("offline/root-ca.key")).unwrap();
    assert_eq!(root.fingerprint(), ca.fingerprint());

    // The controller's files make a working server config of this fleet.
    let trust = FleetTrust::load("prod", &dir.join("ca.crt")).unwrap();
    let own = CertKey::load(
        &dir.join("controller-c1.crt"),
        &dir.join("controller-c1.key"),
    )
    .unwrap();
    server_config(&trust, &own).unwrap();
}

#[test]
fn init_again_without_force_fails_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    assert!(init(&dir, &[]).status.success());
    let before = snapshot(&dir);

    let again = init(&dir, &["--operator", "bob"]);
    assert!(!again.status.success());
    let stderr = text(&again.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(snapshot(&dir), before, "a refused run changed files");

    // With --force everything is new, and keys are still 0600.
    let forced = init(&dir, &["--force"]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    let after = snapshot(&dir);
    assert_ne!(after["ca.crt"], before["ca.crt"]);
    assert_eq!(after["offline/root-ca.key"].1, 0o600);
    assert_eq!(after["signing-ca.key"].1, 0o600);
}

#[test]
fn bad_input_is_refused_naming_the_value() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x");
    let out = out.to_str().unwrap();
    let init = |extra: &[&'static str]| {
        let mut args = vec!["pki", "init", "--out", out];
        args.extend_from_slice(extra);
        args
    };
    for (args, named) in [
        (
            init(&["--cluster", "../x", "--controller", "c1=10.0.0.1:7000"]),
            "../x",
        ),
        (init(&["--cluster", "prod", "--controller", "nope"]), "nope"),
        (
            init(&["--cluster", "prod", "--controller", "c1=10.0.0.1:99999"]),
            "c1=10.0.0.1:99999",
        ),
        (
            init(&[
                "--cluster",
                "prod",
                "--controller",
                "c1=10.0.0.1:7000",
                "--operator",
                "../root",
            ]),
            "../root",
        ),
        (
            init(&[
                "--cluster",
                "prod",
                "--controller",
                "c1=10.0.0.1:7000",
                "--days",
                "0",
            ]),
            "--days 0",
        ),
        (
            vec!["pki", "issue", "--ca-dir", out, "--agent", "not-a-uuid"],
            "not-a-uuid",
        ),
    ] {
        let run = zfadm(&args);
        let stderr = text(&run.stderr);
        assert!(!run.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
    assert!(!tmp.path().join("x").exists(), "a refused run left files");

    // A missing CA names the file.
    let run = zfadm(&["pki", "issue", "--ca-dir", out, "--operator", "bob"]);
    assert!(!run.status.success());
    assert!(
        text(&run.stderr).contains("ca.crt"),
        "{}",
        text(&run.stderr)
    );

    // Exactly one kind of certificate.
    let host = Uuid::new_v4().to_string();
    let run = zfadm(&[
        "pki",
        "issue",
        "--ca-dir",
        out,
        "--operator",
        "bob",
        "--agent",
        &host,
    ]);
    assert!(!run.status.success());
    let run = zfadm(&["pki", "issue", "--ca-dir", out]);
    assert!(!run.status.success());
}

#[test]
fn issue_agent_makes_a_certificate_the_tls_layer_maps_to_the_agent_role() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let ca_dir = dir.to_str().unwrap();
    assert!(init(&dir, &[]).status.success());
    let host = Uuid::new_v4();
    let host_text = host.to_string();
    let out = tmp.path().join("agents");
    let out_text = out.to_str().unwrap();
    let run = zfadm(&[
        "pki", "issue", "--ca-dir", ca_dir, "--agent", &host_text, "--days", "7", "--out", out_text,
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(!text(&run.stdout).contains("PRIVATE KEY"));
    let cert = out.join(format!("agent-{host}.crt"));
    let key = out.join(format!("agent-{host}.key"));
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let der = &load_certs(&cert).unwrap()[0];
    assert_eq!(Role::from_cert_der("prod", der).unwrap(), Role::Agent(host));

    // Issuing the same again refuses; other kinds work from the same CA.
    let again = zfadm(&[
        "pki", "issue", "--ca-dir", ca_dir, "--agent", &host_text, "--out", out_text,
    ]);
    assert!(!again.status.success());
    let op = zfadm(&["pki", "issue", "--ca-dir", ca_dir, "--operator", "alice"]);
    assert!(op.status.success(), "{}", text(&op.stderr));
    let five_minutes = time::Duration::minutes(5);
    assert_eq!(
        lifetime_of(&dir.join("operator-alice.crt")),
        time::Duration::days(90) + five_minutes
    );
    let der = &load_certs(&dir.join("operator-alice.crt")).unwrap()[0];
    assert_eq!(
        Role::from_cert_der("prod", der).unwrap(),
        Role::Operator {
            name: "alice".into(),
            role: OperatorRole::Admin
        }
    );
    // A viewer gets its own identity form and files; --role needs --operator.
    let viewer = zfadm(&[
        "pki",
        "issue",
        "--ca-dir",
        ca_dir,
        "--operator",
        "alice",
        "--role",
        "viewer",
    ]);
    assert!(viewer.status.success(), "{}", text(&viewer.stderr));
    assert_eq!(
        identity_of(&dir.join("viewer-alice.crt")),
        "zonefleet://prod/operator/viewer/alice"
    );
    let der = &load_certs(&dir.join("viewer-alice.crt")).unwrap()[0];
    assert_eq!(
        Role::from_cert_der("prod", der).unwrap().kind(),
        RoleKind::Viewer
    );
    for bad in [
        &["--operator", "carol", "--role", "root"][..],
        &["--agent", &host_text, "--role", "viewer", "--out", out_text],
    ] {
        let run = zfadm(&[&["pki", "issue", "--ca-dir", ca_dir][..], bad].concat());
        assert!(!run.status.success(), "{bad:?} accepted");
    }
    // `pki init`'s operator is an admin, in the form certificates always had.
    assert_eq!(
        identity_of(&dir.join("operator-admin.crt")),
        "zonefleet://prod/operator/admin"
    );
    let ctl = zfadm(&[
        "pki",
        "issue",
        "--ca-dir",
        ca_dir,
        "--controller",
        "c3=10.0.0.3:7000",
    ]);
    assert!(ctl.status.success(), "{}", text(&ctl.stderr));
    assert_eq!(
        identity_of(&dir.join("controller-c3.crt")),
        "zonefleet://prod/controller/c3"
    );
}

#[test]
fn help_version_and_completions() {
    let help = zfadm(&["--help"]);
    assert!(help.status.success());
    assert!(text(&help.stdout).contains("pki"));
    let help = zfadm(&["pki", "init", "--help"]);
    assert!(help.status.success());
    assert!(text(&help.stdout).contains("--controller <ID=HOST:PORT>"));
    let version = zfadm(&["--version"]);
    assert!(version.status.success());
    assert!(text(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
    let completions = zfadm(&["completions", "bash"]);
    assert!(completions.status.success());
    assert!(text(&completions.stdout).contains("zfadm"));
    assert!(!zfadm(&[]).status.success());
}

#[test]
fn a_key_readable_by_others_is_refused_naming_it_and_its_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let ca_dir = dir.to_str().unwrap();
    assert!(init(&dir, &[]).status.success());
    let loosen = |name: &str| {
        let path = dir.join(name);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        path
    };
    let assert_refused = |out: &Output, key: &Path| {
        assert!(!out.status.success());
        let stderr = text(&out.stderr);
        assert!(stderr.contains(&key.display().to_string()), "{stderr}");
        assert!(stderr.contains("0644"), "{stderr}");
    };

    // The signing CA key, by `pki issue`.
    let ca_key = loosen("signing-ca.key");
    let issue = zfadm(&["pki", "issue", "--ca-dir", ca_dir, "--operator", "alice"]);
    assert_refused(&issue, &ca_key);
    assert!(!dir.join("operator-alice.crt").exists());

    // An operator key, before any controller is dialled.
    let op_key = loosen("operator-admin.key");
    let ca = dir.join("ca.crt");
    let cert = dir.join("operator-admin.crt");
    let status = zfadm(&[
        "--controllers",
        "127.0.0.1:1",
        "--ca",
        ca.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        op_key.to_str().unwrap(),
        "cluster",
        "status",
    ]);
    assert_refused(&status, &op_key);
}

#[test]
fn lifetimes_are_capped_per_kind_and_default_per_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let ca_dir = dir.to_str().unwrap();
    assert!(init(&dir, &[]).status.success());
    let host = Uuid::new_v4().to_string();
    let five_minutes = time::Duration::minutes(5);

    // An agent: 24 hours unless asked, never more than 7 days.
    let run = zfadm(&["pki", "issue", "--ca-dir", ca_dir, "--agent", &host]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(
        lifetime_of(&dir.join(format!("agent-{host}.crt"))),
        time::Duration::hours(24) + five_minutes
    );
    let before = snapshot(&dir);
    for (args, names) in [
        (
            vec!["--agent", host.as_str(), "--days", "8", "--force"],
            "agent certificates live at most 7 days; 8 days asked",
        ),
        (
            vec!["--operator", "carol", "--days", "366"],
            "operator certificates live at most 365 days; 366 days asked",
        ),
        (
            vec!["--controller", "c9=10.0.0.9:7000", "--days", "400"],
            "controller certificates live at most 365 days",
        ),
    ] {
        let run = zfadm(&[&["pki", "issue", "--ca-dir", ca_dir][..], &args].concat());
        assert!(!run.status.success(), "{args:?} accepted");
        assert!(
            text(&run.stderr).contains(names),
            "{args:?}: {}",
            text(&run.stderr)
        );
    }
    assert_eq!(snapshot(&dir), before, "a refused issue changed files");
    let run = init(&tmp.path().join("other"), &["--days", "366"]);
    assert!(!run.status.success());
    assert!(
        text(&run.stderr).contains("at most 365 days"),
        "{}",
        text(&run.stderr)
    );
    assert!(
        !tmp.path().join("other").exists(),
        "a refused init left files"
    );
}

#[test]
fn rotating_the_signing_ca_needs_the_root_key_and_keeps_old_leaves_valid() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let ca_dir = dir.to_str().unwrap();
    assert!(init(&dir, &[]).status.success());
    // The root key moved offline, as init says.
    let offline = tmp.path().join("usb-stick");
    std::fs::create_dir(&offline).unwrap();
    let root_key = offline.join("root-ca.key");
    std::fs::rename(dir.join("offline/root-ca.key"), &root_key).unwrap();
    let before = snapshot(&dir);

    // Another fleet's root key is refused, changing nothing.
    let other = tmp.path().join("other");
    assert!(init(&other, &[]).status.success());
    let other_key = other.join("offline/root-ca.key");
    let run = zfadm(&[
        "pki",
        "rotate-signing-ca",
        "--ca-dir",
        ca_dir,
        "--root-key",
        other_key.to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    assert!(
        text(&run.stderr).contains("does not match"),
        "{}",
        text(&run.stderr)
    );
    assert_eq!(snapshot(&dir), before);

    let run = zfadm(&[
        "pki",
        "rotate-signing-ca",
        "--ca-dir",
        ca_dir,
        "--root-key",
        root_key.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let after = snapshot(&dir);
    assert_ne!(after["signing-ca.crt"], before["signing-ca.crt"]);
    assert_eq!(after["signing-ca.key"].1, 0o600);
    assert_eq!(after["ca.crt"], before["ca.crt"], "the root stays");

    // A leaf of the new signing CA and one of the old both serve with root-only trust.
    let issue = zfadm(&["pki", "issue", "--ca-dir", ca_dir, "--operator", "alice"]);
    assert!(issue.status.success(), "{}", text(&issue.stderr));
    let trust = FleetTrust::load("prod", &dir.join("ca.crt")).unwrap();
    let new_leaf = load_certs(&dir.join("operator-alice.crt")).unwrap();
    assert_eq!(
        new_leaf[1].as_ref(),
        load_certs(&dir.join("signing-ca.crt")).unwrap()[0].as_ref()
    );
    let old = load_certs(&dir.join("controller-c1.crt")).unwrap();
    assert_ne!(
        old[1].as_ref(),
        new_leaf[1].as_ref(),
        "old leaf, old signing CA"
    );
    let verifier = FleetClientVerifier::new(&trust).unwrap();
    for chain in [&new_leaf, &old] {
        verifier
            .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
            .unwrap();
    }
    // The other fleet's leaves do not chain to this root.
    let foreign = load_certs(&other.join("operator-admin.crt")).unwrap();
    assert!(verifier
        .verify_client_cert(&foreign[0], &foreign[1..], UnixTime::now())
        .is_err());
}
