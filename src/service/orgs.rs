//! Orgs: creation, configuration, overlay files and registration keys. Every change that a
//! package carries rebuilds that org's packages of the published releases.

use super::{now, Actor, BuildReport, BuildScope, Depot, NoProgress, Result, ServiceError};
use crate::domain::{EntryName, OrgCode, RegistrationKey};
use crate::org::{
    check_beside_file, check_beside_payload, check_not_protected, Org, OrgConfig,
    MAX_OVERLAY_FILES, MAX_OVERLAY_FILE_SIZE,
};

impl Depot {
    /// The central org exists from the start: its packages are the public default installers.
    pub(crate) fn ensure_default_org(&self) -> Result<()> {
        let code = OrgCode::default_org();
        if self.meta.get_org(&code)?.is_some() {
            return Ok(());
        }
        let mut config = OrgConfig::new("Default installers")?;
        config.seats = 0;
        let org = Org {
            code,
            registration_key: RegistrationKey::generate(),
            config,
            created_at: now(),
            updated_at: now(),
        };
        match self.meta.create_org(&org) {
            // Another process created it between the two calls.
            Ok(()) | Err(crate::store::StoreError::Conflict(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub fn org(&self, code: &OrgCode) -> Result<Org> {
        self.meta
            .get_org(code)?
            .ok_or_else(|| ServiceError::NotFound(format!("org {code}")))
    }

    /// Creates an org with a fresh registration key and builds its packages of every published
    /// release.
    pub fn add_org(
        &self,
        actor: &Actor,
        code: &OrgCode,
        config: OrgConfig,
    ) -> Result<(Org, BuildReport)> {
        let at = now();
        let org = Org {
            code: code.clone(),
            registration_key: RegistrationKey::generate(),
            config,
            created_at: at,
            updated_at: at,
        };
        self.meta.create_org(&org)?;
        self.audit(
            actor,
            Some(code),
            "org.create",
            code.as_str(),
            Some(org.config.name.clone()),
        )?;
        let report = self.rebuild_org(actor, code)?;
        Ok((org, report))
    }

    pub fn update_org(
        &self,
        actor: &Actor,
        code: &OrgCode,
        config: OrgConfig,
    ) -> Result<(Org, BuildReport)> {
        let org = self.meta.update_org_config(code, &config, now())?;
        // A channel change, pin or unpin reaches the org's next update check on this server.
        self.invalidate_fleet();
        self.audit(actor, Some(code), "org.update", code.as_str(), None)?;
        let report = self.rebuild_org(actor, code)?;
        Ok((org, report))
    }

    /// A new registration key: new enrollments need it at once; enrolled devices keep working.
    pub fn rotate_key(&self, actor: &Actor, code: &OrgCode) -> Result<(Org, BuildReport)> {
        let org = self
            .meta
            .set_registration_key(code, &RegistrationKey::generate(), now())?;
        self.audit(actor, Some(code), "org.rotate_key", code.as_str(), None)?;
        let report = self.rebuild_org(actor, code)?;
        Ok((org, report))
    }

    pub fn remove_org(&self, actor: &Actor, code: &OrgCode) -> Result<()> {
        if code.is_default() {
            return Err(ServiceError::Conflict(
                "the default org cannot be removed".into(),
            ));
        }
        self.meta.delete_org(code)?;
        self.audit(actor, Some(code), "org.delete", code.as_str(), None)
    }

    pub fn put_overlay(
        &self,
        actor: &Actor,
        code: &OrgCode,
        name: &EntryName,
        bytes: &[u8],
    ) -> Result<BuildReport> {
        let existing = self.meta.list_overlays(code)?;
        check_overlay(name, bytes)?;
        if existing.len() >= MAX_OVERLAY_FILES && !existing.iter().any(|o| &o.name == name) {
            return Err(ServiceError::Invalid(format!(
                "an org may hold at most {MAX_OVERLAY_FILES} overlay files"
            )));
        }
        self.org(code)?;
        let others: Vec<&str> = existing
            .iter()
            .map(|o| o.name.as_str())
            .filter(|n| *n != name.as_str())
            .collect();
        self.check_overlay_fits(name, &others)?;
        self.write_overlay(actor, code, name, bytes)?;
        self.rebuild_org(actor, code)
    }

    /// Refuses an overlay name that could not go into a package: one colliding with the payload
    /// of any release (published or not: their names are public), with an installer file other
    /// than by replacing it, or with another overlay. The build checks again, for the payloads
    /// of releases added later.
    fn check_overlay_fits(&self, name: &EntryName, other_overlays: &[&str]) -> Result<()> {
        check_not_protected(name).map_err(crate::org::OrgError::from)?;
        for release in self.meta.list_releases()? {
            for payload in &release.payloads {
                check_beside_payload(
                    name,
                    payload.part.file_name.as_str(),
                    &release.version.to_string(),
                )
                .map_err(crate::org::OrgError::from)?;
            }
        }
        for os in crate::domain::Os::ALL {
            for file in self.templates.output_names(os) {
                check_beside_file(name, file.as_str()).map_err(crate::org::OrgError::from)?;
            }
        }
        for other in other_overlays {
            check_beside_file(name, other).map_err(crate::org::OrgError::from)?;
        }
        Ok(())
    }

    /// The installer files an overlay may replace, per OS, as the org page lists them.
    pub fn replaceable_files(&self) -> Vec<(crate::domain::Os, Vec<String>)> {
        crate::domain::Os::ALL
            .into_iter()
            .map(|os| {
                let names = self
                    .templates
                    .output_names(os)
                    .filter(|n| check_not_protected(n).is_ok())
                    .map(ToString::to_string)
                    .collect();
                (os, names)
            })
            .collect()
    }

    pub fn delete_overlay(
        &self,
        actor: &Actor,
        code: &OrgCode,
        name: &EntryName,
    ) -> Result<BuildReport> {
        if !self.meta.delete_overlay(code, name, now())? {
            return Err(ServiceError::NotFound(format!(
                "overlay file {name} of org {code}"
            )));
        }
        self.audit(actor, Some(code), "org.overlay.delete", name.as_str(), None)?;
        self.rebuild_org(actor, code)
    }

    /// The org's overlay files, by name.
    pub fn overlays(&self, code: &OrgCode) -> Result<Vec<crate::store::Overlay>> {
        self.org(code)?;
        Ok(self.meta.list_overlays(code)?)
    }

    /// A digest of everything `depot org export` writes (configuration and overlay files): a file
    /// exported at one revision is stale once anyone (a partner in the portal, another admin)
    /// changed any of it.
    pub fn org_revision(&self, code: &OrgCode) -> Result<String> {
        use sha2::Digest;
        let org = self.org(code)?;
        let mut hash = sha2::Sha256::new();
        hash.update(org.config.canonical_json().as_bytes());
        for overlay in self.meta.list_overlays(code)? {
            hash.update(b"\0");
            hash.update(overlay.name.as_str().as_bytes());
            hash.update(b"\0");
            hash.update(sha2::Sha256::digest(&overlay.bytes));
        }
        Ok(hex::encode(&hash.finalize()[..12]))
    }

    /// `replace_org` of a file exported at `revision`: refused (409) when the org changed since.
    pub fn replace_org_at(
        &self,
        actor: &Actor,
        code: &OrgCode,
        revision: &str,
        config: OrgConfig,
        overlays: &[(EntryName, Vec<u8>)],
    ) -> Result<(Org, BuildReport)> {
        let current = self.org_revision(code)?;
        if current != revision.trim() {
            return Err(ServiceError::Conflict(format!(
                "org {code} changed since revision {revision} was exported (it is now at {current}): \
                 export it again and reapply your change, or give --force to overwrite"
            )));
        }
        self.replace_org(actor, code, config, overlays)
    }

    /// Replaces the configuration and the whole set of overlay files, then rebuilds once
    /// (`depot org set --file`). Everything is checked before anything is written.
    pub fn replace_org(
        &self,
        actor: &Actor,
        code: &OrgCode,
        config: OrgConfig,
        overlays: &[(EntryName, Vec<u8>)],
    ) -> Result<(Org, BuildReport)> {
        if overlays.len() > MAX_OVERLAY_FILES {
            return Err(ServiceError::Invalid(format!(
                "an org may hold at most {MAX_OVERLAY_FILES} overlay files"
            )));
        }
        for (name, bytes) in overlays {
            check_overlay(name, bytes)?;
            let others: Vec<&str> = overlays
                .iter()
                .map(|(n, _)| n.as_str())
                .filter(|n| *n != name.as_str())
                .collect();
            self.check_overlay_fits(name, &others)?;
        }
        let org = self.meta.update_org_config(code, &config, now())?;
        // A channel change, pin or unpin reaches the org's next update check on this server.
        self.invalidate_fleet();
        self.audit(actor, Some(code), "org.update", code.as_str(), None)?;
        let existing = self.meta.list_overlays(code)?;
        for (name, bytes) in overlays {
            if !existing
                .iter()
                .any(|o| &o.name == name && &o.bytes == bytes)
            {
                self.write_overlay(actor, code, name, bytes)?;
            }
        }
        for stale in existing
            .iter()
            .filter(|o| !overlays.iter().any(|(n, _)| n == &o.name))
        {
            self.meta.delete_overlay(code, &stale.name, now())?;
            self.audit(
                actor,
                Some(code),
                "org.overlay.delete",
                stale.name.as_str(),
                None,
            )?;
        }
        let report = self.rebuild_org(actor, code)?;
        Ok((org, report))
    }

    fn write_overlay(
        &self,
        actor: &Actor,
        code: &OrgCode,
        name: &EntryName,
        bytes: &[u8],
    ) -> Result<()> {
        self.meta.put_overlay(code, name, bytes, now())?;
        self.audit(
            actor,
            Some(code),
            "org.overlay.put",
            name.as_str(),
            Some(format!("{} bytes", bytes.len())),
        )
    }

    fn rebuild_org(&self, actor: &Actor, code: &OrgCode) -> Result<BuildReport> {
        self.build_unaudited(
            actor,
            &BuildScope {
                org: Some(code.clone()),
                ..Default::default()
            },
            &NoProgress,
        )
    }
}

fn check_overlay(name: &EntryName, bytes: &[u8]) -> Result<()> {
    if bytes.len() > MAX_OVERLAY_FILE_SIZE {
        return Err(ServiceError::Invalid(format!(
            "overlay file {name} is {} bytes; the limit is {MAX_OVERLAY_FILE_SIZE}",
            bytes.len()
        )));
    }
    check_not_protected(name).map_err(crate::org::OrgError::from)?;
    Ok(())
}
