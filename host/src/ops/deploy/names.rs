//! Object names and labels of one rendered scope, so that two (env, tenant) scopes —
//! or two teams of one tenant — can be applied into the same Kubernetes namespace
//! without one replacing the other.
//!
//! Every name carries the scope: `gtc-worker-<env>-<tenant>[-<team>]`,
//! `gtc-router-<env>-<tenant>`, `<policy>-<env>-<tenant>`. The worker's name is also
//! its ServiceAccount and, by default, its Vault role: the identity Vault sees names
//! the scope, which is what `vault-bootstrap.sh` binds and checks. Every object is
//! labelled with `greentic.ai/env` and `greentic.ai/tenant` (and `greentic.ai/team`
//! for a team's worker), and every selector includes them, so one scope's policies
//! never select another scope's pods.
//!
//! Names that Kubernetes would reject are refused here, with the reason, rather
//! than rendered (a '.' or '_' in a part). Names that are only too long are
//! shortened instead, deterministically ([`fit`]): the first characters, then a
//! '-' and 8 hex digits of the SHA-256 of the full name, so two long names that
//! share a beginning stay distinct, and the same scope always renders the same
//! name. Limits: a Service (and so the worker and router, whose Deployment,
//! PodDisruptionBudget and HPA share its name) is a DNS-1035 label, at most 63
//! characters; every label value at most 63 (the `app.kubernetes.io/instance`
//! label carries an object's name, so a long NetworkPolicy name is shortened
//! there); other object names at most 253. The worker's ServiceAccount and Vault
//! role keep the full `gtc-worker-ENV-TENANT[-TEAM]` (a ServiceAccount name may
//! have 253 characters), which is what `vault-bootstrap.sh` binds. Every object
//! carries its full scope in the annotation `greentic.ai/scope`
//! (`ENV/TENANT[/TEAM]`).

use super::RenderError;
use super::k8s::{LabelSelector, Labels};
use crate::secrets::scope::Segment;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

pub const WORKER: &str = "gtc-worker";
pub const ROUTER: &str = "gtc-router";
/// The external Vault's TokenReview identity.
pub const REVIEWER: &str = "gtc-vault-reviewer";
pub const DEV_SECRET: &str = "gtc-dev-secrets";
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_ENV: &str = "greentic.ai/env";
pub const LABEL_TENANT: &str = "greentic.ai/tenant";
pub const LABEL_TEAM: &str = "greentic.ai/team";
/// The annotation with an object's full scope, `ENV/TENANT[/TEAM]`.
pub const ANNOTATION_SCOPE: &str = "greentic.ai/scope";
/// A DNS-1035 label (a Service name) and a label value.
pub const MAX_LABEL: usize = 63;
/// A DNS-1123 subdomain (most object names).
pub const MAX_SUBDOMAIN: usize = 253;
/// Hex digits of the hash that ends a shortened name.
const HASH_DIGITS: usize = 8;

/// `name` if it has at most `limit` characters, else its first characters (no
/// trailing '-') + '-' + the first 8 hex digits of SHA-256(`name`), `limit`
/// characters at most. `name` is ASCII (checked by the callers).
pub fn fit(name: &str, limit: usize) -> String {
    if name.len() <= limit {
        return name.to_string();
    }
    let digest = Sha256::digest(name.as_bytes());
    let hash: String = digest
        .iter()
        .take(HASH_DIGITS / 2)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let keep = limit.saturating_sub(HASH_DIGITS + 1);
    let head = name.get(..keep).unwrap_or(name).trim_end_matches('-');
    format!("{head}-{hash}")
}

/// The rendered scope: env and tenant, checked to make valid names and labels.
#[derive(Debug, Clone)]
pub struct ScopeNames {
    env: String,
    tenant: String,
}

/// Whether `value` can be part of a DNS-1035 label (and is a valid label value).
fn name_part_ok(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.ends_with('-')
}

fn check_part(what: &str, value: &str) -> Result<(), RenderError> {
    if name_part_ok(value) {
        Ok(())
    } else {
        Err(RenderError::Invalid(format!(
            "{what} {value:?} cannot be part of a Kubernetes object name (only a-z, 0-9 and \
             '-', not ending in '-'): rename it, or render this scope on its own"
        )))
    }
}

impl ScopeNames {
    pub fn new(env: &Segment, tenant: &Segment) -> Result<Self, RenderError> {
        check_part("--env", env.as_str())?;
        check_part("--tenant", tenant.as_str())?;
        Ok(Self {
            env: env.to_string(),
            tenant: tenant.to_string(),
        })
    }

    fn suffix(&self) -> String {
        format!("{}-{}", self.env, self.tenant)
    }

    /// The full scope, `ENV/TENANT[/TEAM]` (the [`ANNOTATION_SCOPE`] value).
    pub fn scope(&self, team: Option<&str>) -> String {
        match team {
            Some(team) => format!("{}/{}/{team}", self.env, self.tenant),
            None => format!("{}/{}", self.env, self.tenant),
        }
    }

    /// The identity of the tenant's worker (`team: None`) or of one team's:
    /// `gtc-worker-ENV-TENANT[-TEAM]` in full, the name of its ServiceAccount and
    /// Vault role (what `vault-bootstrap.sh` binds).
    pub fn identity(&self, team: Option<&Segment>) -> Result<String, RenderError> {
        let base = format!("{WORKER}-{}", self.suffix());
        match team {
            None => Ok(base),
            Some(team) => {
                check_part("--bundle team", team.as_str())?;
                Ok(format!("{base}-{team}"))
            }
        }
    }

