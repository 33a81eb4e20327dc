//! Image manifests: added once an upload's blob is on a majority of controllers, and
//! removed while no zone uses them. One archive (sha256) is one image, and one
//! `name@version` names one archive, as in every host's image store (which keeps one
//! record per sha256): two manifests of one archive could never both be on a host.

use zonefleet_proto::pb;
use zonefleet_proto::pb::command_result::Result as R;
use zonefleet_proto::spec::ImageRef;

use super::{ok, FleetState, StateError};
use crate::scheduler::find_image;

/// `name@version (uuid)`, as errors name an image.
pub fn image_label(image: &pb::ImageManifest) -> String {
    format!("{}@{} ({})", image.name, image.version, image.uuid)
}

impl FleetState {
    pub(super) fn put_image(
        &mut self,
        c: &pb::PutImageCommand,
    ) -> Result<pb::CommandResult, StateError> {
        let image = c
            .image
            .clone()
            .ok_or_else(|| StateError::InvalidArgument("image is missing".to_owned()))?;
        if let Some(existing) = self.image_conflict(&image)? {
            // A retried proposal, or the same archive under the same name@version.
            return Ok(ok(R::Image(existing.clone())));
        }
        self.images.insert(image.uuid.clone(), image.clone());
        Ok(ok(R::Image(image)))
    }

    /// Whether `image` may be added: `Ok(Some(existing))` when the fleet has this very
    /// archive under the same name and version already (adding it again is a no-op),
    /// `Ok(None)` when it is new, and an error when it conflicts: another image of
    /// the same uuid, of the same archive, or of the same `name@version`.
    pub fn image_conflict(
        &self,
        image: &pb::ImageManifest,
    ) -> Result<Option<&pb::ImageManifest>, StateError> {
        if let Some(same) = self.images.values().find(|i| i.sha256 == image.sha256) {
            if same.name == image.name && same.version == image.version {
                return Ok(Some(same));
            }
            return Err(StateError::AlreadyExists(format!(
                "this archive (sha256:{}) is already image {}",
                image.sha256,
                image_label(same)
            )));
        }
        if self.images.contains_key(&image.uuid) {
            return Err(StateError::AlreadyExists(format!(
                "image {} already exists with other content",
                image.uuid
            )));
        }
        if let Some(same) = self
            .images
            .values()
            .find(|i| i.name == image.name && i.version == image.version)
        {
            return Err(StateError::AlreadyExists(format!(
                "image {}@{} already exists ({}, sha256:{}): give the new archive another version",
                image.name, image.version, same.uuid, same.sha256
            )));
        }
        Ok(None)
    }

    pub(super) fn delete_image(
        &mut self,
        c: &pb::DeleteImageCommand,
    ) -> Result<pb::CommandResult, StateError> {
        let image = self
            .images
            .get(&c.uuid)
            .cloned()
            .ok_or_else(|| StateError::NotFound(format!("no image {}", c.uuid)))?;
        let users = self.zones_using(&image.uuid);
        if !users.is_empty() {
            return Err(StateError::FailedPrecondition(format!(
                "image {} is used by {} zone{}: {}; delete {} first",
                image_label(&image),
                users.len(),
                if users.len() == 1 { "" } else { "s" },
                users.join(", "),
                if users.len() == 1 { "it" } else { "them" },
            )));
        }
        self.images.remove(&image.uuid);
        Ok(ok(R::Image(image)))
    }

    /// The zones (not deleted) whose `image` resolves to image `uuid` now, each as
    /// `uuid (alias)` or `uuid`, in uuid order.
    pub fn zones_using(&self, uuid: &str) -> Vec<String> {
        self.zones
            .iter()
            .filter(|(_, z)| z.desired_state != pb::ZoneState::Deleted as i32)
            .filter(|(_, z)| self.image_of(z).is_some_and(|i| i.uuid == uuid))
            .map(|(u, z)| {
                let alias = z
                    .spec
                    .as_ref()
                    .and_then(|s| s.alias.as_deref())
                    .unwrap_or("");
                if alias.is_empty() {
                    u.clone()
                } else {
                    format!("{u} ({alias})")
                }
            })
            .collect()
    }

    /// The image a zone's spec names, by the fleet's one resolution rule (a name
    /// without a version: its highest version now).
    pub fn image_of(&self, zone: &pb::Zone) -> Option<&pb::ImageManifest> {
        let reference = ImageRef::parse(&zone.spec.as_ref()?.image).ok()?;
        find_image(&self.images, &reference)
    }

