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
//! than rendered: a Service name is a DNS-1035 label (a–z, 0–9, '-', at most 63
//! characters, starting with a letter), stricter than a secret path segment.

use super::RenderError;
use super::k8s::{LabelSelector, Labels};
use crate::secrets::scope::Segment;
use std::collections::BTreeMap;

pub const WORKER: &str = "gtc-worker";
pub const ROUTER: &str = "gtc-router";
pub const DEV_SECRET: &str = "gtc-dev-secrets";
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_ENV: &str = "greentic.ai/env";
pub const LABEL_TENANT: &str = "greentic.ai/tenant";
pub const LABEL_TEAM: &str = "greentic.ai/team";
const MAX_NAME: usize = 63;

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

fn check_name(name: String) -> Result<String, RenderError> {
    if name.len() > MAX_NAME {
        return Err(RenderError::Invalid(format!(
            "object name {name:?} is longer than {MAX_NAME} characters (Kubernetes Service \
             names are DNS-1035 labels): shorten the env, tenant or team names"
        )));
    }
    Ok(name)
}

impl ScopeNames {
    pub fn new(env: &Segment, tenant: &Segment) -> Result<Self, RenderError> {
        check_part("--env", env.as_str())?;
        check_part("--tenant", tenant.as_str())?;
        let names = Self {
            env: env.to_string(),
            tenant: tenant.to_string(),
        };
        check_name(names.router())?;
        Ok(names)
    }

    fn suffix(&self) -> String {
        format!("{}-{}", self.env, self.tenant)
    }

    /// The worker of the whole tenant (`team: None`) or of one team. Also the
    /// name of its ServiceAccount and Vault role.
    pub fn worker(&self, team: Option<&Segment>) -> Result<String, RenderError> {
        let base = format!("{WORKER}-{}", self.suffix());
        match team {
            None => check_name(base),
            Some(team) => {
                check_part("--bundle team", team.as_str())?;
                check_name(format!("{base}-{team}"))
            }
        }
    }

    pub fn router(&self) -> String {
        format!("{ROUTER}-{}", self.suffix())
    }

    pub fn dev_secret(&self) -> String {
        format!("{DEV_SECRET}-{}", self.suffix())
    }

    /// A NetworkPolicy's name: what it does, then the scope.
    pub fn policy(&self, what: &str) -> String {
        format!("{what}-{}", self.suffix())
    }

    /// Labels of an object of `component` (e.g. `gtc-worker`), instance `instance`.
    pub fn labels(&self, component: &str, instance: &str, team: Option<&Segment>) -> Labels {
        let mut labels = BTreeMap::from([
            (LABEL_NAME.to_string(), component.to_string()),
            (LABEL_INSTANCE.to_string(), instance.to_string()),
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
            .insert(LABEL_INSTANCE.to_string(), instance.to_string());
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
        assert_eq!(names.policy("default-deny"), "default-deny-prod-acme");
        assert!(ScopeNames::new(&seg("prod"), &seg("acme.eu")).is_err());
        assert!(ScopeNames::new(&seg("prod"), &seg("acme_eu")).is_err());
        assert!(ScopeNames::new(&seg("prod"), &seg("acme-")).is_err());
        assert!(ScopeNames::new(&seg("prod"), &seg(&"a".repeat(60))).is_err());
        assert!(names.worker(Some(&seg("team.x"))).is_err());
        let labels = names.labels(WORKER, "gtc-worker-prod-acme", Some(&seg("support")));
        assert_eq!(labels[LABEL_ENV], "prod");
        assert_eq!(labels[LABEL_TENANT], "acme");
        assert_eq!(labels[LABEL_TEAM], "support");
        let selector = names.instance(WORKER, "gtc-worker-prod-acme");
        assert_eq!(selector.match_labels.len(), 4);
    }
}
