//! Secret names, scopes and canonical `secrets://` URIs.
//!
//! A bundle's scope is `(env, tenant, team)`, fixed by the pod and the operator. A
//! guest names a secret relative to that scope; this module turns the name into the
//! exact storage paths to try, in order, or refuses it. Nothing is ever normalised:
//! a name either matches the grammar exactly or is rejected, so no spelling of a
//! name can reach a path other than the one it plainly says.

use std::fmt;

/// Longest segment, in bytes.
pub const MAX_SEGMENT_LEN: usize = 64;
/// Longest name a guest may pass (a full URI with five maximal segments fits).
pub const MAX_NAME_LEN: usize = 400;
/// The team slot that holds tenant-wide secrets.
pub const TENANT_WIDE: &str = "_";
/// The scheme of canonical secret URIs.
pub const URI_SCHEME: &str = "secrets://";

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name does not follow the grammar. The message is fixed text, safe to show
    /// to the guest; it never repeats the name.
    #[error("malformed secret name: {0}")]
    Malformed(&'static str),
    /// The name is well formed but addresses another env, tenant or team.
    #[error("secret name is outside the bundle's scope")]
    OutOfScope,
}

impl NameError {
    /// The reason alone, without "malformed secret name:": for messages about a
    /// value that is not a secret's name (a bundle id, a flag).
    pub fn reason(&self) -> String {
        match self {
            Self::Malformed(why) => why.to_string(),
            other => other.to_string(),
        }
    }
}

/// One validated path segment: `[a-z0-9][a-z0-9._-]*`, at most 64 bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Segment(String);

impl Segment {
    pub fn parse(text: &str) -> Result<Self, NameError> {
        validate_segment(text)?;
        Ok(Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

fn validate_segment(text: &str) -> Result<(), NameError> {
    let bytes = text.as_bytes();
    let Some(first) = bytes.first() else {
        return Err(NameError::Malformed("a segment is empty"));
    };
    if bytes.len() > MAX_SEGMENT_LEN {
        return Err(NameError::Malformed("a segment is longer than 64 bytes"));
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(NameError::Malformed(
            "a segment must start with a lower-case letter or a digit",
        ));
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(NameError::Malformed(
            "a segment may contain only a-z, 0-9, '.', '_' and '-'",
        ));
    }
    Ok(())
}

/// The team part of a path: a team, or the tenant-wide slot `_`.
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum TeamSlot {
    Team(Segment),
    TenantWide,
}

impl TeamSlot {
    /// Parses `_` or a team segment.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        if text == TENANT_WIDE {
            Ok(Self::TenantWide)
        } else {
            Segment::parse(text).map(Self::Team)
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Team(team) => team.as_str(),
            Self::TenantWide => TENANT_WIDE,
        }
    }
}

/// Where a bundle runs: env and tenant from the pod, team from the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    pub env: Segment,
    pub tenant: Segment,
    pub team: TeamSlot,
}

/// The full address of one stored secret.
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct SecretPath {
    pub env: Segment,
    pub tenant: Segment,
    pub team: TeamSlot,
    pub category: Segment,
    pub name: Segment,
}

impl SecretPath {
    /// The canonical URI: `secrets://env/tenant/team|_/category/name`. It is the
    /// cache key, the audit name and the envelope's authenticated data.
    pub fn uri(&self) -> String {
        format!("{URI_SCHEME}{}", self.relative())
    }

    /// `env/tenant/team|_/category/name`, the part below the storage prefix.
    pub fn relative(&self) -> String {
        format!(
            "{}/{}/{}/{}/{}",
            self.env,
            self.tenant,
            self.team.as_str(),
            self.category,
            self.name
        )
    }

    /// Parses a canonical URI without any scope check (admin tools use it).
    pub fn parse_uri(uri: &str) -> Result<Self, NameError> {
        let rest = uri
            .strip_prefix(URI_SCHEME)
            .ok_or(NameError::Malformed("a URI must start with secrets://"))?;
        Self::parse_relative(rest)
    }

    /// Parses `env/tenant/team|_/category/name`.
    pub fn parse_relative(text: &str) -> Result<Self, NameError> {
        let parts: Vec<&str> = text.split('/').collect();
        let [env, tenant, team, category, name] = parts.as_slice() else {
            return Err(NameError::Malformed(
                "a URI has exactly five segments: env/tenant/team/category/name",
            ));
        };
        Ok(Self {
            env: Segment::parse(env)?,
            tenant: Segment::parse(tenant)?,
            team: TeamSlot::parse(team)?,
            category: Segment::parse(category)?,
            name: Segment::parse(name)?,
        })
    }
}

/// A name as written, parsed without a scope: the grammar of `secrets.get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestedName {
    /// A full `secrets://` URI, looked up exactly (if it is in scope).
    Uri(SecretPath),
    /// `name` (category `None`: the bundle's id) or `category/name`.
    Relative {
        category: Option<Segment>,
        name: Segment,
    },
}

