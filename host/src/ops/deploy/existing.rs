//! The collision check against objects already in the namespace (`--existing`).
//!
//! Why: object names join env, tenant and team with '-', so two scopes can
//! render the same name — `prod/eu-acme` and `prod-eu/acme` both give
//! `gtc-worker-prod-eu-acme`, and team `support` of `prod/acme` gives the name of
//! tenant `prod/acme-support`'s worker. Applied into one namespace, the second
//! would silently replace the first's objects. One render cannot see another
//! scope, so the operator hands it what is already there (`kubectl get … -o
//! yaml`, or the other scopes' renders): an object of the same kind and name
//! that belongs to another scope — by its `greentic.ai/scope` annotation, or by
//! its `greentic.ai/env`/`tenant`/`team` labels for renders older than the
//! annotation — is refused, naming both scopes. An object of that name that
//! belongs to no scope at all (not rendered by gtc) is refused too.

use super::RenderError;
use super::k8s::Object;
use super::names::{ANNOTATION_SCOPE, LABEL_ENV, LABEL_TEAM, LABEL_TENANT};
use serde_json::Value;

/// One file of existing objects: where it came from (for messages) and its text.
#[derive(Debug, Clone)]
pub struct ExistingFile {
    pub path: String,
    pub text: String,
}

/// An object already in the namespace.
struct Existing {
    kind: String,
    name: String,
    namespace: Option<String>,
    /// Its scope (`ENV/TENANT[/TEAM]`), if it belongs to one.
    scope: Option<String>,
    from: String,
}

fn scope_of(metadata: &Value) -> Option<String> {
    if let Some(scope) = metadata["annotations"][ANNOTATION_SCOPE].as_str() {
        return Some(scope.to_string());
    }
    let labels = &metadata["labels"];
    let env = labels[LABEL_ENV].as_str()?;
    let tenant = labels[LABEL_TENANT].as_str()?;
    Some(match labels[LABEL_TEAM].as_str() {
        Some(team) => format!("{env}/{tenant}/{team}"),
        None => format!("{env}/{tenant}"),
    })
}

/// The objects of a YAML stream: plain documents, and the items of a `List`
/// (what `kubectl get -o yaml` prints).
fn parse(file: &ExistingFile) -> Result<Vec<Existing>, RenderError> {
    use serde::Deserialize as _;
    let mut out = Vec::new();
    for document in serde_norway::Deserializer::from_str(&file.text) {
        let value = Value::deserialize(document).map_err(|e| {
            RenderError::Invalid(format!(
                "--existing {}: not Kubernetes YAML: {e}",
                file.path
            ))
        })?;
        let items = match value.get("items").and_then(Value::as_array) {
            Some(items) => items.clone(),
            None if value.is_null() => continue,
            None => vec![value],
        };
        for item in items {
            let (Some(kind), Some(name)) =
                (item["kind"].as_str(), item["metadata"]["name"].as_str())
            else {
                return Err(RenderError::Invalid(format!(
                    "--existing {}: a document without kind and metadata.name",
                    file.path
                )));
            };
            out.push(Existing {
                kind: kind.to_string(),
                name: name.to_string(),
                namespace: item["metadata"]["namespace"].as_str().map(str::to_string),
                scope: scope_of(&item["metadata"]),
                from: file.path.clone(),
            });
        }
    }
    Ok(out)
}

/// Refuses `objects` when one of them would replace an object of another scope
/// (or of none) in `files`.
pub fn check(objects: &[Object], files: &[ExistingFile]) -> Result<(), RenderError> {
    let mut existing = Vec::new();
    for file in files {
        existing.extend(parse(file)?);
    }
    for object in objects {
        let metadata = object.metadata();
        let ours = metadata
            .annotations
            .get(ANNOTATION_SCOPE)
            .map(String::as_str)
            .unwrap_or_default();
        let clash = existing.iter().find(|e| {
            e.kind == object.kind()
                && e.name == metadata.name
                && e.namespace
                    .as_deref()
                    .is_none_or(|ns| ns == metadata.namespace)
                && e.scope.as_deref() != Some(ours)
        });
        if let Some(clash) = clash {
            let theirs = match &clash.scope {
                Some(scope) => format!("scope {scope}"),
                None => "no gtc scope (it was not rendered by gtc deploy render)".to_string(),
            };
            return Err(RenderError::Invalid(format!(
                "{} {} in namespace {} would be shared by scope {ours} (this render) and {theirs} \
                 (in --existing {}): env, tenant and team names joined by '-' collide; rename \
                 one of the scopes, or render it into another namespace",
                object.kind(),
                metadata.name,
                metadata.namespace,
                clash.from
            )));
        }
    }
    Ok(())
}
