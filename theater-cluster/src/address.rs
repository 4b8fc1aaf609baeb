//! [`Address`]: a NATS subject this cluster delivers to, made only from a checked actor id or host and service
//! name, so a value a guest passes (an actor id) can name an actor and nothing else: never a host's own
//! subjects, a wildcard (`*`, `>`) or another cluster's prefix.
//!
//! Subjects (`<prefix>` is [`ClusterConfig::prefix`](theater_runtime::ClusterConfig::prefix), default
//! `theater`):
//! * `<prefix>.actor.<actor-id>`: everything delivered to one actor, served by the host that runs it;
//! * `<prefix>.host.<host>.<service>`: a service of one host (e.g. `message-server` answers, `supervisor`
//!   spawns);
//! * `<prefix>.host.<host>.alive` / `.gone`: heartbeats and departures ([`crate::liveness`]).

pub use theater_runtime::cluster::{MAX_NAME_LEN, valid_name};

use crate::DeliveryError;

/// A checked subject of this cluster.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Address(String);

impl Address {
    /// The address of actor `id`, which must be a UUID (any case; the canonical lowercase form is used).
    ///
    /// # Errors
    /// [`DeliveryError::BadAddress`] if `id` is not a UUID.
    pub fn actor(prefix: &str, id: &str) -> Result<Self, DeliveryError> {
        let id: uuid::Uuid = id
            .parse()
            .map_err(|_| DeliveryError::BadAddress(id.to_owned()))?;
        Ok(Self(format!("{prefix}.actor.{}", id.hyphenated())))
    }

    /// The address of `service` on `host`.
    ///
    /// # Errors
    /// [`DeliveryError::BadAddress`] unless both are [valid names](valid_name).
    pub fn service(prefix: &str, host: &str, service: &str) -> Result<Self, DeliveryError> {
        for name in [host, service] {
            if !valid_name(name) {
                return Err(DeliveryError::BadAddress(name.to_owned()));
            }
        }
        Ok(Self(format!("{prefix}.host.{host}.{service}")))
    }

    /// The subject.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host a service address names (`<prefix>.host.<host>.<service>`); `None` for an actor's, whose host the
    /// address does not tell.
    pub(crate) fn host(&self) -> Option<&str> {
        match self.0.splitn(4, '.').collect::<Vec<_>>()[..] {
            [_, "host", host, _] => Some(host),
            _ => None,
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_uuids_and_plain_names_make_addresses() {
        let id = "6F9619FF-8B86-D011-B42D-00CF4FC964FF";
        assert_eq!(
            Address::actor("theater", id).unwrap().as_str(),
            "theater.actor.6f9619ff-8b86-d011-b42d-00cf4fc964ff"
        );
        for hostile in ["x.host.b.supervisor", "*", ">", "a b", "", "6f9619ff.>"] {
            assert!(Address::actor("theater", hostile).is_err(), "{hostile}");
            assert!(
                Address::service("theater", hostile, "s").is_err(),
                "{hostile}"
            );
        }
        assert_eq!(
            Address::service("theater", "host-b", "message-server")
                .unwrap()
                .as_str(),
            "theater.host.host-b.message-server"
        );
        assert!(!valid_name(&"h".repeat(MAX_NAME_LEN + 1)));
        let service = Address::service("theater", "host-b", "supervisor").unwrap();
        assert_eq!(service.host(), Some("host-b"));
        assert_eq!(Address::actor("theater", id).unwrap().host(), None);
    }
}