impl RequestedName {
    /// Parses `requested`; the scope is checked by [`Scope::resolve`].
    pub fn parse(requested: &str) -> Result<Self, NameError> {
        if requested.is_empty() {
            return Err(NameError::Malformed("the name is empty"));
        }
        if requested.len() > MAX_NAME_LEN {
            return Err(NameError::Malformed("the name is longer than 400 bytes"));
        }
        if let Some(rest) = requested.strip_prefix(URI_SCHEME) {
            return SecretPath::parse_relative(rest).map(Self::Uri);
        }
        match requested.split('/').collect::<Vec<_>>().as_slice() {
            [name] => Ok(Self::Relative {
                category: None,
                name: Segment::parse(name)?,
            }),
            [category, name] => Ok(Self::Relative {
                category: Some(Segment::parse(category)?),
                name: Segment::parse(name)?,
            }),
            _ => Err(NameError::Malformed(
                "expected `name`, `category/name` or a full secrets:// URI",
            )),
        }
    }
}

impl Scope {
    /// The paths to try, in order, for a name a guest asked for.
    ///
    /// `name` alone uses `default_category` (the bundle id); `category/name` looks in
    /// the team first, then tenant-wide; a full URI must be in this scope and is
    /// looked up exactly.
    pub fn resolve(
        &self,
        default_category: &Segment,
        requested: &str,
    ) -> Result<Vec<SecretPath>, NameError> {
        let (category, name) = match RequestedName::parse(requested)? {
            RequestedName::Uri(path) => {
                let team_in_scope = path.team == TeamSlot::TenantWide || path.team == self.team;
                if path.env != self.env || path.tenant != self.tenant || !team_in_scope {
                    return Err(NameError::OutOfScope);
                }
                return Ok(vec![path]);
            }
            RequestedName::Relative { category, name } => {
                (category.unwrap_or_else(|| default_category.clone()), name)
            }
        };
        let at = |team: TeamSlot| SecretPath {
            env: self.env.clone(),
            tenant: self.tenant.clone(),
            team,
            category: category.clone(),
            name: name.clone(),
        };
        Ok(match &self.team {
            TeamSlot::Team(_) => vec![at(self.team.clone()), at(TeamSlot::TenantWide)],
            TeamSlot::TenantWide => vec![at(TeamSlot::TenantWide)],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(team: &str) -> Scope {
        Scope {
            env: Segment::parse("dev").unwrap(),
            tenant: Segment::parse("acme").unwrap(),
            team: TeamSlot::parse(team).unwrap(),
        }
    }

    fn bot() -> Segment {
        Segment::parse("webchat-bot").unwrap()
    }

    #[test]
    fn bare_name_uses_bundle_category_team_first() {
        let paths = scope("support").resolve(&bot(), "webhook-secret").unwrap();
        let uris: Vec<String> = paths.iter().map(SecretPath::uri).collect();
        assert_eq!(
            uris,
            [
                "secrets://dev/acme/support/webchat-bot/webhook-secret",
                "secrets://dev/acme/_/webchat-bot/webhook-secret"
            ]
        );
    }

    #[test]
    fn tenant_wide_bundle_only_tries_tenant_wide() {
        let paths = scope("_").resolve(&bot(), "shared/api-key").unwrap();
        assert_eq!(paths.len(), 1);
        assert_eq!(paths[0].uri(), "secrets://dev/acme/_/shared/api-key");
    }

    #[test]
    fn full_uri_in_scope_is_exact() {
        let own = scope("support")
            .resolve(&bot(), "secrets://dev/acme/support/x/y")
            .unwrap();
        assert_eq!(own.len(), 1);
        let wide = scope("support")
            .resolve(&bot(), "secrets://dev/acme/_/x/y")
            .unwrap();
        assert_eq!(wide[0].team, TeamSlot::TenantWide);
    }

    #[test]
    fn foreign_uris_are_denied() {
        for uri in [
            "secrets://dev/acme/sales/x/y",
            "secrets://prod/acme/support/x/y",
            "secrets://dev/globex/support/x/y",
        ] {
            assert_eq!(
                scope("support").resolve(&bot(), uri),
                Err(NameError::OutOfScope),
                "{uri}"
            );
        }
        // A tenant-wide bundle cannot name any team.
        assert_eq!(
            scope("_").resolve(&bot(), "secrets://dev/acme/support/x/y"),
            Err(NameError::OutOfScope)
        );
    }

    #[test]
    fn malformed_names_are_rejected() {
        let long = "a".repeat(65);
        let huge = "a".repeat(MAX_NAME_LEN + 1);
        for name in [
            "",
            "..",
            ".",
            "a/..",
            "../a",
            "a//b",
            "/a",
            "a/",
            "A",
            "a b",
            "a\0b",
            "%2e%2e",
            "a/b/c",
            " a",
            "a\n",
            "-a",
            "_a",
            "a:b",
            long.as_str(),
            huge.as_str(),
            "secrets://dev/acme/support/x",
            "secrets://dev/acme/support/x/y/z",
            "secrets://dev/acme/SUPPORT/x/y",
            "SECRETS://dev/acme/support/x/y",
            "é",
            "a\\b",
            "a%2fb",
        ] {
            assert!(
                matches!(
                    scope("support").resolve(&bot(), name),
                    Err(NameError::Malformed(_))
                ),
                "{name:?} should be malformed"
            );
        }
    }

    #[test]
    fn uri_round_trips() {
        let path = SecretPath::parse_uri("secrets://dev/acme/_/c/n").unwrap();
        assert_eq!(path.uri(), "secrets://dev/acme/_/c/n");
        assert!(SecretPath::parse_uri("dev/acme/_/c/n").is_err());
    }
}
