//! The scheduler: a pure function from (fleet view, zone spec) to a host or a refusal
//! that says why, counted per reason. No I/O, no clock, no randomness; ties are
//! broken by `host_id`.
//!
//! # Where placement happens: in the state machine's apply
//!
//! Every controller runs the scheduler while applying a `CreateZones` (or
//! `RescheduleZone`) log entry, against the state as of that entry. The leader does
//! not decide ahead of the log: concurrent creates are serialized by the log, and
//! each one is decided against the state every earlier one left, so a host can never
//! be committed past its capacity, nor a group past its spread limit, whatever the
//! interleaving of clients and controllers. Because the decision is a deterministic
//! function of the replicated state (and of nothing else: no hash order, no floating
//! point, no clock), every replica reaches the same placement; a replica that
//! rebuilt its state from a snapshot builds the same [`FleetView`] and decides the
//! same way. The price is that every replica spends the decision time (microseconds;
//! see `docs/scheduler.md`), which is far less than a leader-computes-then-recheck
//! design would spend on retries under contention.
//!
//! * [`snapshot`]: the [`FleetView`] decided from, maintained incrementally.
//! * [`filters`]: the filters, in their fixed order.
//! * [`score`]: ordering the hosts that pass.
//! * [`explain`]: refusal counts per reason.
//! * [`ipam`]: network addresses.
//!
//! Decisions take a fast path when only hard rules apply: the ready hosts are kept
//! ordered by free memory, so `binpack` walks up from the smallest host that fits
//! and `spread` down from the emptiest, and the first host that passes every filter
//! is the best one. Soft rules, `near` rules, dry runs (which show the top scores)
//! and refusals (which count every host) scan every host.

pub mod explain;
pub mod filters;
pub mod ipam;
pub mod score;
pub mod snapshot;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use zonefleet_proto::spec::{ImageRef, Placement};
use zonefleet_proto::{image, pb};

use explain::Counts;
use filters::{required_features, Rules};
use score::Key;
pub use snapshot::FleetView;

/// What the scheduler reads besides the view.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// Zones by uuid (uuid affinity targets).
    pub zones: &'a BTreeMap<String, pb::Zone>,
    /// Networks by uuid (VLAN networks need a host feature).
    pub networks: &'a BTreeMap<String, pb::Network>,
    /// Images by uuid (their minimum RAM).
    pub images: &'a BTreeMap<String, pb::ImageManifest>,
}

/// One zone's decision.
#[derive(Debug, Clone)]
pub struct Choice {
    /// The chosen host's slot.
    pub slot: u32,
    /// Its key.
    pub key: Key,
    /// The best hosts with their keys, best first (when asked for).
    pub top: Vec<(u32, Key)>,
}

/// The image `reference` names, if the fleet knows it, by the fleet's one rule
/// (`docs/images.md`): a name without a version is its highest version.
pub fn find_image<'a>(
    images: &'a BTreeMap<String, pb::ImageManifest>,
    reference: &ImageRef,
) -> Option<&'a pb::ImageManifest> {
    match reference {
        ImageRef::Uuid(u) => images.get(&u.to_string()),
        ImageRef::Sha256(digest) => {
            let hex = digest.to_string();
            images.values().find(|i| i.sha256 == hex)
        }
        ImageRef::Name { name, version } => image::highest_by(
            images
                .values()
                .filter(|i| i.name == *name && version.as_deref().is_none_or(|v| i.version == v)),
            |i| &i.version,
        ),
    }
}

/// The parsed placement rules of `spec` (none: no rules).
pub fn placement_of(spec: &pb::ZoneSpec) -> Result<Placement, String> {
    match &spec.placement {
        None => Ok(Placement::default()),
        Some(p) => Placement::try_from(p.clone()).map_err(|e| format!("placement: {e}")),
    }
}

/// What the scheduler reads of a command's spec, parsed once per command (not once
/// per decision): its placement rules and its image reference.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The placement rules (none: no rules).
    pub placement: Placement,
    /// The image reference (`None`: not one, so no image minimum applies).
    pub image: Option<ImageRef>,
}

impl Parsed {
    /// Parses the placement and image of `spec`.
    pub fn of(spec: &pb::ZoneSpec) -> Result<Self, String> {
        Ok(Parsed {
            placement: placement_of(spec)?,
            image: ImageRef::parse(&spec.image).ok(),
        })
    }
}

/// Decides the host of one zone of `spec` (whose uuid and alias are final; `parsed`
/// its placement and image) against `view`. `current` is the zone's current host (a
/// reschedule: never chosen again). With `top` > 0 every host is scored and the best
/// `top` are returned.
pub fn decide(
    view: &FleetView,
    ctx: &Context<'_>,
    spec: &pb::ZoneSpec,
    parsed: &Parsed,
    current: Option<u32>,
    top: usize,
) -> Result<Choice, String> {
    let memory = spec.max_physical_memory_mib.unwrap_or(0);
    if let Some(image) = parsed
        .image
        .as_ref()
        .and_then(|r| find_image(ctx.images, r))
    {
        if image.min_ram_mib > memory {
            return Err(format!(
                "no host: image {} needs at least {} MiB of memory, the zone has {memory} MiB",
                spec.image, image.min_ram_mib
            ));
        }
    }
    let features = required_features(spec, ctx.networks);
    let rules = Rules::resolve(view, spec, &parsed.placement, features, ctx.zones, current);
    if top == 0 && rules.hard_only() {
        if let Some(slot) = first_fit(view, &rules) {
            return Ok(Choice {
                slot,
                key: score::key(view, slot, &rules),
                top: Vec::new(),
            });
        }
    }
    scan(view, &rules, top)
}

