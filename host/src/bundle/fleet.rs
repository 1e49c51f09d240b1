//! What must hold across the bundles one host serves together: each route prefix
//! has one owner and none is the host's own, and each bundle id is given once.
//!
//! One function, [`check`], over every bundle at once (its manifest, its directory
//! and the team the operator assigns it), called by both `gtc serve` (before any
//! component is compiled) and `gtc bundle check`, so the two cannot disagree about
//! a set of bundles. It returns every problem, not the first: an operator fixes a
//! deployment in one round. Rules that span bundles belong here.

use crate::bundle::manifest::Manifest;
use crate::secrets::scope::TeamSlot;
use std::path::{Path, PathBuf};

/// Paths the host answers itself; no bundle may claim them or anything below them.
pub const RESERVED_ROUTES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// One bundle of the set: its manifest, where it was read from, and its team.
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    pub manifest: &'a Manifest,
    pub dir: &'a Path,
    pub team: &'a TeamSlot,
}

/// A problem with the set of bundles, naming the field (`routes`, `id`) and the
/// bundles involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    #[error(
        "routes: {route:?} of bundle {bundle} is reserved by the host \
         (/healthz, /readyz and /metrics are the host's own): choose another prefix"
    )]
    ReservedRoute { route: String, bundle: String },
    #[error(
        "routes: {route:?} is claimed by both {first} and {second}: a route prefix has one bundle"
    )]
    RouteConflict {
        route: String,
        first: String,
        second: String,
    },
    #[error(
        "id: bundle id {id:?} is given more than once ({} and {}): each bundle served \
         together needs its own id (the same bundle given twice, or two bundles with one id)",
        .first.display(),
        .second.display()
    )]
    DuplicateId {
        id: String,
        first: PathBuf,
        second: PathBuf,
    },
}

/// A route as the router compares it: without a trailing `/`.
pub fn normalized_route(route: &str) -> &str {
    route.trim_end_matches('/')
}

/// Every problem with serving `members` together, in the order found.
pub fn check(members: &[Member<'_>]) -> Vec<FleetError> {
    let mut problems = Vec::new();
    for (index, member) in members.iter().enumerate() {
        let id = member.manifest.id.as_str();
        if let Some(earlier) = members[..index]
            .iter()
            .find(|other| other.manifest.id.as_str() == id)
        {
            problems.push(FleetError::DuplicateId {
                id: id.to_string(),
                first: earlier.dir.to_path_buf(),
                second: member.dir.to_path_buf(),
            });
        }
    }
    let mut claimed: Vec<(&str, &str)> = Vec::new();
    for member in members {
        let bundle = member.manifest.id.as_str();
        for route in &member.manifest.routes {
            let route = normalized_route(route);
            if RESERVED_ROUTES
                .iter()
                .any(|r| route == *r || route.starts_with(&format!("{r}/")))
            {
                problems.push(FleetError::ReservedRoute {
                    route: route.to_string(),
                    bundle: bundle.to_string(),
                });
                continue;
            }
            match claimed.iter().find(|(r, _)| *r == route) {
                // The same bundle given twice is reported once, as a duplicate id.
                Some((_, first)) if *first == bundle => {}
                Some((_, first)) => problems.push(FleetError::RouteConflict {
                    route: route.to_string(),
                    first: first.to_string(),
                    second: bundle.to_string(),
                }),
                None => claimed.push((route, bundle)),
            }
        }
    }
    problems
}

/// Several [`FleetError`]s as one error (`gtc serve` refuses to start with all of them).
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct FleetErrors(pub Vec<FleetError>);

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(id: &str, routes: &[&str]) -> Manifest {
        let routes: Vec<String> = routes.iter().map(|r| format!("{r:?}")).collect();
        Manifest::parse(
            &format!(
                "id = {id:?}\ncomponent = \"c.wasm\"\nroutes = [{}]\n",
                routes.join(", ")
            ),
            Path::new("."),
        )
        .unwrap()
    }

    #[test]
    fn every_problem_across_the_set_is_reported() {
        let team = TeamSlot::parse("_").unwrap();
        let a = manifest("a", &["/a", "/healthz/x", "/shared/"]);
        let b = manifest("b", &["/shared", "/metrics"]);
        let a_again = manifest("a", &["/a"]);
        let member = |manifest, dir| Member {
            manifest,
            dir: Path::new(dir),
            team: &team,
        };
        let problems = check(&[
            member(&a, "x/a"),
            member(&b, "x/b"),
            member(&a_again, "y/a"),
        ]);
        assert_eq!(
            problems,
            vec![
                FleetError::DuplicateId {
                    id: "a".into(),
                    first: "x/a".into(),
                    second: "y/a".into()
                },
                FleetError::ReservedRoute {
                    route: "/healthz/x".into(),
                    bundle: "a".into()
                },
                FleetError::RouteConflict {
                    route: "/shared".into(),
                    first: "a".into(),
                    second: "b".into()
                },
                FleetError::ReservedRoute {
                    route: "/metrics".into(),
                    bundle: "b".into()
                },
            ]
        );
        assert!(check(&[member(&a, "x/a"), member(&b, "x/b")]).len() == 3);
        let c = manifest("c", &["/c"]);
        assert!(check(&[member(&c, "x/c")]).is_empty());
    }
}
