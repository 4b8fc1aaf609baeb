//! # theater-handler-random
//!
//! Serves `theater:simple/random` (handlers.md §2): random bytes, integers, floats and UUIDs from **one ChaCha20
//! generator per actor**. With a `seed` in the manifest every function is reproducible, UUIDs included (they take
//! their 16 bytes from the same generator).
//!
//! * **Permissions**: listing the handler grants all four functions, within the limits of [`RandomConfig`].
//! * **Chain events**: one per call, `theater:simple/random/<function>`, with the parameters and the result.
//!
//! ```toml
//! [[handler]]
//! type = "random"
//! seed = 42            # optional: reproducible sequences
//! max_bytes = 1048576  # random-bytes(length) limit
//! max_int = 1000       # largest `max` of random-range
//! ```

use std::sync::{Arc, Mutex, MutexGuard};

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::Deserialize;
use theater_macros::theater_handler;
use theater_runtime::ActorContext;

/// Configuration of the random handler: the manifest's `[[handler]] type = "random"` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RandomConfig {
    /// `Some(s)`: each actor's generator is `ChaCha20Rng::seed_from_u64(s)`; `None` (default): seeded from OS
    /// entropy.
    pub seed: Option<u64>,
    /// Largest `length` accepted by `random-bytes`, in bytes (default 1 048 576). Checked before allocating.
    pub max_bytes: u32,
    /// Largest `max` accepted by `random-range` (default `u64::MAX`).
    pub max_int: u64,
}

impl Default for RandomConfig {
    /// No seed, `max_bytes = 1 MiB`, `max_int = u64::MAX`.
    fn default() -> Self {
        Self {
            seed: None,
            max_bytes: 1024 * 1024,
            max_int: u64::MAX,
        }
    }
}

/// The random handler. The value built from the manifest is a prototype; each actor gets an instance with its
/// own generator (see [`RandomConfig::seed`]).
#[derive(Clone, Debug)]
pub struct RandomHandler {
    config: RandomConfig,
    rng: Arc<Mutex<ChaCha20Rng>>,
}

impl RandomHandler {
    /// A handler with `config`; its generator is seeded as [`RandomConfig::seed`] says.
    pub fn new(config: RandomConfig) -> Self {
        let rng = match config.seed {
            Some(seed) => ChaCha20Rng::seed_from_u64(seed),
            None => ChaCha20Rng::from_os_rng(),
        };
        Self {
            config,
            rng: Arc::new(Mutex::new(rng)),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RandomConfig {
        &self.config
    }

    fn rng(&self) -> MutexGuard<'_, ChaCha20Rng> {
        // The generator has no invariant a panic could break: recover from poisoning.
        self.rng.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[theater_handler(wit = "../../wit", import = "theater:simple/random")]
impl RandomHandler {
    /// A fresh generator for each actor, seeded as the configuration says.
    #[theater(create_instance)]
    fn for_actor(&self, _actor: &ActorContext) -> anyhow::Result<Self> {
        Ok(Self::new(self.config.clone()))
    }

    /// WIT: `random-bytes: func(length: u32) -> result<list<u8>, string>`
    ///
    /// `length` random bytes; `[]` for 0. Errors when `length > max_bytes`.
    fn random_bytes(&self, length: u32) -> Result<Vec<u8>, String> {
        if length > self.config.max_bytes {
            return Err(format!(
                "random-bytes: {length} exceeds max_bytes ({})",
                self.config.max_bytes
            ));
        }
        let mut bytes = vec![0; length as usize];
        self.rng().fill_bytes(&mut bytes);
        Ok(bytes)
    }

    /// WIT: `random-range: func(min: u64, max: u64) -> result<u64, string>`
    ///
    /// Uniform in `[min, max)`. Errors when `min >= max` or `max > max_int`.
    fn random_range(&self, min: u64, max: u64) -> Result<u64, String> {
        if min >= max {
            return Err(format!(
                "random-range: min ({min}) must be less than max ({max})"
            ));
        }
        if max > self.config.max_int {
            return Err(format!(
                "random-range: {max} exceeds max_int ({})",
                self.config.max_int
            ));
        }
        Ok(self.rng().random_range(min..max))
    }

    /// WIT: `random-float: func() -> result<f64, string>`
    ///
    /// Uniform in `[0, 1)`.
    fn random_float(&self) -> Result<f64, String> {
        Ok(self.rng().random::<f64>())
    }

    /// WIT: `generate-uuid: func() -> result<string, string>`
    ///
    /// A version-4 UUID from 16 bytes of the actor's generator, lowercase hyphenated.
    fn generate_uuid(&self) -> Result<String, String> {
        let mut bytes = [0u8; 16];
        self.rng().fill_bytes(&mut bytes);
        Ok(uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .hyphenated()
            .to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_generators_agree() {
        let cfg = RandomConfig {
            seed: Some(42),
            ..RandomConfig::default()
        };
        let (a, b) = (RandomHandler::new(cfg.clone()), RandomHandler::new(cfg));
        assert_eq!(a.random_bytes(8), b.random_bytes(8));
        assert_eq!(a.generate_uuid(), b.generate_uuid());
        let uuid = uuid::Uuid::parse_str(&a.generate_uuid().unwrap()).unwrap();
        assert_eq!(uuid.get_version_num(), 4);
    }

    #[test]
    fn limits_are_checked() {
        let h = RandomHandler::new(RandomConfig {
            max_bytes: 4,
            max_int: 100,
            ..Default::default()
        });
        assert_eq!(h.random_bytes(0), Ok(vec![]));
        assert!(h.random_bytes(5).unwrap_err().contains("max_bytes"));
        assert!(h.random_range(5, 5).is_err());
        assert!(h.random_range(0, 101).unwrap_err().contains("max_int"));
        let f = h.random_float().unwrap();
        assert!((0.0..1.0).contains(&f));
    }
}