/// The fast path (hard rules only): the first ready host in strategy order that
/// passes every filter.
fn first_fit(view: &FleetView, rules: &Rules) -> Option<u32> {
    let need = i64::try_from(rules.need.memory).unwrap_or(i64::MAX);
    let from = (need, Arc::<str>::from(""), 0);
    let passes = |slot: u32| rules.check(view, slot).ok().map(|()| slot);
    if rules.strategy == pb::PlacementStrategy::Spread {
        let (free, _, _) = view
            .ready_by_free()
            .range(from..)
            .rev()
            .find(|(_, _, slot)| passes(*slot).is_some())?;
        // Among hosts with the same free memory, the smallest host_id.
        let free = *free;
        view.ready_by_free()
            .range((free, Arc::<str>::from(""), 0)..)
            .take_while(|(f, _, _)| *f == free)
            .find_map(|(_, _, slot)| passes(*slot))
    } else {
        view.ready_by_free()
            .range(from..)
            .find_map(|(_, _, slot)| passes(*slot))
    }
}

/// Scores every host; the best, the `top` best, or every host counted per reason.
fn scan(view: &FleetView, rules: &Rules, top: usize) -> Result<Choice, String> {
    let mut counts = Counts::default();
    let mut best: Option<(Key, u32)> = None;
    let mut tops: Vec<(Key, u32)> = Vec::new();
    for slot in 0..u32::try_from(view.hosts().len()).expect("slots") {
        match rules.check(view, slot) {
            Err(reason) => counts.add(reason),
            Ok(()) => {
                let key = score::key(view, slot, rules);
                if best.is_none_or(|(b, _)| key < b) {
                    best = Some((key, slot));
                }
                if top > 0 {
                    let at = tops.partition_point(|(k, _)| *k < key);
                    if at < top {
                        tops.insert(at, (key, slot));
                        tops.truncate(top);
                    }
                }
            }
        }
    }
    match best {
        Some((key, slot)) => Ok(Choice {
            slot,
            key,
            top: tops.into_iter().map(|(k, s)| (s, k)).collect(),
        }),
        None => Err(counts.message(rules)),
    }
}

/// Where a batch went.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The host of each zone, in order.
    pub hosts: Vec<String>,
    /// The best hosts for the first zone, best first (when asked for).
    pub top_scores: Vec<pb::HostScore>,
    /// Why each zone went where it went (when asked for).
    pub explanation: String,
}

/// Places the zones of `specs` — one command's zones: the same spec but for their
/// uuids and aliases, which are final — one after the other, each
/// seeing the ones before it (so a group's spread holds within the batch), all or
/// nothing: on a refusal none is placed and the message names the zone
/// (`zone 3 of 5: no host: …`). The view is left as it was either way; the caller
/// counts the zones it then stores. With `top` > 0 the decisions are explained.
pub fn place_batch(
    view: &mut FleetView,
    ctx: &Context<'_>,
    specs: &[pb::ZoneSpec],
    top: usize,
) -> Result<Batch, String> {
    let mut batch = Batch::default();
    let mut outcome = Ok(());
    let mut lines = Vec::new();
    // The zones share their placement and image: parsed once for the batch.
    let parsed = match specs.first().map(Parsed::of).transpose() {
        Ok(parsed) => parsed,
        Err(why) if specs.len() > 1 => return Err(format!("zone 1 of {}: {why}", specs.len())),
        Err(why) => return Err(why),
    };
    for (i, spec) in specs.iter().enumerate() {
        let parsed = parsed.as_ref().expect("a batch with a zone was parsed");
        match decide(view, ctx, spec, parsed, None, top) {
            Ok(choice) => {
                let host = view.host(choice.slot).id.to_string();
                if top > 0 {
                    if i == 0 {
                        batch.top_scores = choice
                            .top
                            .iter()
                            .map(|(s, k)| pb::HostScore {
                                host_id: view.host(*s).id.to_string(),
                                score: score::shown(k),
                            })
                            .collect();
                    }
                    lines.push(explain_choice(view, &choice, i, specs.len()));
                }
                view.count(spec, &host, true);
                batch.hosts.push(host);
            }
            Err(why) => {
                outcome = Err(if specs.len() > 1 {
                    format!("zone {} of {}: {why}", i + 1, specs.len())
                } else {
                    why
                });
                break;
            }
        }
    }
    for (spec, host) in specs.iter().zip(&batch.hosts) {
        view.count(spec, host, false);
    }
    outcome.map(|()| {
        batch.explanation = lines.join("; ");
        batch
    })
}

fn explain_choice(view: &FleetView, choice: &Choice, i: usize, n: usize) -> String {
    let host = view.host(choice.slot);
    let mut s = String::new();
    if n > 1 {
        s.push_str(&format!("zone {} of {n}: ", i + 1));
    }
    s.push_str(&format!(
        "{} (rack {}) scores {:.1}",
        host.id,
        view.rack_name(host.rack),
        score::shown(&choice.key)
    ));
    if choice.key.broken > 0 {
        s.push_str(&format!(", breaking {} soft rule(s)", choice.key.broken));
    }
    let runners: Vec<String> = choice
        .top
        .iter()
        .filter(|(slot, _)| *slot != choice.slot)
        .take(3)
        .map(|(slot, k)| format!("{} {:.1}", view.host(*slot).id, score::shown(k)))
        .collect();
    if !runners.is_empty() {
        s.push_str(&format!(" (next: {})", runners.join(", ")));
    }
    s
}
