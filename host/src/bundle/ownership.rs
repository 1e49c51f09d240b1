//! One owner per sealed value: a secret one bundle declares sealed may be declared
//! by no other bundle on the same host, sealed or readable, in any name form.
//!
//! Why: the host injects a sealed value towards the destinations and in the place
//! its manifest names, and checks signatures with it. If a second bundle could
//! declare the same value sealed, it would choose its own destinations (its own
//! server) and use the victim's key as a signature oracle; if it could declare it
//! readable, `get` would hand it over. So a start (`gtc serve`) and `gtc bundle
//! check` refuse two claims on one value, naming both bundles. An operator who
//! must let several bundles seal one value says so per name (`--share-sealed
//! CATEGORY/NAME`); a readable claim on a sealed value is never allowed.
//!
//! A claim is compared by what it can resolve to, not by how it is written:
//! `name` (category = the bundle id), `category/name` and a full `secrets://`
//! URI are one value when they reach the same `(team | _, category, name)`.
//! A relative name reaches the bundle's team and the tenant-wide slot `_`, so
//! two teams' bundles claiming one `category/name` share its tenant-wide value.
//! `gtc bundle check` does not know the teams: a bundle's own team then matches
//! any team (it reports what could collide when the bundles share a worker).

use crate::bundle::manifest::Manifest;
use crate::secrets::scope::{RequestedName, Segment, TeamSlot};

/// Where a declared name may resolve: a known slot, or the bundle's own team when
/// it is not known (`gtc bundle check`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Known(TeamSlot),
    UnknownTeam,
}

impl Slot {
    fn meets(&self, other: &Slot) -> bool {
        match (self, other) {
            (Slot::UnknownTeam, _) | (_, Slot::UnknownTeam) => true,
            (Slot::Known(a), Slot::Known(b)) => a == b,
        }
    }
}

/// One declaration of one bundle, resolved.
#[derive(Debug, Clone)]
struct Claim {
    category: Segment,
    name: Segment,
    slots: Vec<Slot>,
    sealed: bool,
}

/// A bundle's claims on secret values, from its manifest and its team (`None`
/// when the team is not known).
#[derive(Debug, Clone)]
pub struct Claims {
    /// How the bundle is named in messages: its id and directory.
    pub bundle: String,
    claims: Vec<Claim>,
}

impl Claims {
    /// The claims of `manifest` deployed in `team`. A name that does not parse
    /// claims nothing (the manifest checks report it on their own).
    pub fn of(manifest: &Manifest, dir: &std::path::Path, team: Option<&TeamSlot>) -> Self {
        let resolve = |written: &str, sealed: bool| -> Option<Claim> {
            Some(match RequestedName::parse(written).ok()? {
                RequestedName::Uri(path) => Claim {
                    category: path.category,
                    name: path.name,
                    slots: vec![Slot::Known(path.team)],
                    sealed,
                },
                RequestedName::Relative { category, name } => Claim {
                    category: category.unwrap_or_else(|| manifest.id.clone()),
                    name,
                    slots: match team {
                        Some(TeamSlot::TenantWide) => vec![Slot::Known(TeamSlot::TenantWide)],
                        Some(team) => {
                            vec![Slot::Known(team.clone()), Slot::Known(TeamSlot::TenantWide)]
                        }
                        None => vec![Slot::UnknownTeam, Slot::Known(TeamSlot::TenantWide)],
                    },
                    sealed,
                },
            })
        };
        let readable = manifest.secrets.iter().filter_map(|n| resolve(n, false));
        let sealed = manifest
            .sealed
            .iter()
            .filter_map(|s| resolve(&s.name, true));
        Self {
            bundle: format!("{} ({})", manifest.id, dir.display()),
            claims: readable.chain(sealed).collect(),
        }
    }
}

/// Two bundles claim one sealed value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "sealed secret {key} has two owners: bundle {owner} declares it sealed and bundle {other} \
     declares it {how}; a sealed value belongs to one bundle on a host: remove it from one \
     manifest{hint}"
)]
pub struct OwnerConflict {
    /// `category/name` of the value.
    pub key: String,
    pub owner: String,
    pub other: String,
    how: &'static str,
    hint: &'static str,
}

/// A value several bundles may seal because the operator said so: what to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedSeal {
    pub key: String,
    pub bundles: Vec<String>,
}

