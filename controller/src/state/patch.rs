//! `zfadm zone update`: a partial spec merged into the stored one.

use zonefleet_proto::pb;

use super::StateError;

/// Merges `patch` into `current`: every field set in the patch replaces the stored one
/// (a non-empty list replaces the whole list); `customer_metadata` and `tags` are
/// merged key by key, an empty value removing the key. The uuid cannot change.
pub fn merge_patch(
    current: &pb::ZoneSpec,
    patch: &pb::ZoneSpec,
) -> Result<pb::ZoneSpec, StateError> {
    if let Some(uuid) = &patch.uuid {
        if Some(uuid) != current.uuid.as_ref() {
            return Err(StateError::InvalidArgument(
                "uuid: cannot be changed".to_owned(),
            ));
        }
    }
    let mut out = current.clone();
    macro_rules! replace_some {
        ($($field:ident),*) => { $( if patch.$field.is_some() { out.$field = patch.$field.clone(); } )* };
    }
    replace_some!(
        alias,
        max_physical_memory_mib,
        max_swap_mib,
        cpu_cap,
        cpu_shares,
        max_lwps,
        io_priority,
        quota_gib,
        tmpfs_mib,
        limit_priv,
        hostname,
        dns_domain,
        autoboot,
        owner,
        placement
    );
    if patch.brand != 0 {
        out.brand = patch.brand;
    }
    if patch.on_host_lost != 0 {
        out.on_host_lost = patch.on_host_lost;
    }
    if !patch.image.is_empty() {
        out.image = patch.image.clone();
    }
    if !patch.nics.is_empty() {
        out.nics = patch.nics.clone();
    }
    if !patch.resolvers.is_empty() {
        out.resolvers = patch.resolvers.clone();
    }
    if !patch.init.is_empty() {
        out.init = patch.init.clone();
    }
    for (map, changes) in [
        (&mut out.customer_metadata, &patch.customer_metadata),
        (&mut out.tags, &patch.tags),
    ] {
        for (k, v) in changes {
            if v.is_empty() {
                map.remove(k);
            } else {
                map.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_fields_replace_and_maps_merge() {
        let current = pb::ZoneSpec {
            uuid: Some("u".into()),
            image: "base@1".into(),
            max_physical_memory_mib: Some(256),
            cpu_cap: Some(100),
            tags: [
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "2".to_owned()),
            ]
            .into(),
            ..Default::default()
        };
        let patch = pb::ZoneSpec {
            max_physical_memory_mib: Some(512),
            tags: [
                ("a".to_owned(), String::new()),
                ("c".to_owned(), "3".to_owned()),
            ]
            .into(),
            ..Default::default()
        };
        let out = merge_patch(&current, &patch).unwrap();
        assert_eq!(out.max_physical_memory_mib, Some(512));
        assert_eq!(out.cpu_cap, Some(100));
        assert_eq!(out.image, "base@1");
        assert_eq!(
            out.tags,
            [
                ("b".to_owned(), "2".to_owned()),
                ("c".to_owned(), "3".to_owned())
            ]
            .into()
        );
        let bad = pb::ZoneSpec {
            uuid: Some("other".into()),
            ..Default::default()
        };
        assert!(merge_patch(&current, &bad).is_err());
    }
}