    /// The image `reference` names (a uuid, `sha256:HEX` or a unique prefix of 8+ hex
    /// digits, `name[@version]`).
    pub fn resolve_image(&self, reference: &str) -> Result<&pb::ImageManifest, StateError> {
        let reference = reference.trim();
        if let Some(hex) = reference.strip_prefix("sha256:") {
            let hex = hex.to_ascii_lowercase();
            if hex.len() < 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(StateError::InvalidArgument(format!(
                    "image {reference:?}: a sha256 reference needs at least 8 hex digits"
                )));
            }
            let found: Vec<&pb::ImageManifest> = self
                .images
                .values()
                .filter(|i| i.sha256.starts_with(&hex))
                .collect();
            return match found.as_slice() {
                [one] => Ok(one),
                [] => Err(StateError::NotFound(format!("no image {reference}"))),
                many => Err(StateError::InvalidArgument(format!(
                    "image {reference} is ambiguous: {}",
                    many.iter()
                        .map(|i| image_label(i))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            };
        }
        let parsed = ImageRef::parse(reference)
            .map_err(|e| StateError::InvalidArgument(format!("image {reference:?}: {e}")))?;
        find_image(&self.images, &parsed)
            .ok_or_else(|| StateError::NotFound(format!("no image {reference}")))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn manifest(uuid: &str, name: &str, version: &str, sha: char) -> pb::ImageManifest {
        pb::ImageManifest {
            uuid: id(uuid),
            name: name.into(),
            version: version.into(),
            sha256: sha.to_string().repeat(64),
            size_bytes: 10,
            ..Default::default()
        }
    }

    fn put(m: pb::ImageManifest) -> Kind {
        Kind::PutImage(pb::PutImageCommand { image: Some(m) })
    }

    #[test]
    fn one_archive_one_image_one_name_at_version() {
        let mut s = FleetState::default();
        let base = manifest("i1", "base", "1", 'a');
        assert!(matches!(
            s.apply(&cmd(put(base.clone()))).result,
            Some(R::Image(_))
        ));
        // The same proposal again: the same answer.
        assert!(matches!(
            s.apply(&cmd(put(base.clone()))).result,
            Some(R::Image(_))
        ));
        let e = error_of(s.apply(&cmd(put(manifest("i2", "other", "1", 'a')))));
        assert_eq!(e.code, tonic::Code::AlreadyExists as i32);
        assert!(
            e.message.contains("is already image base@1"),
            "{}",
            e.message
        );
        let e = error_of(s.apply(&cmd(put(manifest("i3", "base", "1", 'b')))));
        assert!(
            e.message.contains("image base@1 already exists"),
            "{}",
            e.message
        );
        assert!(matches!(
            s.apply(&cmd(put(manifest("i4", "base", "2", 'b')))).result,
            Some(R::Image(_))
        ));
        assert_eq!(s.resolve_image("base").unwrap().uuid, id("i4"));
        assert_eq!(s.resolve_image("base@1").unwrap().uuid, id("i1"));
        assert_eq!(s.resolve_image("sha256:aaaaaaaa").unwrap().uuid, id("i1"));
        assert!(s.resolve_image("sha256:aa").is_err());
        assert!(matches!(
            s.resolve_image("nothing"),
            Err(StateError::NotFound(_))
        ));
    }

    #[test]
    fn delete_is_refused_while_a_zone_uses_the_image() {
        let mut s = FleetState::default();
        s.apply(&cmd(host("h1", 4096)));
        s.apply(&cmd(put(manifest("i1", "base", "1", 'a'))));
        // `create` makes zones of `base@1`.
        zones_of(s.apply(&cmd(create(&["z1"], 256, ""))));
        let delete = |uuid: &str| Kind::DeleteImage(pb::DeleteImageCommand { uuid: id(uuid) });
        let e = error_of(s.apply(&cmd(delete("i1"))));
        assert_eq!(e.code, tonic::Code::FailedPrecondition as i32);
        assert!(e.message.contains(&id("z1")), "{}", e.message);
        assert!(e.message.contains("base@1"), "{}", e.message);
        let e = error_of(s.apply(&cmd(delete("i9"))));
        assert_eq!(e.code, tonic::Code::NotFound as i32);
        // Once the zone is deleted, the image may go.
        s.apply(&cmd(Kind::DeleteZone(pb::DeleteZoneCommand {
            uuid: id("z1"),
        })));
        assert!(matches!(
            s.apply(&cmd(delete("i1"))).result,
            Some(R::Image(_))
        ));
        assert!(s.images.is_empty());
    }
}