/// Every conflict among `bundles` (each pair once, in order), and the values
/// shared under `shared` (`category/name` keys the operator allows several
/// bundles to seal).
pub fn conflicts(bundles: &[Claims], shared: &[String]) -> (Vec<OwnerConflict>, Vec<SharedSeal>) {
    let mut found = Vec::new();
    let mut sharing: Vec<SharedSeal> = Vec::new();
    for (i, first) in bundles.iter().enumerate() {
        for second in &bundles[i + 1..] {
            for a in &first.claims {
                for b in &second.claims {
                    let same = a.category == b.category
                        && a.name == b.name
                        && a.slots.iter().any(|x| b.slots.iter().any(|y| x.meets(y)));
                    if !same || !(a.sealed || b.sealed) {
                        continue;
                    }
                    let key = format!("{}/{}", a.category, a.name);
                    let both_sealed = a.sealed && b.sealed;
                    if both_sealed && shared.contains(&key) {
                        if !sharing.iter().any(|s| s.key == key) {
                            sharing.push(SharedSeal {
                                key: key.clone(),
                                bundles: Vec::new(),
                            });
                        }
                        for entry in sharing.iter_mut().filter(|s| s.key == key) {
                            for bundle in [&first.bundle, &second.bundle] {
                                if !entry.bundles.contains(bundle) {
                                    entry.bundles.push(bundle.clone());
                                }
                            }
                        }
                        continue;
                    }
                    let (owner, other) = if a.sealed {
                        (&first.bundle, &second.bundle)
                    } else {
                        (&second.bundle, &first.bundle)
                    };
                    let conflict = OwnerConflict {
                        key,
                        owner: owner.clone(),
                        other: other.clone(),
                        how: if both_sealed { "sealed" } else { "readable" },
                        hint: if both_sealed {
                            ", or pass --share-sealed CATEGORY/NAME to let both seal it"
                        } else {
                            " (a sealed value is never readable)"
                        },
                    };
                    if !found.contains(&conflict) {
                        found.push(conflict);
                    }
                }
            }
        }
    }
    (found, sharing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn manifest(id: &str, secrets: &str) -> Manifest {
        Manifest::parse(
            &format!("id = \"{id}\"\ncomponent = \"x.wasm\"\nroutes = [\"/{id}\"]\n{secrets}"),
            Path::new("."),
        )
        .unwrap()
    }

    fn sealed(name: &str) -> String {
        format!("[[secrets.sealed]]\nname = \"{name}\"")
    }

    fn team(name: &str) -> TeamSlot {
        TeamSlot::parse(name).unwrap()
    }

    fn claims(id: &str, secrets: &str, slot: Option<&str>) -> Claims {
        let slot = slot.map(team);
        Claims::of(&manifest(id, secrets), Path::new(id), slot.as_ref())
    }

    #[test]
    fn every_name_form_of_one_value_is_a_second_claim() {
        let owner = claims("victim", &sealed("token"), Some("support"));
        for (secrets, slot) in [
            (sealed("victim/token"), Some("support")),
            (sealed("victim/token"), Some("sales")),
            (sealed("victim/token"), Some("_")),
            (
                sealed("secrets://dev/acme/support/victim/token"),
                Some("support"),
            ),
            (sealed("secrets://dev/acme/_/victim/token"), Some("sales")),
            ("secrets = [\"victim/token\"]".to_string(), Some("support")),
            ("secrets = [\"victim/token\"]".to_string(), None),
        ] {
            let thief = claims("thief", &secrets, slot);
            let (found, _) = conflicts(&[owner.clone(), thief], &[]);
            assert_eq!(found.len(), 1, "{secrets} in {slot:?}");
            assert_eq!(found[0].key, "victim/token");
            assert!(found[0].owner.starts_with("victim "), "{:?}", found[0]);
            assert!(found[0].other.starts_with("thief "), "{:?}", found[0]);
        }
    }

    #[test]
    fn distinct_values_and_operator_shares_are_not_conflicts() {
        let owner = claims("victim", &sealed("token"), Some("support"));
        for (secrets, slot) in [
            // another name, another category
            (sealed("thief/token"), Some("support")),
            (sealed("victim/other"), Some("support")),
            // another team's own entry, written as a full URI
            (
                sealed("secrets://dev/acme/sales/victim/token"),
                Some("sales"),
            ),
        ] {
            let thief = claims("thief", &secrets, slot);
            assert!(
                conflicts(&[owner.clone(), thief], &[]).0.is_empty(),
                "{secrets}"
            );
        }
        let second = claims("second", &sealed("victim/token"), Some("support"));
        let shared = ["victim/token".to_string()];
        let (found, sharing) = conflicts(&[owner.clone(), second], &shared);
        assert!(found.is_empty());
        assert_eq!(sharing.len(), 1);
        assert_eq!(sharing[0].bundles.len(), 2);
        // Sharing never makes a sealed value readable.
        let reader = claims("reader", "secrets = [\"victim/token\"]", Some("support"));
        assert_eq!(conflicts(&[owner, reader], &shared).0.len(), 1);
    }
}
