//! `zfadm token …`: one-time join tokens with which hosts enroll (create, list,
//! revoke). The token is shown once, when made; the controllers keep its sha256 and
//! show only a prefix of it (the token's id).

use std::io::Write;
use std::time::Duration;

use clap::Subcommand;
use zonefleet_proto::cli::Format;
use zonefleet_proto::pb;

use super::connect::Connection;
use super::render::{print_new_token, print_tokens};

/// The longest `--ttl` (30 days, as the controllers allow).
const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// `zfadm token …`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a one-time join token (printed once: give it to the host's agent as
    /// `zonefleet.token=`).
    Create {
        /// How long the token is good for: `90s`, `30m`, `1h`, `7d` (at most 30 days).
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: Duration,
        /// The rack of the host that enrolls with it.
        #[arg(long)]
        rack: Option<String>,
        /// A label of the host that enrolls with it, `key=value` (repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// List the join tokens (ids, racks, labels, expiry, use; never the tokens).
    List,
    /// Revoke a join token so no host can enroll with it.
    Revoke {
        /// The token's id as `zfadm token list` shows it (or a unique prefix of at
        /// least 8 hex digits).
        id: String,
    },
}

/// Parses `90s`, `30m`, `1h`, `7d` (a bare number is seconds).
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30m, 1h or 7d"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit is one of s, m, h, d")),
    };
    let ttl = Duration::from_secs(n.saturating_mul(unit));
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(format!("{s:?} is out of range; allowed 1s to 30d"));
    }
    Ok(ttl)
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

/// Runs a token command.
pub async fn run(
    conn: &Connection,
    output: Format,
    command: TokenCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { ttl, rack, labels } => {
            let request = pb::CreateJoinTokenRequest {
                rack: rack.unwrap_or_default(),
                labels: labels.into_iter().collect(),
                ttl_seconds: ttl.as_secs(),
            };
            let created = conn
                .call(|mut c| {
                    let request = request.clone();
                    async move { c.create_join_token(request).await.map(|r| r.into_inner()) }
                })
                .await?;
            print_new_token(out, output, &created, &request, conn.controllers())
        }
        TokenCommand::List => {
            let tokens = conn
                .call(|mut c| async move {
                    c.list_join_tokens(pb::ListJoinTokensRequest::default())
                        .await
                        .map(|r| r.into_inner().tokens)
                })
                .await?;
            print_tokens(out, output, &tokens)
        }
        TokenCommand::Revoke { id } => {
            let revoked = conn
                .call(|mut c| {
                    let id = id.clone();
                    async move {
                        c.revoke_join_token(pb::RevokeJoinTokenRequest { id })
                            .await
                            .map(|r| r.into_inner())
                    }
                })
                .await?;
            print_tokens(out, output, &[revoked])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("31d").unwrap_err().contains("out of range"));
        assert!(parse_ttl("1w").unwrap_err().contains("unit"));
        assert!(parse_ttl("h").is_err());
    }
}
