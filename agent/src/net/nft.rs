//! zonefleet's nftables rules, driven through the `nft` command (`nft -f -`,
//! one atomic transaction per call). No well-kept pure-Rust crate writes
//! nf_tables rules (the `nftables` crate itself shells out to `nft` with JSON);
//! nft's text syntax is what an operator reads in `nft list ruleset`, so the
//! generated scripts are exactly what `docs/networking.md` shows.
//!
//! Everything lives in two tables of zonefleet's own:
//! - `table bridge zonefleet`: a verdict map `ports` (host-end ifname → jump
//!   to that NIC's chain) consulted by one base chain on the bridge
//!   `prerouting` hook, and one chain per NIC, `z_<uuid hex>_n<i>`, holding its
//!   anti-spoofing rules. Adding or removing a zone touches only its map
//!   elements and its chains.
//! - `table inet zonefleet`: per bridge, `in_<bridge>` (hook input) and
//!   `fwd_<bridge>` (hook forward): zones reach the host only with ICMP and
//!   replies to connections the host opened, and the host does not route for
//!   zones.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::plan::{link_local, NetPlan, NicPlan};
use super::NetError;

/// The name of zonefleet's tables (family `bridge` and `inet`).
pub const TABLE: &str = "zonefleet";

/// The `nft` binary, if installed.
pub fn binary() -> Option<PathBuf> {
    ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft", "/bin/nft"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Runs `script` as one nft transaction.
pub fn run(script: &str) -> Result<(), NetError> {
    let nft = binary().ok_or_else(|| {
        NetError::Nft("the nft command is not installed (Debian package nftables)".into())
    })?;
    run_with(&nft, script)
}

fn run_with(nft: &Path, script: &str) -> Result<(), NetError> {
    let mut child = Command::new(nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetError::Nft(format!("start {}: {e}", nft.display())))?;
    let write = child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(script.as_bytes());
    let out = child
        .wait_with_output()
        .map_err(|e| NetError::Nft(format!("wait for nft: {e}")))?;
    if !out.status.success() {
        return Err(NetError::Nft(format!(
            "nft -f - failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    write.map_err(|e| NetError::Nft(format!("write to nft: {e}")))
}

/// The part of a name nft accepts as an identifier.
fn ident(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The chain of NIC `index` of zone `uuid`.
pub fn nic_chain(uuid: &str, index: usize) -> String {
    format!("z_{}_n{index}", ident(&uuid.replace('-', "")))
}

/// Declarations every script starts with (idempotent `add`s).
fn bridge_table() -> String {
    format!(
        "add table bridge {TABLE}\n\
         add map bridge {TABLE} ports {{ type ifname : verdict; }}\n\
         add chain bridge {TABLE} prerouting {{ type filter hook prerouting priority -200; policy accept; }}\n\
         flush chain bridge {TABLE} prerouting\n\
         add rule bridge {TABLE} prerouting iifname vmap @ports\n"
    )
}

/// The anti-spoofing rules of one NIC (empty when both spoofing flags are set).
pub fn nic_rules(nic: &NicPlan) -> Vec<String> {
    let mut rules = Vec::new();
    let mac = nic.mac.to_string();
    if !nic.allow_mac_spoofing {
        rules.push(format!("ether saddr != {mac} drop"));
        rules.push(format!("arp saddr ether != {mac} drop"));
    }
    if !nic.allow_ip_spoofing {
        // Tagged frames would carry whatever the zone likes past these rules.
        rules.push("ether type { 8021q, 8021ad } drop".to_string());
        match nic.ip.addr() {
            IpAddr::V4(a) => {
                rules.push(format!("arp saddr ip != {a} drop"));
                rules.push(format!("ip saddr != {a} drop"));
            }
            IpAddr::V6(_) => rules.push("ether type { ip, arp } drop".to_string()),
        }
        // IPv6: the NIC's own address, its link-local (EUI-64 of its MAC, any
        // link-local if the MAC may change) and :: (duplicate address detection).
        let mut v6 = vec!["::".to_string()];
        if nic.allow_mac_spoofing {
            v6.push("fe80::/64".to_string());
        } else {
            v6.push(link_local(&nic.mac).to_string());
        }
        if let IpAddr::V6(a) = nic.ip.addr() {
            v6.push(a.to_string());
        }
        rules.push(format!("ip6 saddr != {{ {} }} drop", v6.join(", ")));
        rules.push("ether type != { ip, ip6, arp } drop".to_string());
    }
    rules
}

/// The script that installs zone `plan`'s chains and map elements (after
/// removing any left from an earlier boot).
pub fn add_zone_script(plan: &NetPlan) -> String {
    let mut s = remove_zone_script(plan);
    for nic in &plan.nics {
        let chain = nic_chain(&plan.uuid, nic.index);
        s.push_str(&format!(
            "add chain bridge {TABLE} {chain} {{ comment \"zone {} nic {} ({})\"; }}\n",
            plan.uuid, nic.index, nic.host_if
        ));
        for rule in nic_rules(nic) {
            s.push_str(&format!("add rule bridge {TABLE} {chain} {rule}\n"));
        }
        s.push_str(&format!(
            "add element bridge {TABLE} ports {{ \"{}\" : jump {chain} }}\n",
            nic.host_if
        ));
    }
    s
}

/// The script that removes zone `plan`'s elements and chains; succeeds
/// whether or not they exist (each is added, then deleted, in one transaction).
pub fn remove_zone_script(plan: &NetPlan) -> String {
    let mut s = bridge_table();
    for nic in &plan.nics {
        let chain = nic_chain(&plan.uuid, nic.index);
        s.push_str(&format!(
            "add chain bridge {TABLE} {chain}\n\
             flush chain bridge {TABLE} {chain}\n\
             add element bridge {TABLE} ports {{ \"{host}\" : jump {chain} }}\n\
             delete element bridge {TABLE} ports {{ \"{host}\" }}\n\
             delete chain bridge {TABLE} {chain}\n",
            host = nic.host_if
        ));
    }
    s
}

/// Installs zone `plan`'s rules, and (re)asserts its bridge's host rules in
/// the same transaction: one `nft` run per boot.
pub fn add_zone(plan: &NetPlan) -> Result<(), NetError> {
    run(&format!(
        "{}{}",
        add_host_script(&plan.bridge),
        add_zone_script(plan)
    ))
}

/// Removes zone `plan`'s rules (idempotent).
pub fn remove_zone(plan: &NetPlan) -> Result<(), NetError> {
    run(&remove_zone_script(plan))
}

fn host_chains(bridge: &str) -> (String, String) {
    (
        format!("in_{}", ident(bridge)),
        format!("fwd_{}", ident(bridge)),
    )
}

/// The rules that keep zones on `bridge` off the host: from the bridge, the
/// host accepts only replies and ICMP, and routes nothing.
pub fn add_host_script(bridge: &str) -> String {
    let (input, forward) = host_chains(bridge);
    format!(
        "add table inet {TABLE}\n\
         add chain inet {TABLE} {input} {{ type filter hook input priority 0; policy accept; }}\n\
         flush chain inet {TABLE} {input}\n\
         add rule inet {TABLE} {input} iifname \"{bridge}\" ct state established,related accept\n\
         add rule inet {TABLE} {input} iifname \"{bridge}\" meta l4proto {{ icmp, ipv6-icmp }} accept\n\
         add rule inet {TABLE} {input} iifname \"{bridge}\" drop\n\
         add chain inet {TABLE} {forward} {{ type filter hook forward priority 0; policy accept; }}\n\
         flush chain inet {TABLE} {forward}\n\
         add rule inet {TABLE} {forward} iifname \"{bridge}\" oifname \"{bridge}\" accept\n\
         add rule inet {TABLE} {forward} iifname \"{bridge}\" drop\n\
         add rule inet {TABLE} {forward} oifname \"{bridge}\" drop\n"
    )
}

/// Removes `bridge`'s host rules (idempotent).
pub fn remove_host_script(bridge: &str) -> String {
    let (input, forward) = host_chains(bridge);
    format!(
        "add table inet {TABLE}\n\
         add chain inet {TABLE} {input}\n\
         delete chain inet {TABLE} {input}\n\
         add chain inet {TABLE} {forward}\n\
         delete chain inet {TABLE} {forward}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::plan::{derived_mac, NicPlan};

    fn nic(ip: &str, ip_spoof: bool, mac_spoof: bool) -> NicPlan {
        NicPlan {
            index: 0,
            host_if: "zf1b4e28ba2fn0".into(),
            zone_if: "eth0".into(),
            mac: derived_mac("u", 0),
            ip: ip.parse().unwrap(),
            gateway: None,
            mtu: 1500,
            primary: true,
            allow_ip_spoofing: ip_spoof,
            allow_mac_spoofing: mac_spoof,
        }
    }

    #[test]
    fn rules_follow_the_spoofing_flags() {
        let strict = nic_rules(&nic("10.99.0.5/24", false, false)).join("\n");
        assert!(strict.contains("ip saddr != 10.99.0.5 drop"), "{strict}");
        assert!(strict.contains("ether saddr != 02:"), "{strict}");
        let ip_free = nic_rules(&nic("10.99.0.5/24", true, false)).join("\n");
        assert!(!ip_free.contains("ip saddr") && ip_free.contains("ether saddr"));
        assert!(nic_rules(&nic("10.99.0.5/24", true, true)).is_empty());
    }

    #[test]
    fn removal_is_exact_and_idempotent() {
        let plan = NetPlan {
            uuid: "1b4e28ba-2fa1-41d2-883f-0016d3cca427".into(),
            bridge: "zfbr0".into(),
            nics: vec![nic("10.99.0.5/24", false, false)],
        };
        let s = remove_zone_script(&plan);
        assert!(s.contains("delete chain bridge zonefleet z_1b4e28ba2fa141d2883f0016d3cca427_n0"));
        assert!(s.contains("delete element bridge zonefleet ports { \"zf1b4e28ba2fn0\" }"));
    }

    /// Runs `script` then `nft list ruleset` in a throwaway network namespace.
    fn in_netns(script: &str) -> Result<String, String> {
        let script = format!("{script}\n");
        let out = Command::new("unshare")
            .args(["--net", "sh", "-c", "nft -f - && nft list ruleset"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(script.as_bytes())?;
                c.wait_with_output()
            })
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    #[test]
    fn nft_accepts_the_scripts_and_removal_leaves_nothing() {
        let test = "nft_accepts_the_scripts_and_removal_leaves_nothing";
        if !crate::test_skip::privileged(test)
            || !crate::test_skip::require(test, "the nft command", binary().is_some())
        {
            return;
        }
        let plan = NetPlan {
            uuid: "1b4e28ba-2fa1-41d2-883f-0016d3cca427".into(),
            bridge: "zft-br".into(),
            nics: vec![
                nic("10.99.0.5/24", false, false),
                NicPlan {
                    index: 1,
                    host_if: "zf1b4e28ba2fn1".into(),
                    ip: "fd00::5/64".parse().unwrap(),
                    ..nic("10.99.0.5/24", false, true)
                },
            ],
        };
        let added = in_netns(&format!(
            "{}{}",
            add_host_script("zft-br"),
            add_zone_script(&plan)
        ))
        .unwrap();
        assert!(
            added.contains("z_1b4e28ba2fa141d2883f0016d3cca427_n1"),
            "{added}"
        );
        assert!(added.contains("ip saddr != 10.99.0.5 drop"), "{added}");
        // Removing twice (idempotent) leaves the tables with no zone or bridge chain.
        let removed = in_netns(&format!(
            "{}{}{}{}{}",
            add_host_script("zft-br"),
            add_zone_script(&plan),
            remove_zone_script(&plan),
            remove_zone_script(&plan),
            remove_host_script("zft-br")
        ))
        .unwrap();
        assert!(!removed.contains("z_1b4e"), "{removed}");
        assert!(!removed.contains("zf1b4e28ba2f"), "{removed}");
        assert!(!removed.contains("in_zft_br"), "{removed}");
    }
}