    /// The worker's Deployment and Service name: [`Self::identity`] fitted to a
    /// Service name's 63 characters.
    pub fn worker(&self, team: Option<&Segment>) -> Result<String, RenderError> {
        Ok(fit(&self.identity(team)?, MAX_LABEL))
    }

    pub fn router(&self) -> String {
        fit(&format!("{ROUTER}-{}", self.suffix()), MAX_LABEL)
    }

    /// The reviewer ServiceAccount an external Vault calls TokenReview as.
    pub fn reviewer(&self) -> String {
        fit(&format!("{REVIEWER}-{}", self.suffix()), MAX_SUBDOMAIN)
    }

    /// Its ClusterRoleBinding (cluster-scoped: the namespace is in the name).
    pub fn reviewer_binding(&self, namespace: &str) -> String {
        fit(
            &format!("{REVIEWER}-{namespace}-{}", self.suffix()),
            MAX_SUBDOMAIN,
        )
    }

    pub fn dev_secret(&self) -> String {
        fit(&format!("{DEV_SECRET}-{}", self.suffix()), MAX_SUBDOMAIN)
    }

    /// A NetworkPolicy's name: what it does, then the scope (and the team).
    pub fn policy(&self, what: &str, team: Option<&Segment>) -> String {
        let name = match team {
            Some(team) => format!("{what}-{}-{team}", self.suffix()),
            None => format!("{what}-{}", self.suffix()),
        };
        fit(&name, MAX_SUBDOMAIN)
    }

    /// Labels of an object of `component` (e.g. `gtc-worker`), instance `instance`.
    pub fn labels(&self, component: &str, instance: &str, team: Option<&Segment>) -> Labels {
        let mut labels = BTreeMap::from([
            (LABEL_NAME.to_string(), component.to_string()),
            (LABEL_INSTANCE.to_string(), fit(instance, MAX_LABEL)),
            (
                "app.kubernetes.io/part-of".to_string(),
                "greentic".to_string(),
            ),
            (LABEL_ENV.to_string(), self.env.clone()),
            (LABEL_TENANT.to_string(), self.tenant.clone()),
        ]);
        if let Some(team) = team {
            labels.insert(LABEL_TEAM.to_string(), team.to_string());
        }
        labels
    }

    /// Selects the pods of one instance (a Deployment's own pods).
    pub fn instance(&self, component: &str, instance: &str) -> LabelSelector {
        let mut selector = self.component(component);
        selector
            .match_labels
            .insert(LABEL_INSTANCE.to_string(), fit(instance, MAX_LABEL));
        selector
    }

    /// Selects every pod of `component` in this scope (e.g. all its workers).
    pub fn component(&self, component: &str) -> LabelSelector {
        let mut selector = self.all();
        selector
            .match_labels
            .insert(LABEL_NAME.to_string(), component.to_string());
        selector
    }

    /// Selects every pod of this scope, and nothing of another scope.
    pub fn all(&self) -> LabelSelector {
        LabelSelector {
            match_labels: BTreeMap::from([
                (LABEL_ENV.to_string(), self.env.clone()),
                (LABEL_TENANT.to_string(), self.tenant.clone()),
            ]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(s: &str) -> Segment {
        Segment::parse(s).unwrap()
    }

    #[test]
    fn names_carry_the_scope_and_refuse_what_kubernetes_would() {
        let names = ScopeNames::new(&seg("prod"), &seg("acme")).unwrap();
        assert_eq!(names.worker(None).unwrap(), "gtc-worker-prod-acme");
        assert_eq!(
            names.worker(Some(&seg("support"))).unwrap(),
            "gtc-worker-prod-acme-support"
        );
        assert_eq!(names.router(), "gtc-router-prod-acme");
        assert_eq!(names.policy("default-deny", None), "default-deny-prod-acme");
        assert!(ScopeNames::new(&seg("prod"), &seg("acme.eu")).is_err());
        assert!(ScopeNames::new(&seg("prod"), &seg("acme_eu")).is_err());
        assert!(ScopeNames::new(&seg("prod"), &seg("acme-")).is_err());
        assert!(names.worker(Some(&seg("team.x"))).is_err());
        let labels = names.labels(WORKER, "gtc-worker-prod-acme", Some(&seg("support")));
        assert_eq!(labels[LABEL_ENV], "prod");
        assert_eq!(labels[LABEL_TENANT], "acme");
        assert_eq!(labels[LABEL_TEAM], "support");
        let selector = names.instance(WORKER, "gtc-worker-prod-acme");
        assert_eq!(selector.match_labels.len(), 4);
    }

    #[test]
    fn fit_keeps_short_names_and_shortens_long_ones_deterministically() {
        let at_63 = "a".repeat(63);
        assert_eq!(fit(&at_63, MAX_LABEL), at_63);
        let at_64 = format!("{}-b", "a".repeat(62));
        let short = fit(&at_64, MAX_LABEL);
        assert_eq!(short.len(), MAX_LABEL);
        assert_eq!(short, fit(&at_64, MAX_LABEL));
        assert!(short.starts_with(&"a".repeat(54)), "{short}");
        // A '-' at the cut is not left before the hash's own.
        let dashed = format!("{}-{}", "a".repeat(53), "c".repeat(20));
        assert!(!fit(&dashed, MAX_LABEL).contains("--"));
        assert_ne!(fit(&format!("{}-c", "a".repeat(62)), MAX_LABEL), short);
    }
}
