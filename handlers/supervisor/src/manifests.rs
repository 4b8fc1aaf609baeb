//! Which manifests a supervising actor may start children from: `allowed_manifests`, compared canonicalized, and
//! `manifest_aliases`, which map an exact `spawn`/`resume` argument to a local manifest. Nothing is ever fetched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The manifests one actor may use, with paths resolved against its manifest folder.
#[derive(Clone, Debug)]
pub struct ManifestPolicy {
    base: PathBuf,
    allowed: Vec<PathBuf>,
    aliases: BTreeMap<String, PathBuf>,
}

impl ManifestPolicy {
    /// Resolves `allowed` and `aliases` against `base` (the actor's manifest folder) and canonicalizes `allowed`.
    ///
    /// # Errors
    /// An allowed manifest that cannot be canonicalized (missing, unreadable folder), naming the field and path.
    pub async fn new(
        base: &Path,
        allowed: &[PathBuf],
        aliases: &BTreeMap<String, PathBuf>,
    ) -> anyhow::Result<Self> {
        let mut canonical = Vec::with_capacity(allowed.len());
        for path in allowed {
            let full = base.join(path);
            let found = tokio::fs::canonicalize(&full)
                .await
                .map_err(|e| anyhow::anyhow!("allowed_manifests: {}: {e}", full.display()))?;
            canonical.push(found);
        }
        let aliases = aliases
            .iter()
            .map(|(key, path)| (key.clone(), base.join(path)))
            .collect();
        Ok(Self {
            base: base.to_owned(),
            allowed: canonical,
            aliases,
        })
    }

    /// The canonical path of the manifest `argument` names: an alias's target if `argument` equals an alias
    /// key exactly, else `argument` relative to the actor's manifest folder.
    ///
    /// Blocking (it canonicalizes on disk): call it off the async threads.
    ///
    /// # Errors
    /// `"permission denied: manifest <argument> (allowed_manifests)"` when the path is not in `allowed_manifests`,
    /// including when it does not exist (so a guest cannot probe the disk).
    pub fn resolve(&self, argument: &str) -> Result<PathBuf, String> {
        let path = match self.aliases.get(argument) {
            Some(target) => target.clone(),
            None => self.base.join(argument),
        };
        let denied = || format!("permission denied: manifest {argument} (allowed_manifests)");
        let canonical = std::fs::canonicalize(&path).map_err(|_| denied())?;
        if self.allowed.contains(&canonical) {
            Ok(canonical)
        } else {
            Err(denied())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_listed_manifests_and_aliases_to_them_resolve() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("child.toml"), "").unwrap();
        std::fs::write(dir.path().join("other.toml"), "").unwrap();
        let aliases = BTreeMap::from([
            (
                "https://example.invalid/child.toml".to_owned(),
                PathBuf::from("child.toml"),
            ),
            (
                "/published/other.toml".to_owned(),
                PathBuf::from("other.toml"),
            ),
        ]);
        let policy = ManifestPolicy::new(dir.path(), &[PathBuf::from("child.toml")], &aliases)
            .await
            .unwrap();
        let child = std::fs::canonicalize(dir.path().join("child.toml")).unwrap();
        assert_eq!(policy.resolve("child.toml").unwrap(), child);
        assert_eq!(policy.resolve("sub/../child.toml").unwrap(), child);
        assert_eq!(
            policy
                .resolve("https://example.invalid/child.toml")
                .unwrap(),
            child
        );
        for denied in [
            "other.toml",
            "/published/other.toml",
            "missing.toml",
            "sub",
            "",
        ] {
            assert_eq!(
                policy.resolve(denied).unwrap_err(),
                format!("permission denied: manifest {denied} (allowed_manifests)")
            );
        }
    }

    #[tokio::test]
    async fn a_missing_allowed_manifest_fails_setup_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let err = ManifestPolicy::new(dir.path(), &[PathBuf::from("gone.toml")], &BTreeMap::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("allowed_manifests: "), "{err}");
        assert!(err.contains("gone.toml"), "{err}");
    }
}
